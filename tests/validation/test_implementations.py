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


@pytest.mark.parametrize("name,family", [("cudnn", "prefill"), ("cudnn", "decode"), ("flash", "prefill"),
                                         ("flex", "prefill"), ("flex", "block_sparse")])
def test_vendor_kernels_held_out_within_8_percent(measured, name, family):
    _, table, _ = measured
    (row,) = [t for t in table if t["implementation"] == name and t["family"] == family]
    assert row["held_out_rows"] >= 2
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


def test_eager_passes_move_every_tensor_through_hbm():
    """GQA decode, B=2, Hq=8, Hkv=2, L=1000 keys, d=64, bf16, counted by hand: repeat_kv reads
    K and V (2 heads) and writes them for 8 heads; QK^T reads q and K (8 heads), writes scores;
    scale reads and writes them; softmax reads bf16, writes fp32; the cast reads fp32, writes
    bf16; PV reads P and V (8 heads), writes O. No mask pass in decode."""
    B, hq, hkv, L, d = 2, 8, 2, 1000, 64
    spec = KernelSpec(batch=B, seq=1, past=L - 1, h_q=hq, h_kv=hkv, d_qk=d, d_v=d, pairs=L, kv_read_tokens=L - 1,
                      causal=True, bytes_per_element=2, phase="decode")
    passes = {p["name"]: p for p in eager_passes(spec)}
    assert list(passes) == ["repeat_kv", "qk", "scale", "softmax", "cast", "pv"]
    kv_small, kv_big, scores = B * hkv * L * 2 * d * 2, B * hq * L * 2 * d * 2, B * hq * L
    assert passes["repeat_kv"]["hbm_bytes"] == kv_small + kv_big
    assert passes["qk"]["hbm_bytes"] == B * hq * d * 2 + kv_big / 2 + scores * 2
    assert passes["scale"]["hbm_bytes"] == scores * 4
    assert passes["softmax"]["hbm_bytes"] == scores * 6 and passes["cast"]["hbm_bytes"] == scores * 6
    assert passes["pv"]["hbm_bytes"] == scores * 2 + kv_big / 2 + B * hq * d * 2
    assert passes["qk"]["flops"] + passes["pv"]["flops"] == 4 * scores * d
