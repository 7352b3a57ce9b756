"""Implementation profiles: the stored vendor measurements, `--kernel auto`, the unfused
(eager) path, and hardware what-ifs that reach the kernels people deploy."""
from pathlib import Path

import numpy as np
import pytest

from attn_dse.cost.families.roofline import eager_passes
from attn_dse.cost.predict import predict
from attn_dse.errors import AttnDseError
from attn_dse.hardware.loader import load_hardware
from attn_dse.validation import implementations as impl
from attn_dse.workloads import attention
from attn_dse.workloads.kernel_spec import KernelSpec

H200 = load_hardware("h200")


@pytest.fixture(scope="module")
def measured():
    rows = impl.measured_rows("h200")
    table, predicted = impl.by_implementation(H200, rows)
    return rows, table, predicted


def test_auto_picks_the_measured_fastest_on_nine_in_ten_contested_shapes(measured):
    rows, _, predicted = measured
    picks = impl.auto_picks(rows, predicted)
    assert picks["shapes"] >= 60  # cuDNN and flash ran the same grid; eager and flex some of it
    assert picks["share"] >= 0.9


@pytest.mark.parametrize("name,family,held_out", [
    ("cudnn", "prefill", 2), ("cudnn", "decode", 2), ("flash", "prefill", 2), ("flash", "decode", 2),
    ("flex", "prefill", 2), ("flex", "block_sparse", 2), ("eager", "decode", 2), ("eager", "mla_decode", 2),
    ("eager", "prefill", 1)])  # eager prefill: 4 rows, every 4th held out
def test_vendor_kernels_held_out_within_8_percent(measured, name, family, held_out):
    _, table, _ = measured
    (row,) = [t for t in table if t["implementation"] == name and t["family"] == family]
    assert row["held_out_rows"] >= held_out
    assert row["held_out_mape"] <= 0.08


def _what_if(tmp_path: Path, text: str) -> str:
    path = tmp_path / "what-if.yaml"
    path.write_text(text)
    return str(path)


LLAMA_70B_ATTENTION = dict(n_heads=64, n_kv_heads=8, head_dim=128)  # Llama-3-70B config.json


def test_twice_the_hbm_bandwidth_speeds_memory_bound_decode(tmp_path):
    hw = _what_if(tmp_path, "name: h100-2x-hbm\nextends: h100\nmemory: [{name: hbm, bandwidth: 6.7 TB/s}]\n")
    wl = attention("gqa", **LLAMA_70B_ATTENTION)
    base = predict("h100", wl, "decode", batch=64, context=32768, kernel="auto")
    fast = predict(hw, wl, "decode", batch=64, context=32768, kernel="auto")
    assert float(base.latency_s / fast.latency_s) >= 1.6


def test_twice_the_matmul_rate_speeds_long_prefill(tmp_path):
    hw = _what_if(tmp_path, "name: h100-2x-mma\nextends: h100\ncompute: {matmul: {bf16: 1979 TFLOP/s}}\n")
    wl = attention("gqa", **LLAMA_70B_ATTENTION)
    base = predict("h100", wl, "prefill", seq=16384, kernel="auto")
    fast = predict(hw, wl, "prefill", seq=16384, kernel="auto")
    assert float(base.latency_s / fast.latency_s) >= 1.6
    # the exp unit is not doubled: softmax keeps the gain under 2x
    assert float(base.latency_s / fast.latency_s) < 2.0


def test_auto_names_the_implementation_per_point():
    wl = attention("gqa", **LLAMA_70B_ATTENTION)
    p = predict("h200", wl, "prefill", seq=np.array([1024, 16384]), kernel="auto")
    assert p.kernel.shape == (2,)
    each = [predict("h200", wl, "prefill", seq=s, kernel=str(k)).latency_s for s, k in zip((1024, 16384), p.kernel)]
    assert np.allclose(p.latency_s, each)
    for name in ("triton", "cudnn", "flash"):
        assert np.all(p.latency_s <= predict("h200", wl, "prefill", seq=np.array([1024, 16384]), kernel=name).latency_s)


def test_unknown_kernel_lists_the_known():
    with pytest.raises(AttnDseError, match="cudnn") as err:
        predict("h200", attention("gqa", **LLAMA_70B_ATTENTION), "decode", context=1024, kernel="flashinfer")
    assert "flashinfer" in str(err.value) and "--calibrate --write" in str(err.value)


def _spec(B, S, hq, hkv, d, past, pairs, phase):
    return KernelSpec(batch=B, seq=S, past=past, h_q=hq, h_kv=hkv, d_qk=d, d_v=d, pairs=pairs, kv_read_tokens=past,
                      causal=True, bytes_per_element=2, phase=phase)


