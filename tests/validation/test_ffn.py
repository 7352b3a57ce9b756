"""Validating the step model's MLP on FFN rows: the fit on three quarters recovers the knobs
that made synthetic rows and predicts the held-out quarter; bad CSVs are one clear error."""
import csv
import dataclasses

import numpy as np
import pytest

from attn_dse.cost.ffn import GemmCosts
from attn_dse.errors import AttnDseError
from attn_dse.hardware.loader import load_hardware
from attn_dse.validation.ffn import held_out_split, load_rows, predict_rows, validate

SHAPES = [("dense_ffn", T, E, I, T, 1) for E, I in ((4096, 14336), (8192, 3584)) for T in (1, 8, 64, 512, 4096)] + \
         [("moe_ffn", T, 7168, 2048, T * 8, min(32, max(1, T * 8 // 4))) for T in (1, 16, 128, 1024)]


def synthetic(truth: GemmCosts, noise=0.03, seed=1):
    rows = [{"kind": k, "tokens": T, "d_model": E, "width": I, "pairs": p, "active_experts": a, "dtype": "bf16",
             "median_s": 0.0} for k, T, E, I, p, a in SHAPES]
    t = predict_rows(load_hardware("h100"), rows, truth)
    rng = np.random.default_rng(seed)
    for r, x in zip(rows, t * np.exp(rng.normal(0, noise, len(t)))):
        r["median_s"] = x
    return rows


def test_the_fit_recovers_the_knobs_and_predicts_held_out_rows():
    truth = GemmCosts(0.71, 0.82, 7e-6, 8)
    rows = synthetic(truth)
    before = validate("h100", rows, fit=False)
    after = validate("h100", rows, fit=True)
    assert after.held_out_mape < 0.10 and after.held_out_mape < before.mape
    assert after.knobs.compute_efficiency == pytest.approx(0.71, rel=0.1)
    assert after.knobs.memory_efficiency == pytest.approx(0.82, rel=0.1)


def test_a_quarter_is_held_out():
    held = held_out_split(40)
    assert held.sum() == 10 and not np.array_equal(held, held_out_split(40, seed=1))


def test_bad_csv(tmp_path):
    p = tmp_path / "m.csv"
    with open(p, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["kind", "tokens"])
        w.writerow(["dense_ffn", 1])
    with pytest.raises(AttnDseError, match="missing column"):
        load_rows(p)
    with pytest.raises(AttnDseError, match="no such measurements file"):
        load_rows(tmp_path / "none.csv")
