"""The attention backward kernel (attn_dse/gpu/backward.py): gradients on the CPU through Triton's
interpreter against float32 autograd (tiny ragged shapes, GQA, causal and not, queries fewer
than keys); its sm_90 build (tensor-core path, registers, shared memory); its grid; and on a GPU
(marked `gpu`) the bf16 check grid at production tiles."""
import math
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from attn_dse.gpu.backward import (DEFAULT_CONFIG, VENDOR_SHAPES, attention, backward,  # noqa: E402
                                   forward, reference_grads, shapes, train_flops)

DEV = "cuda" if torch.cuda.is_available() else "cpu"
BOUND = 1e-2  # fp16 operands, fp32 accumulation (measured here: 3e-4)
G = torch.Generator().manual_seed(0)
TINY = ((16, 32, 4, 1), (32, 16, 4, 1))  # dK/dV and dQ tiles of unequal sides: the diagonal's bounds
FWD = (16, 16, 4, 1)


def rnd(*shape):
    # fp16: under the interpreter bf16 arithmetic is wrong (our forward's output too); bf16 is
    # checked on the GPU
    return torch.randn(*shape, generator=G, dtype=torch.float16).to(DEV)


def err(out, ref):
    assert not torch.isnan(out).any(), "an output element was never written"
    return float((out.float() - ref).norm() / ref.norm())


@pytest.mark.parametrize("B,Sq,Sk,Hq,Hkv,D,causal,config", [
    (1, 37, 37, 4, 2, 16, True, TINY), (2, 40, 40, 2, 1, 32, False, TINY), (1, 20, 45, 4, 2, 32, True, TINY),
    (1, 17, 17, 2, 2, 16, False, TINY), (1, 33, 33, 8, 2, 16, True, (TINY[1], TINY[0])),
    (1, 37, 37, 4, 2, 16, True, (TINY[0], None)), (1, 20, 45, 4, 1, 32, False, (TINY[1], None))])  # single pass
def test_gradients_match_float32_autograd(B, Sq, Sk, Hq, Hkv, D, causal, config):
    q, k, v, do = rnd(B, Sq, Hq, D), rnd(B, Sk, Hkv, D), rnd(B, Sk, Hkv, D), rnd(B, Sq, Hq, D)
    o, lse = forward(q, k, v, causal, config=FWD)
    grads = [torch.full_like(t, float("nan")) for t in (q, k, v)]  # poisoned: every element written
    backward(q, k, v, o, lse, do, causal, config, *grads)
    ref = reference_grads(q, k, v, do, causal)
    assert err(o, ref[0]) < BOUND
    for name, got, want in zip(("dq", "dk", "dv"), grads, ref[1:]):
        assert err(got, want) < BOUND, name


def test_autograd_function_and_lse():
    """attention() back-propagates through torch autograd; the forward's lse is the base-2
    log-sum-exp of the scaled scores (causal: row i sees keys 0..i)."""
    B, S, Hq, Hkv, D = 1, 24, 4, 2, 16
    q, k, v, do = rnd(B, S, Hq, D), rnd(B, S, Hkv, D), rnd(B, S, Hkv, D), rnd(B, S, Hq, D)
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    attention(*leaves, True, FWD, TINY).backward(do)
    ref = reference_grads(q, k, v, do, True)
    for leaf, want in zip(leaves, ref[1:]):
        assert err(leaf.grad, want) < BOUND
    _, lse = forward(q, k, v, True, config=FWD)
    s = torch.einsum("bqhd,bkhd->bhqk", q.float(), k.float().repeat_interleave(2, 2)) / D ** 0.5
    s = s.masked_fill(torch.ones(S, S, dtype=torch.bool, device=s.device).triu(1), float("-inf"))
    torch.testing.assert_close(lse, torch.logsumexp(s, -1) / math.log(2.0), rtol=1e-3, atol=1e-3)


def test_sm90_build_uses_warpgroup_mma_within_hopper_limits():
    """The d 128 default tiles, compiled for sm_90 (no GPU needed): HGMMA only, at most a small
    spill (the causal dK/dV kernel: 56 bytes with Triton 3.9, 80 with the device's 3.6), shared memory within the H100/H200's 227 KB per
    block. In a process of its own, without the interpreter."""
    code = ("import json; from attn_dse.gpu.backward import sm90_resources, DEFAULT_CONFIG as C; "
            "print(json.dumps([sm90_resources(k, 128, c, C[128][i]) for k, i in (('dkdv', 0), ('dq', 1)) "
            "for c in (True, False)]))")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    import json
    for res in json.loads(run.stdout.strip().splitlines()[-1]):
        assert res["hgmma"] > 0 and res["hmma"] == 0, res
        assert res["stack"] <= 128 and res["shared"] <= 227 * 1024, res


def test_grid_holds_the_vendor_comparisons_and_counts_flops_by_hand():
    grid = shapes()
    assert 20 <= len(grid) <= 30 and len(set(grid)) == len(grid)
    assert VENDOR_SHAPES <= set(grid) and set(shapes(quick=True)) <= set(grid)
    assert {(2, 8192, 32, 8, 128, True), (1, 16384, 32, 8, 128, False)} <= VENDOR_SHAPES  # the pair
    assert all(B * S == 16384 for B, S, *_ in grid if S != 3000)
    assert {D for *_, D, _ in grid} == set(DEFAULT_CONFIG)
    # forward 2 matmuls + backward 4, 2 FLOPs a multiply-add, over S(S+1)/2 causal pairs
    assert train_flops(2, 8192, 8192, 32, 128, True) == 3 * 4 * 2 * 32 * (8192 * 8193 // 2) * 128


@pytest.mark.gpu
def test_gpu_check_grid(tmp_path):
    """bf16 at the production tiles, poisoned outputs, against float32 autograd: each shape as
    backward(kernel="auto") runs it, and on Hopper the d 128 ones through the Triton kernels too."""
    from attn_dse.gpu.backward import CHECK_SHAPES, _runs_gluon, check
    from attn_dse.gpu.harness import Recorder
    rec = Recorder(tmp_path)
    check(rec)
    again = sum(_runs_gluon(shape[5]) for shape in CHECK_SHAPES)
    assert len(rec.checks) == 4 * len(CHECK_SHAPES) + 3 * again and all(c["ok"] for c in rec.checks)
