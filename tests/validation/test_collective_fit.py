"""The collective fit recovers known alpha and beta from a synthetic CSV."""
import csv

import numpy as np
import pytest

from attn_dse.cost.collectives import Fabric
from attn_dse.errors import AttnDseError
from attn_dse.validation.collectives import fit_collectives, read_rows


def synthetic(path, alpha0=9e-6, hop_scale=1.6, beta=330e9, noise=0.01, counts=(2, 4, 8)):
    """Times from alpha-beta arithmetic written out here (ring, Simple or LL, whichever is faster),
    independent of the model code: t = alpha0 + base + steps * hop * scale + bus_bytes / (beta * eff)."""
    rng = np.random.default_rng(0)
    rows = []
    for p in counts:
        for op in ("all_reduce", "all_gather"):
            steps, factor = (2 * (p - 1), 2 * (p - 1) / p) if op == "all_reduce" else (p - 1, (p - 1) / p)
            for n in 2 ** np.arange(12, 31, 2):
                ll = 6.6e-6 + steps * 0.6e-6 * hop_scale + n * factor / (beta * 0.5)
                ll128 = 14e-6 + steps * 1.9e-6 * hop_scale + n * factor / (beta * 0.92)
                simple = 8.4e-6 + steps * 3.4e-6 * hop_scale + n * factor / beta
                tree = np.inf
                if op == "all_reduce":  # tree LL, one node: 6.8 + 2 (p-1) 0.6 us, 2n / (beta 0.92 / 3.8)
                    tree = min(6.8e-6 + 2 * (p - 1) * 0.6e-6 * hop_scale + 2 * n / (beta * 0.92 / 3.8),
                               14e-6 + 2 * (p - 1) * 1.25e-6 * hop_scale + 2 * n / (beta * 0.92 * 7 / 9),
                               8.4e-6 + 2 * (p - 1) * 4.0e-6 * hop_scale + 2 * n / (beta * 0.92))
                t = alpha0 + min(ll, ll128, simple, tree)
                rows.append({"kind": "collective", "op": op, "bytes": int(n), "gpus_per_node": p, "nodes": 1,
                             "median_s": t * (1 + noise * rng.standard_normal())})
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_fit_recovers_alpha_and_beta(tmp_path):
    path = tmp_path / "collectives.csv"
    synthetic(path)
    fit = fit_collectives(read_rows(path), Fabric("nvlink", 370.8e9))
    assert fit.fabric.call_latency_s == pytest.approx(9e-6, rel=0.1)
    assert fit.fabric.hop_scale == pytest.approx(1.6, rel=0.1)
    assert fit.fabric.intra_bytes_per_s == pytest.approx(330e9, rel=0.03)
    assert fit.held_out_mape < 3 and fit.n_held_out == len(read_rows(path)) // 4


def test_one_device_count_fits_alpha0_and_beta_only(tmp_path):
    path = tmp_path / "two.csv"
    synthetic(path, hop_scale=1.0, counts=(2,), noise=0.0)
    fit = fit_collectives(read_rows(path), Fabric("nvlink", 370.8e9))
    assert "hop_scale" not in fit.fitted
    assert fit.fabric.call_latency_s == pytest.approx(9e-6, rel=0.02)
    assert fit.fabric.intra_bytes_per_s == pytest.approx(330e9, rel=0.01)


def test_bad_csv(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("op,bytes\nall_reduce,4096\n")
    with pytest.raises(AttnDseError, match="needs the columns"):
        read_rows(p)
    with pytest.raises(AttnDseError, match="no such"):
        read_rows(tmp_path / "none.csv")
