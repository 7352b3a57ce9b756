"""The Gluon prefill (gpu/prefill_gluon.py): its sm_90 build checked here without a GPU, its
refusals, and on a Hopper GPU (marked `gpu`) its outputs against the float32 reference."""
import re

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from attn_dse.gpu.prefill import prefill  # noqa: E402
from attn_dse.gpu.reference import attention_ref  # noqa: E402
from tests.gpu import sm90  # noqa: E402

HOPPER = torch.cuda.is_available() and torch.cuda.get_device_capability()[0] == 9


def _loops(sass: str) -> list:
    """The instructions of each loop in the SASS (from a backward branch's target to it)."""
    ins = [(int(a, 16), t) for a, t in re.findall(r"/\*([0-9a-f]{4,})\*/\s+([^;]*);", sass)]
    loops = []
    for addr, text in ins:
        target = re.search(r"\bBRA (0x[0-9a-f]+)", text)
        if target and int(target.group(1), 16) < addr:
            loops.append([t for a, t in ins if int(target.group(1), 16) <= a <= addr])
    return loops


@pytest.mark.parametrize("causal,config", [(False, (128, 2, False)), (True, (128, 2, False)), (True, (64, 3, True))])
def test_sass_has_each_consumers_matmuls_and_register_handoff(causal, config):
    """Each of the two consumer warpgroups holds six 64-row matmuls in the SASS: the first
    tile's QK^T, QK^T and PV in the loop without masks and again in the masked loop, the last
    tile's PV, each 64 x BLOCK_N x 128; a consumer takes 240 registers a thread (USETMAXREG),
    and neither consumer's unmasked loop (the hot one) spills (Triton 3.6 spills nowhere; 3.9 in
    the masked loops); shared memory holds both consumers' queries and `stages` K and V tiles,
    within the SM's 227 KB."""
    block_n, stages, _ = config
    sass, shared = sm90.build("prefill_gluon", causal, config)
    assert re.search(r"USETMAXREG\.TRY_ALLOC\.CTAPOOL \w+, 0xf0\b", sass), "no consumer takes 240 registers"
    shapes = [tuple(map(int, m)) for m in re.findall(r"HGMMA\.(\d+)x(\d+)x(\d+)\.F32\.BF16", sass)]
    assert sum(2 * m * n * k for m, n, k in shapes) == 2 * 6 * (2 * 64 * block_n * 128)
    loops = _loops(sass)
    per_tile = 128 // 16 + block_n // 16  # the HGMMAs of one tile's QK^T (K = 128) and PV (K = block_n)
    hot = [body for body in loops if sum("HGMMA" in t for t in body) == per_tile]
    assert len(hot) == 4, "expected each consumer's two tile loops"
    assert sum(not any(re.search(r"\b(LDL|STL)\b", t) for t in body) for body in hot) >= 2, "the hot loops spill"
    assert 2 * 64 * 128 * 2 + stages * 2 * block_n * 128 * 2 <= shared <= 227 * 1024


def test_refuses_what_it_cannot_take():
    """Asked for by name, the Gluon kernel says why it cannot run; "auto" takes another kernel."""
    q = torch.randn(1, 40, 2, 64, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="head dim 128"):
        prefill(q, q, q, True, kernel="gluon")
    q = torch.randn(1, 40, 2, 128, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="without a window"):
        prefill(q, q, q, True, window=8, kernel="gluon")
    with pytest.raises(ValueError, match="bf16 or fp16"):
        prefill(q.float(), q.float(), q.float(), True, kernel="gluon")
    with pytest.raises(ValueError, match="contiguous"):
        prefill(q.transpose(1, 2).contiguous().transpose(1, 2), q, q, True, kernel="gluon")
    if not HOPPER:
        with pytest.raises(ValueError, match="Hopper"):
            prefill(q, q, q, True, kernel="gluon")
    with pytest.raises(ValueError, match="expected one of auto, gluon, ws, tiles"):
        prefill(q, q, q, True, kernel="flash")


@pytest.mark.gpu
@pytest.mark.skipif(not HOPPER, reason="the Gluon prefill runs on Hopper only")
@pytest.mark.parametrize("config", [None, (64, 3, False), (128, 2, True)])
@pytest.mark.parametrize("B,Sq,Sk,Hq,Hkv,causal,dtype", [
    (2, 1000, 1000, 8, 2, True, torch.bfloat16), (1, 333, 1100, 4, 1, True, torch.float16),
    (3, 515, 515, 16, 4, False, torch.bfloat16), (1, 64, 64, 2, 2, True, torch.bfloat16)])
def test_matches_reference(config, B, Sq, Sk, Hq, Hkv, causal, dtype):
    """Outputs (NaN-poisoned first) and log2-sum-exp against the float32 reference and the
    one-warpgroup kernel, over ragged lengths, queries after a past, GQA to MQA."""
    q, k, v = (torch.randn(B, s, h, 128, device="cuda", dtype=dtype) for s, h in ((Sq, Hq), (Sk, Hkv), (Sk, Hkv)))
    out = torch.full_like(q, float("nan"))
    lse = torch.full((B, Hq, Sq), float("nan"), device="cuda")
    prefill(q, k, v, causal, out=out, lse=lse, config=config, kernel="gluon")
    ref = attention_ref(q, k, v, causal)
    assert not torch.isnan(out).any()
    assert float((out.float() - ref).norm() / ref.norm()) < 1e-2
    lse_ref = torch.empty_like(lse)
    prefill(q, k, v, causal, lse=lse_ref, kernel="tiles")
    assert (lse - lse_ref).abs().max().item() < 1e-2


@pytest.mark.gpu
@pytest.mark.skipif(not HOPPER, reason="the Gluon prefill runs on Hopper only")
@pytest.mark.parametrize("programs", [1, 7, 33, 54, 10 ** 6])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("B,Sq,Sk,Hq,Hkv", [(3, 600, 900, 5, 1), (2, 1024, 1024, 4, 2)])
def test_every_block_once_whatever_the_programs(programs, causal, B, Sq, Sk, Hq, Hkv):
    """However many programs share the blocks (one, a few with a partial last round, a pair
    each, more than pairs), each output row is written once and right: NaN-poisoned outputs
    and log2-sum-exp; an odd number of blocks (3 * 5 * 5: a program's last pair is one block,
    masked stores) and an even one (TMA stores)."""
    q, k, v = (torch.randn(B, s, h, 128, device="cuda", dtype=torch.bfloat16)
               for s, h in ((Sq, Hq), (Sk, Hkv), (Sk, Hkv)))
    out = torch.full_like(q, float("nan"))
    lse = torch.full((B, Hq, Sq), float("nan"), device="cuda")
    from attn_dse.gpu.prefill_gluon import prefill_wgmma
    prefill_wgmma(q, k, v, causal, out=out, lse=lse, programs=programs)
    ref = attention_ref(q, k, v, causal)
    assert not torch.isnan(out).any() and not torch.isnan(lse).any()
    assert float((out.float() - ref).norm() / ref.norm()) < 1e-2
