"""The committed H100/H200 measurements against the committed (calibrated) presets.

Stated bounds, measured on 2026-11-22 (see the issue notes): H100 held-out MAPE <= 10% for
each kernel family (measured 3.7-6.9%), worst held-out shape <= 20% (measured 12%); the H100
calibration carried to the H200 preset (only its ceilings differ) <= 15% overall (measured 8.2%).
"""
import csv
import re

import numpy as np
import pytest

from attn_dse import load_hardware
from attn_dse.cost.knobs import knobs_for
from attn_dse.validation.compare import (compare, data_dir, default_measurements, held_out_mask,
                                         load_measurements, measured_families)
from attn_dse.validation.fit import parameters

PROVENANCE = ("device", "driver", "torch", "triton", "date", "median_s", "p20_s", "p80_s", "config")


@pytest.fixture(scope="module")
def h100():
    rows = load_measurements(default_measurements("h100"))
    return rows, compare(load_hardware("h100"), rows)


@pytest.fixture(scope="module")
def h200():
    rows = load_measurements(default_measurements("h200"))
    return rows, compare(load_hardware("h200"), rows)


def test_measurements_carry_provenance_and_cover_four_families():
    for hw in ("h100", "h200"):
        rows = load_measurements(default_measurements(hw))
        assert len(rows) >= 80 and all(r[k] for r in rows for k in PROVENANCE)
        assert {r["family"] for r in rows} == {"prefill", "decode", "mla_decode", "block_sparse"}
        checks = list(csv.DictReader(open(data_dir() / f"{hw}-checks.csv")))
        assert len(checks) >= 16 and all(c["ok"] == "True" for c in checks)
        assert all(float(c["rel_err"]) < 2e-2 for c in checks)


def test_h100_held_out_error_within_stated_bounds(h100):
    rows, c = h100
    s = c.summary(held_out_mask(len(rows)))
    for fam in ("prefill", "decode", "block_sparse", "mla_decode"):
        assert s[fam]["mape"] <= 0.10, (fam, s[fam])
    assert s["all"]["worst"] <= 0.20


def test_h100_calibration_is_stored_with_provenance():
    hw = load_hardware("h100")
    knobs = knobs_for(hw)
    assert "calibrated" in knobs.source and "h100-measurements.csv" in knobs.source
    # the H200 preset (extends: h100) inherits every calibrated knob; an uncalibrated preset has none
    h200 = knobs_for(load_hardware("h200"))
    # but the decode family and the fp8 kernels, which the H200's own runs fitted alone
    # (test_decode_fp8_measured.py, test_mla_decode_fp8_measured.py, test_prefill_ws_measured.py, test_prefill_gluon_measured.py,
    # test_mla_seesaw_measured.py)
    own = ("decode", "decode_regs", "decode_widen", "mla_decode", "mla_decode_wgmma", "mla_decode_widen",
           "mla_decode_smem", "mla_decode_smem_pair", "mla_decode_seesaw", "prefill_ws", "prefill_gluon",
           "mla_decode_ws")  # the last fitted on an H100 alone (test_mla_decode_fp8_ws_measured.py): the H200 keeps defaults
    fitted = {name for name, *_ in parameters(measured_families()) if name.partition(".")[2] not in own}
    assert len(fitted) == 2 * 3 + 5  # prefill, block_sparse; the shared knobs
    assert {k: v for k, v in h200.flat().items() if k in fitted} == {k: v for k, v in knobs.flat().items() if k in fitted}
    # the H200 file's first note is the H100's forward fit it took; its own runs fit the rest
    first = re.match(r"calibrated [^;]*; held-out [^;]*?worst \d+%", knobs.source)[0]
    assert h200.source.startswith(f"forward: {first}; backward: ")
    assert "; decode: calibrated" in h200.source and "h200-decode-fp8-measurements.csv" in h200.source
    assert "; decode_regs, decode_widen: calibrated" in h200.source
    assert "; mla_decode_widen: calibrated" in h200.source and "h200-mla-decode-fp8-measurements.csv" in h200.source
    assert "; mla_decode_seesaw: calibrated" in h200.source and "h200-mla-seesaw-measurements.csv" in h200.source
    assert knobs_for(load_hardware("h20")).source.startswith("defaults")


def test_transfer_to_h200(h200):
    _, c = h200
    assert c.summary()["all"]["mape"] <= 0.15


def test_decode_speeds_up_by_bandwidth_ratio_prefill_hardly(h100, h200):
    (r1, c1), (r2, c2) = h100, h200
    key = lambda r: (r["family"], r["batch"], r["seq"], r["context"], r["n_heads"], r["n_kv_heads"],
                     r["head_dim"], r["causal"], r["window"], r["top_k"], r["dtype"], r["n_split"])
    idx2 = {key(r): i for i, r in enumerate(r2)}
    for fam, lo, hi in (("decode", 1.25, 1.55), ("prefill", 0.85, 1.15)):
        pairs = [(i, idx2[key(r)]) for i, r in enumerate(r1) if r["family"] == fam and key(r) in idx2
                 and float(r["median_s"]) > 300e-6]  # large enough to be bandwidth/compute bound
        meas = np.median([c1.measured[i] / c2.measured[j] for i, j in pairs])
        pred = np.median([c1.predicted[i] / c2.predicted[j] for i, j in pairs])
        assert lo <= meas <= hi and lo <= pred <= hi, (fam, meas, pred)
