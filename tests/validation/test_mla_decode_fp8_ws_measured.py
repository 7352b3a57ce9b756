"""The warp-specialized fp8 MLA kernel (gpu/mla_decode_fp8_wgmma.py, layout "ws") measured on an
H100 (2026-12-05, h100-mla-decode-fp8-ws-2026-12-05-measurements.csv, the module's bench: bf16
and fp8 at 16, 32 and 128 heads): its rows are timed by its own family, mla_decode_ws, fitted on
this run alone (the H200 keeps the family's defaults)."""
from pathlib import Path

import numpy as np
import pytest

from attn_dse import load_hardware
from attn_dse.validation.compare import compare, data_dir, held_out_mask, kernel_of, load_measurements

CSV = data_dir() / "h100-mla-decode-fp8-ws-2026-12-05-measurements.csv"
# the A/B bench's run on another H100 lease the same day: each kernel tuned at each shape
UNSEEN = Path(__file__).parents[2] / "docs/device-logs/h100-mla-fp8-ws-ab-2026-12-05.csv"
H100 = load_hardware("h100")


def test_each_fp8_row_is_the_warp_specialized_kernel():
    rows = load_measurements(CSV)
    assert all(r["device"] == "NVIDIA H100 80GB HBM3" and r["date"] == "2026-12-05" for r in rows)
    fp8 = [r for r in rows if r["kv_dtype"] == "fp8"]
    assert len(fp8) == 48 and all(eval(r["config"])[0] == "ws" for r in fp8)  # noqa: S307 (literals the bench wrote)
    assert {kernel_of(r) for r in fp8} == {"mla_decode_ws"}
    assert {kernel_of(r) for r in rows if r["kv_dtype"] == "bf16"} <= {"mla_decode", "mla_decode_seesaw"}


def test_two_programs_per_tile_take_most_of_twice_the_time():
    """16 heads, 2 new tokens: two 16-row programs widen every tile. Measured 1.77x the 1-token
    time at B64 x 32k (994 us vs 563 us); the prediction follows (an HBM-bound model: ~1x)."""
    rows = {r["seq"]: r for r in load_measurements(CSV)
            if (r["batch"], r["n_heads"], r["kv_dtype"]) == ("64", "16", "fp8") and r["context"].startswith("3276")}
    one, two = compare(H100, [rows["1"], rows["2"]], "triton").predicted
    assert float(rows["2"]["median_s"]) / float(rows["1"]["median_s"]) == pytest.approx(1.77, abs=0.01)
    assert two / one > 1.5


def test_held_out_and_unseen_rows():
    """Fitted on 3/4 of the fp8 rows, every 4th row of the file held out (all 24 fp8 rows):
    measured 5.0%, worst 19%; over the A/B run, never fitted, 4.2%, worst 7% (8 rows)."""
    rows = load_measurements(CSV)
    c = compare(H100, rows, "triton")
    held = held_out_mask(len(rows)) & (c.families == "mla_decode_ws")
    assert held.sum() >= 20 and c.errors[held].mean() <= 0.06 and c.errors[held].max() <= 0.25
    unseen = load_measurements(UNSEEN)
    u = compare(H100, unseen, "triton")
    ws = u.families == "mla_decode_ws"
    assert ws.sum() == 8 and u.errors[ws].mean() <= 0.06 and u.errors[ws].max() <= 0.1


def test_a_later_lease_never_fitted():
    """The module's grid on another H100 lease (48 fp8 rows at 16, 32 and 128 heads; "wsr" offered,
    the tuning kept "ws"): measured 5.9% over the family's rows, worst 30% (B1 rows)."""
    rows = load_measurements(Path(__file__).parents[2] / "docs/device-logs/h100-mla-fp8-grid-wsr-offered-2026-12-05.csv")
    c = compare(H100, rows, "triton")
    ws = c.families == "mla_decode_ws"
    assert ws.sum() == 48 and c.errors[ws].mean() <= 0.07


def test_the_rope_in_registers_layout_is_the_same_family():
    """"wsr" rows (the A/B run) are timed by mla_decode_ws, whose knobs, fitted on "ws", predict
    them slow: wsr is the faster variant (8% at B64 and B128 x 32k)."""
    rows = [r for r in load_measurements(Path(__file__).parents[2] / "docs/device-logs/h100-mla-fp8-wsr-ab-2026-12-05.csv")
            if r["config"].startswith("('wsr'")]
    assert len(rows) == 2 and {kernel_of(r) for r in rows} == {"mla_decode_ws"}
    c = compare(H100, rows, "triton")
    assert np.all(c.predicted > c.measured) and np.all(c.errors <= 0.1)
