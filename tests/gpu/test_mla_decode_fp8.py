"""fp8-KV absorbed MLA decode in FlashMLA's 656-byte row: the layout counted by hand, the e4m3
round trip, and the kernel against the float32 reference on the dequantized cache, on the CPU
through Triton's interpreter (tiny dims: latent 64 in 4 groups of 16, rope 16) and on a GPU."""
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from attn_dse.gpu.flashmla_row import dequantize, quantize_latent, row_bytes, unpack  # noqa: E402
from attn_dse.gpu.mla_decode_fp8 import mla_decode_fp8, mla_fp8_ref  # noqa: E402
from attn_dse.gpu.reference import mla_decode_ref  # noqa: E402

DEV = "cuda" if torch.cuda.is_available() else "cpu"


def _latent(g, B, L, D):
    """Groups of very different size (x 1, 10, 100, 1000) and per-token magnitudes: a scale
    applied to the wrong group or token errs by far more than the bound."""
    per_group = (10.0 ** torch.arange(4)).repeat_interleave(D // 4)
    return torch.randn(B, L, D, generator=g) * per_group * torch.logspace(-1, 1, L)[None, :, None]


def test_row_is_656_bytes_counted_by_hand():
    g = torch.Generator().manual_seed(0)
    c, r = torch.randn(2, 3, 512, generator=g), torch.randn(2, 3, 64, generator=g)
    packed = quantize_latent(c, r)
    assert packed.dtype == torch.uint8 and packed.shape == (2, 3, 512 * 1 + 4 * 4 + 64 * 2) == (2, 3, 656)
    assert row_bytes() == 656
    row = packed[1, 2].numpy()  # bytes of one token, read without the module's views
    scale = row[512:516].view("<f4")[0]
    assert scale == pytest.approx(float(c[1, 2, :128].abs().max()) / 448, rel=1e-6)
    assert row[516:528].view("<f4")[2] == pytest.approx(float(c[1, 2, 384:].abs().max()) / 448, rel=1e-6)
    first = torch.tensor(row[:1].copy()).view(torch.float8_e4m3fn).float()
    assert float(first) == float((c[1, 2, 0] / torch.tensor(scale)).to(torch.float8_e4m3fn).float())
    rope = torch.tensor(row[528:656].copy()).view(torch.bfloat16)
    assert torch.equal(rope, r[1, 2].to(torch.bfloat16))


def test_quantize_roundtrip_within_e4m3_precision():
    g = torch.Generator().manual_seed(1)
    c, r = _latent(g, 2, 50, 512), torch.randn(2, 50, 64, generator=g)
    packed = quantize_latent(c, r)
    back = dequantize(packed)
    scale = unpack(packed)[1].repeat_interleave(128, -1)
    # e4m3: 3 mantissa bits (half an ulp = 2^-4 relative); below 2^-6 subnormals, steps of 2^-9
    assert ((back[..., :512] - c).abs() <= 2 ** -4 * c.abs() + 2 ** -10 * scale).all()
    assert torch.equal(back[..., 512:], r.to(torch.bfloat16).float())
    with pytest.raises(ValueError, match="uint8"):
        unpack(packed.view(torch.int8))


def _run(B, Sq, H, D, R, L, lens, splits, cfg=None, dtype=torch.float16):
    g = torch.Generator().manual_seed(2)
    qn = torch.randn(B, Sq, H, D, generator=g).to(DEV, dtype) * 0.05
    qp = torch.randn(B, Sq, H, R, generator=g).to(DEV, dtype)
    packed = quantize_latent(_latent(g, B, L, D).to(DEV), torch.randn(B, L, R, generator=g).to(DEV))
    sl = torch.tensor(lens, dtype=torch.int32, device=DEV)
    out = torch.full((B, Sq, H, D), float("nan"), device=DEV, dtype=dtype)
    mla_decode_fp8(qn, qp, packed, sl, cfg, n_splits=splits, sm_scale=0.3, out=out)
    assert not torch.isnan(out).any(), "an output element was never written"
    ref = mla_fp8_ref(qn, qp, packed, sl, 0.3)
    return float((out.float() - ref).norm() / ref.norm()), out, (qn, qp, packed, sl)


@pytest.mark.skipif(DEV == "cuda", reason="the GPU test covers it")
@pytest.mark.parametrize("Sq,splits", [(1, 1), (2, 3), (2, 1)])
def test_mla_decode_fp8_interpreter_tiny(Sq, splits):
    """Ragged lengths (70 and 23 of 70 tokens), one split (the output written directly) and three."""
    err, out, (qn, qp, packed, sl) = _run(2, Sq, 4, 64, 16, 70, [70, 23], splits, ("heads", 16, 16, 4, 2))
    assert err < 1e-2
    # the bound separates: the scales of groups 0 and 3 swapped are far off the kernel's output
    lat, sc, rope = unpack(packed, 64, 16)
    wrong = torch.cat([lat.float() * sc.flip(-1).repeat_interleave(16, -1), rope.float()], -1)
    ref_wrong = mla_decode_ref(qn, qp, wrong, sl, 64, 0.3)
    assert float((out.float() - ref_wrong).norm() / ref_wrong.norm()) > 0.1


@pytest.mark.gpu
@pytest.mark.skipif(DEV != "cuda", reason="needs a CUDA GPU")
@pytest.mark.parametrize("B,Sq,H,L,splits", [(3, 1, 128, 3001, None), (2, 2, 16, 1500, 7), (4, 2, 32, 2049, 1)])
def test_mla_decode_fp8_gpu(B, Sq, H, L, splits):
    lens = torch.randint(L // 2, L + 1, (B,), generator=torch.Generator().manual_seed(3)).tolist()
    assert _run(B, Sq, H, 512, 64, L, lens, splits, dtype=torch.bfloat16)[0] < 1e-2


@pytest.mark.gpu
@pytest.mark.skipif(DEV != "cuda" or torch.cuda.get_device_capability()[0] != 9, reason="needs a Hopper GPU")
@pytest.mark.parametrize("B,Sq,H,L,splits,cfg", [(3, 1, 128, 3001, None, (32, 8)), (2, 2, 16, 1500, 7, (16, 4)),
                                                  (4, 2, 32, 2049, 1, (16, 4)), (5, 1, 16, 130, 2, (16, 4)),
                                                  (2, 2, 16, 999, 3, (32, 8)), (3, 1, 16, 64, 1, (16, 8))])
def test_mla_decode_fp8_wgmma_gpu(B, Sq, H, L, splits, cfg):
    """The Gluon kernel: ragged lengths, one split (written directly) and several, splits of one
    tile and of none (64 and 130 tokens), a wrong scale group far off."""
    lens = torch.randint(L // 2, L + 1, (B,), generator=torch.Generator().manual_seed(3)).tolist()
    block_h, warps = cfg
    err, out, (qn, qp, packed, sl) = _run(B, Sq, H, 512, 64, L, lens, splits, ("wgmma", block_h, 64, warps, 2),
                                          dtype=torch.bfloat16)
    assert err < 1e-2
    lat, sc, rope = unpack(packed, 512, 64)
    wrong = torch.cat([lat.float() * sc.flip(-1).repeat_interleave(128, -1), rope.float()], -1)
    ref_wrong = mla_decode_ref(qn, qp, wrong, sl, 512, 0.3)
    assert float((out.float() - ref_wrong).norm() / ref_wrong.norm()) > 0.1
