"""fp8-KV decode against the float32 reference on the dequantized cache: on the CPU through
Triton's interpreter (tiny ragged shapes) and on a GPU (marked `gpu`)."""
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from attn_dse.gpu.decode_fp8 import decode_fp8, dequantize_kv, quantize_kv  # noqa: E402
from attn_dse.gpu.reference import attention_ref  # noqa: E402

DEV = "cuda" if torch.cuda.is_available() else "cpu"


def _run(B, Sq, Hq, Hkv, D, L, splits):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(B, Sq, Hq, D, generator=g).to(DEV, torch.bfloat16)
    k8, ks = quantize_kv(torch.randn(B, L, Hkv, D, generator=g).to(DEV))
    v8, vs = quantize_kv(torch.randn(B, L, Hkv, D, generator=g).to(DEV))
    lens = torch.randint(max(Sq, L // 3), L + 1, (B,), generator=g).to(DEV, torch.int32)
    out = torch.full_like(q, float("nan"))
    decode_fp8(q, k8, v8, ks, vs, lens, n_splits=splits, out=out)
    ref = attention_ref(q, dequantize_kv(k8, ks), dequantize_kv(v8, vs), True, seq_lens=lens)
    assert not torch.isnan(out).any(), "an output element was never written"
    return float((out.float() - ref).norm() / ref.norm())


def test_quantize_roundtrip_within_e4m3_precision():
    x = torch.randn(2, 130, 3, 16) * torch.logspace(-3, 3, 130)[None, :, None, None]
    x8, s = quantize_kv(x)
    assert s.shape == (2, 3, 3)
    assert float((dequantize_kv(x8, s) - x).norm() / x.norm()) < 0.05  # e4m3: 3 mantissa bits


@pytest.mark.skipif(DEV == "cuda", reason="the GPU test covers it")
def test_decode_fp8_interpreter_tiny():
    assert _run(2, 2, 4, 2, 16, 150, 2) < 2e-2


@pytest.mark.gpu
@pytest.mark.skipif(DEV != "cuda", reason="needs a CUDA GPU")
@pytest.mark.parametrize("B,Sq,Hq,Hkv,D,L,splits", [(3, 1, 32, 8, 128, 3000, 8), (2, 4, 16, 2, 128, 1111, 3),
                                                     (1, 2, 8, 1, 128, 4097, None)])
def test_decode_fp8_gpu(B, Sq, Hq, Hkv, D, L, splits):
    assert _run(B, Sq, Hq, Hkv, D, L, splits) < 2e-2
