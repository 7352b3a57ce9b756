"""The FFN/MoE measurement script (attn_dse/gpu/ffn.py): routing and grouping by brute force,
the whole path on the CPU (--cpu-smoke), and on a GPU (marked `gpu`) the full run's checks."""
import csv
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from attn_dse.gpu import ffn  # noqa: E402


def test_routing_gives_distinct_experts_and_the_asked_imbalance():
    rng = np.random.default_rng(0)
    e = ffn.route(20000, 16, 4, 1.5, rng)
    assert all(len(set(row)) == 4 for row in e[:500])
    counts = np.bincount(e.ravel(), minlength=16)
    mean = 20000 * 4 / 16
    assert counts[0] / mean == pytest.approx(1.5, rel=0.03)
    flat = ffn.route(20000, 16, 4, 1.0, rng)
    assert np.bincount(flat.ravel()).max() / mean < 1.05


def test_grouping_sorts_rows_by_expert():
    x = torch.arange(5, dtype=torch.float32)[:, None].repeat(1, 3)
    experts = np.array([[2, 0], [1, 2], [0, 1], [2, 1], [0, 2]])
    rows, counts = ffn.grouped_inputs(x, experts, 3)
    assert counts.tolist() == [3, 3, 4]
    # expert 0 gets tokens 0, 2, 4; expert 1 tokens 1, 2, 3; expert 2 tokens 0, 1, 3, 4
    assert rows[:, 0].tolist() == [0, 2, 4, 1, 2, 3, 0, 1, 3, 4]


def test_cpu_smoke_writes_checked_rows(tmp_path):
    r = subprocess.run([sys.executable, "-m", "attn_dse.gpu.ffn", "--out", str(tmp_path), "--cpu-smoke"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = list(csv.DictReader(open(tmp_path / "ffn-measurements.csv")))
    checks = list(csv.DictReader(open(tmp_path / "ffn-checks.csv")))
    assert {r["kind"] for r in rows} == {"dense_ffn", "moe_ffn"} and len(rows) == 6
    assert all(c["ok"] == "True" for c in checks) and len(checks) == 2
    moe = [r for r in rows if r["kind"] == "moe_ffn"]
    assert all(int(r["pairs"]) == int(r["tokens"]) * 2 and float(r["median_s"]) > 0 for r in moe)
    assert all(r["torch"] == torch.__version__ and r["date"] for r in rows)
    # the validation path reads what the script wrote
    from attn_dse.validation.ffn import load_rows, validate
    v = validate("h100", load_rows(tmp_path / "ffn-measurements.csv"), fit=False)
    assert v.n_rows == 6 and v.mape > 0


@pytest.mark.gpu
def test_full_run_on_a_gpu(tmp_path):
    assert ffn.main(tmp_path) == 0
