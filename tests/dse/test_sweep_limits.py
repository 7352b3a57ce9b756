"""Sweep limits and interrupts: the grid cap (--max-points) and a summary that counts only written rows."""
import csv
import subprocess
import sys

import pytest
import yaml

from attn_dse.dse.sweep import run_sweep
from attn_dse.errors import AttnDseError

SMALL = {"variants": [{"model": "llama-3-8b", "params": {"n_kv_heads": [1, 2, 4, 8]}}],
         "workload": {"phase": ["decode", "prefill"], "batch": [1, 8, 64], "context": [4096, 32768]},
         "objectives": [{"minimize": "time_per_token_s"}]}
N_SMALL = 4 * 2 * 3 * 2


@pytest.fixture
def space_file(tmp_path):
    p = tmp_path / "small.yaml"
    p.write_text(yaml.safe_dump(SMALL))
    return p


def test_grid_above_max_points_is_refused_naming_the_option(space_file, tmp_path):
    with pytest.raises(AttnDseError) as e:
        run_sweep("h100", str(space_file), tmp_path / "o", max_points=N_SMALL - 1, write_points=False)
    assert f"{N_SMALL:,} points" in str(e.value) and "--max-points" in str(e.value)
    s, _ = run_sweep("h100", str(space_file), tmp_path / "o2", max_points=N_SMALL, write_points=False)
    assert s["points"] == N_SMALL


def test_random_strategy_override_is_not_capped_by_the_grid(space_file, tmp_path):
    s, _ = run_sweep("h100", str(space_file), tmp_path / "o", strategy="random", samples=10,
                     max_points=N_SMALL - 1, write_points=False)
    assert 0 < s["points"] <= 10  # sampled, not refused as a grid


def test_cli_max_points_error_is_one_line_exit_2(space_file, tmp_path):
    r = subprocess.run([sys.executable, "-m", "attn_dse.cli", "sweep", "h100", str(space_file), "--out",
                        str(tmp_path / "o"), "--max-points", "5", "--no-points"], capture_output=True, text=True)
    assert r.returncode == 2 and "--max-points" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_interrupt_inside_a_part_write_leaves_summary_equal_to_rows(space_file, tmp_path, monkeypatch):
    """Ctrl-C while the second chunk's part is written: that chunk is neither counted nor kept."""
    import attn_dse.dse.evaluate as out_mod  # where the chunk writes its part
    real = out_mod.write_part
    calls = {"n": 0}

    def interrupting(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        real(*a, **k)

    monkeypatch.setattr(out_mod, "write_part", interrupting)
    s, _ = run_sweep("h100", str(space_file), tmp_path / "o", formats=("csv",), chunk=7)
    with open(tmp_path / "o" / "points.csv") as f:
        n_rows = sum(1 for _ in csv.DictReader(f))
    assert s["partial"] and s["points"] == n_rows == 7
    assert not (tmp_path / "o" / "points.parquet").exists()  # parquet was not asked for
