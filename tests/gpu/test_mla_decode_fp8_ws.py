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
    _, block_h, _, stages, bufs = request.param
    sass, shared = sm90.build("mla_decode_fp8_wgmma", block_h, stages, bufs)
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
    (_, block_h, _, stages, bufs), sass, shared = build
    assert re.search(r"USETMAXREG\.DEALLOC\.CTAPOOL 0x60\b", sass) and re.search(r"DEALLOC\.CTAPOOL 0x18\b", sass)
    assert not re.search(r"\b(STL|LDL)\b", sass), "a spill"
    named = set(re.findall(r"BAR\.SYNC\.DEFER_BLOCKING (0x\w+), (0x\w+)", sass))
    assert len({i for i, _ in named}) == 2 and {int(n, 16) for _, n in named} == {128}
    per_stage = 64 * 512 + 64 * 64 * 2 + 64 * 4 * 4  # e4m3 latent, bf16 RoPE key, fp32 scales
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