def test_eager_gqa_decode_passes_counted_by_hand():
    """GQA decode, B=2, Hq=8, Hkv=2, L=1000 keys, d=64, bf16 (16,000 scores), as
    gpu/vendor.eager_attention runs it:
    repeat_k (expand + clone): reads K of 2 heads 2*2*1000*64*2 = 512,000 B, writes 8 heads
      2,048,000 B = 2,560,000 B, strided; repeat_v the same;
    qk: q 2*8*64*2 = 2,048 + K (8 heads) 2,048,000 + scores 32,000 = 2,082,048 B;
    scale 64,000 B; no mask (nothing is masked); upcast to fp32 16,000*(2+4) = 96,000 B; the fp32
    softmax 16,000*8 = 128,000 B; downcast 96,000 B; pv: P 32,000 + V 2,048,000 + O 2,048."""
    passes = {p["name"]: p for p in eager_passes(_spec(2, 1, 8, 2, 64, 999, 1000, "decode"))}
    assert list(passes) == ["repeat_k", "repeat_v", "qk", "scale", "mask_clone", "mask_fill", "upcast", "softmax",
                            "downcast", "pv"]
    expect = {"repeat_k": 2_560_000, "repeat_v": 2_560_000, "qk": 2_082_048, "scale": 64_000, "mask_clone": 0,
              "mask_fill": 0, "upcast": 96_000, "softmax": 128_000, "downcast": 96_000, "pv": 2_082_048}
    assert {n: float(p["hbm_bytes"]) for n, p in passes.items()} == expect
    assert {n: float(p["launches"]) for n, p in passes.items() if not p["launches"]} == {"mask_clone": 0,
                                                                                         "mask_fill": 0}
    assert {n for n, p in passes.items() if p["family"] == "strided"} == {"repeat_k", "repeat_v", "mask_fill"}
    assert {n for n, p in passes.items() if p["family"] == "gemm"} == {"qk", "pv"}
    assert float(passes["qk"]["flops"] + passes["pv"]["flops"]) == 4 * 16_000 * 64


def test_eager_causal_prefill_masks_out_of_place():
    """Causal GQA prefill, B=1, S=4, Hq=4, Hkv=2, d=8: 64 scores. masked_fill out of place is a
    clone (64*2*2 = 256 B) and the fill in place reading the scores and the 4x4 bool mask, writing
    the scores (256 + 16 = 272 B); MHA has no repeat pass and no launch for it."""
    passes = {p["name"]: p for p in eager_passes(_spec(1, 4, 4, 2, 8, 0, 10, "prefill"))}
    assert float(passes["mask_clone"]["hbm_bytes"]) == 256 and float(passes["mask_fill"]["hbm_bytes"]) == 272
    assert float(passes["repeat_k"]["hbm_bytes"]) == 1 * 2 * 4 * 8 * 2 + 1 * 4 * 4 * 8 * 2  # 128 + 256
    mha = {p["name"]: p for p in eager_passes(_spec(1, 4, 4, 4, 8, 0, 10, "prefill"))}
    assert float(mha["repeat_k"]["hbm_bytes"]) == 0 and float(mha["repeat_k"]["launches"]) == 0


def test_flash_decode_runs_whole_row_tiles_counted_by_hand():
    """FlashAttention-2 decode (its profile: GQA group packed into the query rows, 128-row tiles
    unsplit, 64-row tiles when split, split only below 1.6 x 132 = 211.2 CTAs), counted by hand:
    - MHA 32/32, B=64, 32768 keys, d=128: 64*32 = 2048 CTAs, unsplit: every KV head runs one 128-row
      tile over every key: 2048 * 128 * 32768 * 2 * (128 + 128) = 4,398,046,511,104 FLOPs;
      HBM: K and V 2048 * 32768 * 256 * 2 = 34,359,738,368 B + q and O 64*32*256*2 = 1,048,576 B.
    - GQA 64/8, B=2, 4096 keys: 2*8 = 16 CTAs, split: one 64-row tile per KV head:
      16 * 64 * 4096 * 512 = 2,147,483,648 FLOPs; HBM: K and V 16 * 4096 * 512 = 33,554,432 B,
      q and O 2*64*512 = 65,536 B, and per split an fp32 partial O plus its max and sum, written and
      read once: 2 * 2*64 * (128 + 2) * 4 = 133,120 B per split."""
    mha = predict("h200", attention("gqa", n_heads=32, n_kv_heads=32, head_dim=128), "decode", batch=64,
                  context=32767, scope="core", kernel="flash")
    assert (mha.mapping["block_m"], mha.mapping["n_split"]) == (128, 1)
    assert float(mha.executed_flops) == 4_398_046_511_104
    assert float(mha.hbm_bytes) == 34_359_738_368 + 1_048_576
    gqa = predict("h200", attention("gqa", n_heads=64, n_kv_heads=8, head_dim=128), "decode", batch=2,
                  context=4095, scope="core", kernel="flash")
    splits = float(gqa.mapping["n_split"])
    assert gqa.mapping["block_m"] == 64 and splits > 1
    assert float(gqa.executed_flops) == 2_147_483_648
    assert float(gqa.hbm_bytes) == 33_554_432 + 65_536 + 133_120 * splits
    # our own kernel pads a single-token decode only to the narrowest MMA (16 rows of 8 packed)
    ours = predict("h200", attention("gqa", n_heads=64, n_kv_heads=8, head_dim=128), "decode", batch=2,
                   context=4095, scope="core", kernel="triton")
    assert float(ours.executed_flops) == 16 * 16 * 4096 * 512


def test_the_tables_held_out_rows_are_those_a_fit_of_their_file_holds_out(measured):
    """Every 4th row of each file, counted in that file: a file added to the table moves no other
    file's held-out rows (counted over the table's own order, one more row shifted them all)."""
    from attn_dse.validation.compare import data_dir, held_out_mask, load_measurements
    rows, _, _ = measured
    mine = load_measurements(data_dir() / "h200-mla-seesaw-measurements.csv")
    held = {(r["batch"], r["context"], r["n_heads"], r["config"], r["median_s"]) for r, h in
            zip(mine, held_out_mask(len(mine))) if h}
    seesaw = [r for r in rows if r["config"].startswith("('seesaw'")]
    assert len(seesaw) == 12 and len(held) == 4
    assert {(r["batch"], r["context"], r["n_heads"], r["config"], r["median_s"]) for r in seesaw
            if r["held_out"]} == {k for k in held if k[3].startswith("('seesaw'")}
