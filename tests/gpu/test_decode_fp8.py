"""fp8-KV decode against the float32 reference on the dequantized cache: on the CPU through
Triton's interpreter (tiny ragged shapes) and on a GPU (marked `gpu`)."""
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from attn_dse.gpu.decode_fp8 import decode_fp8, dequantize_kv, quantize_kv  # noqa: E402
from attn_dse.gpu.reference import attention_ref  # noqa: E402

DEV = "cuda" if torch.cuda.is_available() else "cpu"


def _run(B, Sq, Hq, Hkv, D, L, splits, bit_move=False):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(B, Sq, Hq, D, generator=g).to(DEV, torch.bfloat16)
    k8, ks = quantize_kv(torch.randn(B, L, Hkv, D, generator=g).to(DEV))
    v8, vs = quantize_kv(torch.randn(B, L, Hkv, D, generator=g).to(DEV))
    lens = torch.randint(max(Sq, L // 3), L + 1, (B,), generator=g).to(DEV, torch.int32)
    out = torch.full_like(q, float("nan"))
    decode_fp8(q, k8, v8, ks, vs, lens, n_splits=splits, out=out, bit_move=bit_move)
    ref = attention_ref(q, dequantize_kv(k8, ks), dequantize_kv(v8, vs), True, seq_lens=lens)
    assert not torch.isnan(out).any(), "an output element was never written"
    return float((out.float() - ref).norm() / ref.norm())


def test_quantize_roundtrip_within_e4m3_precision():
    x = torch.randn(2, 130, 3, 16) * torch.logspace(-3, 3, 130)[None, :, None, None]
    x8, s = quantize_kv(x)
    assert s.shape == (2, 3, 3)
    assert float((dequantize_kv(x8, s) - x).norm() / x.norm()) < 0.05  # e4m3: 3 mantissa bits


def test_bit_move_widens_every_e4m3_code_exactly():
    """The kernel's integer widening against torch's own e4m3 decoding, all 254 non-NaN codes."""
    from attn_dse.gpu.decode_fp8 import widen_by_bit_move
    codes = torch.tensor([c for c in range(256) if c & 0x7F != 0x7F], dtype=torch.uint8)
    exact = codes.view(torch.float8_e4m3fn).float()
    assert torch.equal(widen_by_bit_move(codes), exact)
    assert float(exact.abs().max()) == 448.0 and float(exact[exact > 0].min()) == 2.0**-9  # normals and subnormals


@pytest.mark.skipif(DEV == "cuda", reason="the GPU test covers it")
@pytest.mark.parametrize("bit_move", [False, True])
def test_decode_fp8_interpreter_tiny(bit_move):
    assert _run(2, 2, 4, 2, 16, 150, 2, bit_move) < 2e-2


@pytest.mark.gpu
@pytest.mark.skipif(DEV != "cuda", reason="needs a CUDA GPU")
@pytest.mark.parametrize("B,Sq,Hq,Hkv,D,L,splits", [(3, 1, 32, 8, 128, 3000, 8), (2, 4, 16, 2, 128, 1111, 3),
                                                     (1, 2, 8, 1, 128, 4097, None)])
def test_decode_fp8_gpu(B, Sq, Hq, Hkv, D, L, splits):
    assert _run(B, Sq, Hq, Hkv, D, L, splits) < 2e-2
    assert _run(B, Sq, Hq, Hkv, D, L, splits, bit_move=True) < 2e-2
