"""fp8-KV decode against the float32 reference on the dequantized cache: on the CPU through
Triton's interpreter (tiny ragged shapes) and on a GPU (marked `gpu`)."""
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from attn_dse.gpu.decode_fp8 import decode_fp8, dequantize_kv, quantize_kv  # noqa: E402
from attn_dse.gpu.decode_fp8_regs import choose_splits_regs, resident_programs  # noqa: E402
from attn_dse.gpu.reference import attention_ref  # noqa: E402

DEV = "cuda" if torch.cuda.is_available() else "cpu"


def _run(B, Sq, Hq, Hkv, D, L, splits, **kw):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(B, Sq, Hq, D, generator=g).to(DEV, torch.bfloat16)
    k8, ks = quantize_kv(torch.randn(B, L, Hkv, D, generator=g).to(DEV))
    v8, vs = quantize_kv(torch.randn(B, L, Hkv, D, generator=g).to(DEV))
    lens = torch.randint(max(Sq, L // 3), L + 1, (B,), generator=g).to(DEV, torch.int32)
    out = torch.full_like(q, float("nan"))
    decode_fp8(q, k8, v8, ks, vs, lens, n_splits=splits, out=out, **kw)
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


def test_resident_programs_by_registers_threads_and_blocks():
    assert resident_programs(168, 1, 2048) == 12  # 168 x 32 = 5376 registers a warp (21 units of 256); 65536 // 5376
    assert resident_programs(255, 1, 2048) == 8  # 32 units = 8192 a warp
    assert resident_programs(32, 1, 2048) == 32  # 64 by registers and by threads, 32 blocks at most
    assert resident_programs(128, 4, 2048) == 4  # 4-warp programs: 16 warps by registers


def test_splits_fill_whole_waves():
    # 132 SMs x 12 programs = 1584 slots; 64 x 8 (batch x KV heads) programs a split: 3 splits = 1536 (97%),
    # where 1 split fills 32% and 5 splits take two waves at 81%
    assert choose_splits_regs(64, 8, 32768, 132, 32, 12) == 3
    # 16 x 8 = 128 programs a split, at most 4096 // (8 * 32) = 16 splits: 12 splits = 1536 slots
    assert choose_splits_regs(16, 8, 4096, 132, 32, 12) == 12
    assert choose_splits_regs(1, 1, 100, 132, 32, 12) == 1  # too short for a second split
    # one sequence, 8 programs a split, at most 4096 // (8 * 64) = 8 splits: no split count fills a wave,
    # so the most (8 x 8 = 64 of 1056 slots); an absolute slack took 2 splits here (0.14x the bf16 kernel)
    assert choose_splits_regs(1, 8, 4096, 132, 64, 8) == 8


@pytest.mark.gpu
@pytest.mark.skipif(DEV != "cuda", reason="needs a CUDA GPU")
@pytest.mark.parametrize("kernel", ["regs", "triton"])
@pytest.mark.parametrize("B,Sq,Hq,Hkv,D,L,splits,block_n", [(3, 1, 32, 8, 128, 3000, None, 32),
                                                            (2, 2, 16, 2, 128, 1500, 5, 16),
                                                            (4, 1, 8, 8, 64, 515, 2, 64)])
def test_decode_fp8_kernels_gpu(kernel, B, Sq, Hq, Hkv, D, L, splits, block_n):
    kw = dict(kernel=kernel, block_n=block_n) if kernel == "regs" else dict(kernel=kernel)
    assert _run(B, Sq, Hq, Hkv, D, L, splits, **kw) < 2e-2
