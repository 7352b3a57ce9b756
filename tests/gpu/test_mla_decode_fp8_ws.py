"""The warp-specialized fp8-KV MLA kernel (gpu/mla_decode_fp8_wgmma.py, layout "ws"): its sm_90
build checked here without a GPU (the MMAs counted by hand, registers, shared memory, one named
barrier a partition), and on a Hopper GPU (marked `gpu`) its output against float32."""
import re

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from attn_dse.gpu.mla_decode_fp8 import WS_CONFIGS  # noqa: E402
from tests.gpu import sm90  # noqa: E402
from tests.gpu.test_mla_decode_fp8 import DEV, _run  # noqa: E402

CONFIGS = sorted({c for cs in WS_CONFIGS.values() for c in cs})


@pytest.fixture(scope="module", params=CONFIGS, ids=str)
def build(request):
    layout, block_h, _, stages, bufs = request.param
    sass, shared = sm90.build("mla_decode_fp8_wgmma", block_h, stages, bufs, layout == "wsr")
    return request.param, sass, shared


def test_one_tile_is_the_mmas_counted_by_hand(build):
    """Per 64-token tile: S^T = C Qn^T (K 512) + K_rope Qr^T (K 64) as 64 x N x 16 wgmmas, N the
    program's rows; O^T += C^T P^T, 512 latent rows in 8 blocks of 64, K 64 tokens: 36 + 32."""
    (_, block_h, *_), sass, _ = build
    shapes = re.findall(r"HGMMA\.(\d+)x(\d+)x(\d+)\.F32", sass)
    assert set(shapes) == {("64", str(block_h), "16")}
    assert len(shapes) == 512 // 16 + 64 // 16 + (512 // 64) * (64 // 16)
    assert len(re.findall(r"HGMMA\.\S+ R\d+, gdesc\[\w+\]\.tnspA\.tnspB", sass)) == 32  # P V reads C^T, P^T


def test_partitions_registers_and_shared_memory(build):
    """The widening warpgroup drops to 96 registers and the loader warp to 24; no spills; the
    consumer and the widening warpgroup (128 threads each) sync on named barriers of their own;
    the buffers fit the SM."""
    (layout, block_h, _, stages, bufs), sass, shared = build
    assert re.search(r"USETMAXREG\.DEALLOC\.CTAPOOL 0x60\b", sass) and re.search(r"DEALLOC\.CTAPOOL 0x18\b", sass)
    assert not re.search(r"\b(STL|LDL)\b", sass), "a spill"
    named = set(re.findall(r"BAR\.SYNC\.DEFER_BLOCKING (0x\w+), (0x\w+)", sass))
    assert len({i for i, _ in named}) == 2 and {int(n, 16) for _, n in named} == {128}
    per_stage = 64 * (512 + 4 * 4 + (layout == "ws") * 64 * 2)  # e4m3 latent, fp32 scales, bf16 RoPE key
    least = stages * per_stage + bufs * 64 * 512 * 2 + block_h * (512 * 2 + 64 * 2) + 64 * block_h * 2
    assert least <= shared <= 227 * 1024


@pytest.mark.gpu
@pytest.mark.skipif(DEV != "cuda" or torch.cuda.get_device_capability()[0] != 9, reason="needs a Hopper GPU")
@pytest.mark.parametrize("cfg", CONFIGS, ids=str)
@pytest.mark.parametrize("B,Sq,H,L,splits", [(2, 2, 16, 1500, 7), (5, 1, 16, 130, 2), (3, 1, 16, 64, 1),
                                              (4, 1, 32, 2049, 1), (2, 2, 16, 999, 3)])
def test_mla_decode_fp8_ws_gpu(B, Sq, H, L, splits, cfg):
    """Ragged lengths, one split (written directly) and several, splits of one tile and of none,
    blocks of 32 rows over 16 (the rows past the last masked)."""
    lens = torch.randint(L // 2, L + 1, (B,), generator=torch.Generator().manual_seed(3)).tolist()
    assert _run(B, Sq, H, 512, 64, L, lens, splits, cfg, dtype=torch.bfloat16)[0] < 1e-2


def test_each_configuration_launches_its_kernel_with_every_parameter(monkeypatch):
    """Without a GPU: each launch bound to its Gluon kernel's signature (a missing, extra or
    misplaced argument raises), the warp-specialized one with its stages, buffers and registers."""
    import inspect

    import attn_dse.gpu.mla_decode_fp8_wgmma as m
    from attn_dse.gpu.flashmla_row import quantize_latent
    launched = []

    class Grid:
        def __init__(self, kernel):
            self.kernel = kernel

        def __getitem__(self, grid):
            def launch(*args, **kw):
                sig = inspect.signature(self.kernel.fn)
                bound = sig.bind(*args, **{k: v for k, v in kw.items() if k in sig.parameters}).arguments
                launched.append((self.kernel.fn.__name__, grid, bound, {k: kw[k] for k in kw if k not in sig.parameters}))
            return launch

    for name in ("_mla_fp8_ws", "_mla_fp8_split", "_mla_fp8_split_regs"):
        monkeypatch.setattr(m, name, Grid(getattr(m, name)))
    monkeypatch.setattr(m, "run_splits", lambda launch, shape, n, like, out: launch(torch.empty(1), torch.empty(1)))
    B, Sq, H, L = 2, 2, 16, 300
    q_nope, q_rope = torch.randn(B, Sq, H, 512), torch.randn(B, Sq, H, 64, dtype=torch.bfloat16)
    packed = quantize_latent(torch.randn(B, L, 512), torch.randn(B, L, 64))
    for buffers in (("ws", 3, 1, False), ("ws", 2, 2, True), 2, 1):
        m.mla_decode_fp8_wgmma(q_nope, q_rope, packed, torch.full((B,), L, dtype=torch.int32), 3, 0.1, 16, 4, buffers)
    assert [name for name, *_ in launched] == ["_mla_fp8_ws", "_mla_fp8_ws", "_mla_fp8_split", "_mla_fp8_split_regs"]
    for _, grid, bound, extra in launched:
        assert grid == (2, B, 3) and (bound["L"], bound["n_heads"], bound["seq_q"], bound["n_splits"]) == (L, H, Sq, 3)
        assert bound["split_len"] == 128  # 100 tokens a split, in whole 64-token tiles
    ws, wsr = launched[:2]
    assert (ws[2]["STAGES"], ws[2]["BUFS"], ws[2]["ROPE_REGS"], ws[3]) == (3, 1, False, {"num_warps": 4, "maxnreg": 168})
    assert (wsr[2]["STAGES"], wsr[2]["BUFS"], wsr[2]["ROPE_REGS"]) == (2, 2, True)
    assert wsr[2]["Rope"].dtype == torch.bfloat16 and wsr[2]["Rope"].shape == (B * L, 328)  # the row as bf16
