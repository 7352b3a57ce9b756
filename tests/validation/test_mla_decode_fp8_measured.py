"""Our fp8 MLA decode kernel (FlashMLA's 656-byte latent row, gpu/mla_decode_fp8.py) measured on
an H200 (2026-12-02, h200-mla-decode-fp8-measurements.csv): its rows are timed by the family of
its own kernel (mla_decode_widen), which the MLA family does not dispatch to."""
import csv

from attn_dse import load_hardware
from attn_dse.cost.predict import predict
from attn_dse.validation.compare import compare, data_dir, held_out_mask, kernel_of, load_measurements, workload_for

CSV = data_dir() / "h200-mla-decode-fp8-measurements.csv"
H200 = load_hardware("h200")


def test_every_fp8_row_is_the_widening_kernels_and_every_bf16_row_that_of_its_layout():
    rows = load_measurements(CSV)
    assert all(r["device"] == "NVIDIA H200" and r["date"] for r in rows)
    fp8 = [r for r in rows if r["kv_dtype"] == "fp8"]
    assert len(fp8) == 48 and [kernel_of(r) for r in fp8] == ["mla_decode_widen"] * 48
    for r in rows:
        if r["kv_dtype"] == "bf16":  # 16 and 32 heads: our Triton kernel; 128: the split-tile Gluon one
            assert kernel_of(r) == ("mla_decode_wgmma" if "wgmma" in r["config"] else "mla_decode"), r["config"]


def test_the_656_byte_row_reaches_the_prediction():
    """B64 x 32768 tokens, 16 heads, 2 splits, counted by hand: the latent 64*32768*656 =
    1,375,731,712 B (the row's kv_bytes); q (576 wide) and O (512) in bf16 64*16*1088*2 =
    2,228,224 B; per split an fp32 partial O with its max and sum, written and read:
    2 * 64*16 * 514 * 4 * 2 = 8,421,376 B."""
    row = next(r for r in load_measurements(CSV) if (r["batch"], r["context"], r["n_heads"], r["kv_dtype"])
               == ("64", "32767", "16", "fp8"))
    assert int(row["kv_bytes"]) == 1_375_731_712
    wl, kw = workload_for(row)
    assert kw["mapping"] == {"n_split": 2.0, "block_m": 16.0, "block_n": 64.0, "kernel": "mla_decode_widen"}
    p = predict(H200, wl, scope="core", kernel="triton", **kw)
    assert float(p.hbm_bytes) == 1_375_731_712 + 2_228_224 + 8_421_376


def test_held_out_rows_within_8_percent():
    """Fitted on 3/4 of the rows (only this family's knobs), every 4th held out: measured 4.0%."""
    rows = load_measurements(CSV)
    c = compare(H200, rows, "triton")
    test = held_out_mask(len(rows)) & (c.families == "mla_decode_widen")
    assert test.sum() >= 20
    assert c.errors[test].mean() <= 0.08


def test_the_mla_family_does_not_dispatch_to_the_slow_kernel():
    """Unpinned, an fp8 MLA decode is the MLA family's own kernel over the narrow cache, which
    the measured widening kernel is 1.7x (16 heads) to 7x (128 heads) slower than."""
    row = next(r for r in csv.DictReader(open(CSV)) if (r["batch"], r["context"], r["n_heads"], r["kv_dtype"])
               == ("64", "32767", "128", "fp8"))
    wl, kw = workload_for(row)
    free = dict(kw, mapping=None)
    own = predict(H200, wl, scope="core", kernel="triton", **dict(kw, mapping={"kernel": "mla_decode"})).latency_s
    assert predict(H200, wl, scope="core", kernel="triton", **free).latency_s <= own
    assert predict(H200, wl, scope="core", kernel="triton", **kw).latency_s > 3 * own
