"""The Gluon backward (gpu/backward_gluon.py): its sm_90 build checked here without a GPU, its
refusals, and on a Hopper GPU (marked `gpu`) its gradients against float32 autograd."""
import re

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from attn_dse.gpu.backward import backward, forward, reference_grads  # noqa: E402
from tests.gpu import sm90  # noqa: E402

HOPPER = torch.cuda.is_available() and torch.cuda.get_device_capability()[0] == 9


@pytest.fixture(scope="module", params=[False, True], ids=["full", "causal"])
def build(request):
    return sm90.build("backward_gluon", request.param)


def test_each_consumer_holds_five_matmuls_a_block_and_takes_240_registers(build):
    """Per consumer warpgroup, in the masked and the unmasked loop: S^T and dP^T (64 x 64 x 128),
    dV and dK (64 x 128 x 64), and its column half of dQ (64 x 64 x 128, two matmuls over the two
    consumers' keys); once more dQ after the loops (the last block's). A consumer takes 240
    registers (USETMAXREG); shared memory within the SM's 227 KB."""
    sass, shared = build
    assert re.search(r"USETMAXREG\.TRY_ALLOC\.CTAPOOL \w+, 0xf0\b", sass), "no consumer takes 240 registers"
    shapes = [tuple(map(int, m)) for m in re.findall(r"HGMMA\.(\d+)x(\d+)x(\d+)\.F32\.BF16", sass)]
    unit = 2 * 64 * 64 * 128  # one 64 x 64 x 128 matmul's FLOPs
    assert sum(2 * m * n * k for m, n, k in shapes) == 2 * (2 * 5 + 1) * unit
    # 2 consumers x 2 loops x (S^T 8 + dP^T 8 + dV 4 + dK 4 + dQ 8 instructions) + 2 x 8 after the loops
    assert len(shapes) == 2 * (2 * 32 + 8)
    assert 2 * 64 * 128 * 2 * 2 + 2 * 2 * 64 * 128 * 2 + 2 * 64 * 64 * 4 <= shared <= 227 * 1024  # K, V, Q/dO ring, dQ


def test_dq_leaves_by_tma_reductions_from_the_writer(build):
    """No thread issues a global atomic: dQ leaves shared memory by 2-D TMA bulk reductions."""
    sass, _ = build
    assert re.search(r"\bUTMAREDG\.2D\.ADD\b", sass)
    assert not re.search(r"\b(REDG|ATOMG|RED)\.", sass)


def test_refuses_what_it_cannot_take():
    """Asked for by name, the Gluon backward says why it cannot run; a wrong name lists the kernels."""
    def args(D, dtype=torch.bfloat16):
        q = torch.randn(1, 40, 2, D, dtype=dtype)
        return q, q, q, q, torch.zeros(1, 2, 40), q, True
    with pytest.raises(ValueError, match="head dim 128"):
        backward(*args(64), kernel="gluon")
    with pytest.raises(ValueError, match="bf16 or fp16"):
        backward(*args(128, torch.float32), kernel="gluon")
    if not HOPPER:
        with pytest.raises(ValueError, match="Hopper"):
            backward(*args(128), kernel="gluon")
    with pytest.raises(ValueError, match="expected one of auto, gluon, triton"):
        backward(*args(128), kernel="flash")


@pytest.mark.gpu
@pytest.mark.skipif(not HOPPER, reason="the Gluon backward runs on Hopper only")
@pytest.mark.parametrize("B,Sq,Sk,Hq,Hkv,causal,dtype", [
    (2, 1000, 1000, 8, 2, True, torch.bfloat16), (1, 300, 701, 8, 2, True, torch.float16),
    (1, 1100, 1100, 8, 1, False, torch.bfloat16), (1, 64, 64, 2, 2, True, torch.bfloat16),
    (3, 515, 515, 4, 4, False, torch.float16)])
def test_gradients_match_float32_autograd(B, Sq, Sk, Hq, Hkv, causal, dtype):
    """NaN-poisoned gradients against float32 autograd over ragged lengths, queries after a past,
    MQA to MHA, a single block, bf16 and fp16."""
    q, k, v, do = (torch.randn(B, s, h, 128, device="cuda", dtype=dtype)
                   for s, h in ((Sq, Hq), (Sk, Hkv), (Sk, Hkv), (Sq, Hq)))
    o, lse = forward(q, k, v, causal)
    grads = [torch.full_like(t, float("nan")) for t in (q, k, v)]
    backward(q, k, v, o, lse, do, causal, None, *grads, kernel="gluon")
    ref = reference_grads(q, k, v, do, causal)
    for name, got, want in zip(("dq", "dk", "dv"), grads, ref[1:]):
        assert not torch.isnan(got).any(), name
        assert float((got.float() - want).norm() / want.norm()) < 1e-2, name
