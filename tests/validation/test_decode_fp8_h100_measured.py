"""Our fp8-KV GQA decode kernels measured on an H100 (2026-12-05,
h100-decode-fp8-2026-12-05-measurements.csv, the module's bench beside our bf16 decode): the
families decode_regs and decode_widen fitted on this run (before, the H100 ran them on
defaults), checked on the wave ladder of the same day, which the fit never saw."""
import csv
from pathlib import Path

from attn_dse import load_hardware
from attn_dse.validation.compare import compare, data_dir, held_out_mask, load_measurements

CSV = data_dir() / "h100-decode-fp8-2026-12-05-measurements.csv"
LADDER = Path(__file__).parents[2] / "docs/device-logs/h100-ctas-ladder-2026-12-05.csv"
H100 = load_hardware("h100")


def test_checked_and_timed_on_an_h100():
    rows = load_measurements(CSV)
    assert {r["device"] for r in rows} == {"NVIDIA H100 80GB HBM3"} and len(rows) == 31
    checks = list(csv.DictReader(open(data_dir() / "h100-decode-fp8-2026-12-05-checks.csv")))
    assert len(checks) == 39 and all(c["ok"] == "True" and float(c["rel_err"]) < float(c["bound"]) for c in checks)


def test_held_out_rows():
    """Every 4th row held out: measured 3.5% for the register kernel and 8.6% for the widening
    kernel (2 rows each; 4.3% and 12.9%), above the issue's 8% bound."""
    rows = load_measurements(CSV)
    c = compare(H100, rows, "triton")
    held = held_out_mask(len(rows))
    regs, widen = held & (c.families == "decode_regs"), held & (c.families == "decode_widen")
    assert regs.sum() == 2 and widen.sum() == 2
    assert c.errors[regs].mean() <= 0.05 and c.errors[widen].mean() <= 0.10


def test_the_ladder_never_fitted():
    """Fixed work a program at 1/2 to 16 programs an SM: measured 17.0% for the register kernel
    (its worst, 31%, a short wave past 8 an SM, costing a lone program's time the model does not
    charge) and 10.6% for the widening kernel; 33% and 28% on the defaults before this fit."""
    c = compare(H100, load_measurements(LADDER), "triton")
    regs, widen = c.families == "decode_regs", c.families == "decode_widen"
    assert regs.sum() == 16 and widen.sum() == 10
    assert c.errors[regs].mean() <= 0.2 and c.errors[widen].mean() <= 0.13
