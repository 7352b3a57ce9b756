"""Kernel correctness against the float32 references: on the CPU through Triton's interpreter
(small shapes, ragged lengths), and on a GPU (marked `gpu`) over the measurement script's grid."""
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from attn_dse.gpu.block_sparse import (block_sparse_decode, block_sparse_prefill,  # noqa: E402
                                                    causal_topk)
from attn_dse.gpu.decode import decode  # noqa: E402
from attn_dse.gpu.mla_decode import mla_decode  # noqa: E402
from attn_dse.gpu.prefill import prefill  # noqa: E402
from attn_dse.gpu.reference import (attention_ref, block_sparse_ref,  # noqa: E402
                                                 mla_decode_ref)

DEV = "cuda" if torch.cuda.is_available() else "cpu"
BOUND = 1e-2  # fp16 operands, fp32 accumulation
G = torch.Generator().manual_seed(0)


def rnd(*shape):
    return torch.randn(*shape, generator=G, dtype=torch.float16).to(DEV)


def err(out, ref):
    assert not torch.isnan(out).any(), "an output element was never written"
    return float((out.float() - ref).norm() / ref.norm())


@pytest.mark.parametrize("B,S,Sk,Hq,Hkv,D,causal,window", [
    (1, 37, 37, 4, 2, 64, True, None), (2, 40, 40, 2, 1, 64, False, None), (1, 50, 50, 2, 2, 64, True, 7),
    (1, 20, 45, 4, 1, 64, True, None), (1, 33, 33, 2, 2, 128, False, None)])
def test_prefill(B, S, Sk, Hq, Hkv, D, causal, window):
    q, k, v = rnd(B, S, Hq, D), rnd(B, Sk, Hkv, D), rnd(B, Sk, Hkv, D)
    out = torch.full_like(q, float("nan"))
    prefill(q, k, v, causal, window, config=(16, 16, 4, 1), out=out)
    assert err(out, attention_ref(q, k, v, causal, window)) < BOUND


@pytest.mark.parametrize("B,S,Sk,Hq,Hkv,D,causal", [
    (2, 70, 70, 4, 2, 128, True), (1, 40, 100, 2, 1, 128, True), (2, 64, 64, 2, 2, 128, False),
    (1, 50, 90, 2, 2, 256, False)])
def test_prefill_warp_specialized(B, S, Sk, Hq, Hkv, D, causal):
    """Batches whose last query block is partial (its store is masked), queries after a past, GQA;
    the log2-sum-exp agrees with _prefill_fwd's. Small tiles in the interpreter, its own on a GPU."""
    q, k, v = rnd(B, S, Hq, D), rnd(B, Sk, Hkv, D), rnd(B, Sk, Hkv, D)
    out = torch.full_like(q, float("nan"))
    lse, lse_tiles = (torch.full((B, Hq, S), float("nan"), device=DEV) for _ in range(2))
    prefill(q, k, v, causal, out=out, lse=lse, kernel="ws", config=(64, 32, 4, 2) if DEV == "cpu" else None)
    prefill(q, k, v, causal, lse=lse_tiles, kernel="tiles", config=(16, 16, 4, 1))
    assert err(out, attention_ref(q, k, v, causal)) < BOUND
    assert float((lse - lse_tiles).abs().max()) < 1e-3


@pytest.mark.parametrize("B,Sq,Hq,Hkv,L,lens,splits", [
    (2, 1, 8, 2, 100, [100, 37], 3), (1, 2, 4, 4, 70, [70], 2), (3, 3, 8, 1, 50, [50, 20, 33], 1),
    (2, 1, 4, 2, 600, [600, 90], 40)])  # 40 splits: the combine walks them 16 at a time; most of
                                        # the second sequence's splits are empty
def test_split_kv_decode(B, Sq, Hq, Hkv, L, lens, splits):
    q, k, v = rnd(B, Sq, Hq, 64), rnd(B, L, Hkv, 64), rnd(B, L, Hkv, 64)
    sl = torch.tensor(lens, dtype=torch.int32, device=DEV)
    out = torch.full_like(q, float("nan"))
    decode(q, k, v, sl, n_splits=splits, block_n=16, out=out)
    assert err(out, attention_ref(q, k, v, True, seq_lens=sl)) < BOUND


@pytest.mark.parametrize("layout,splits", [("tokens", 3), ("heads", 3), ("tokens", 1), ("heads", 1)])
def test_mla_decode(layout, splits):
    """Split partials merged by the combine kernel, or (one split) written straight to the output."""
    qn, qp, kv = rnd(2, 20, 64), rnd(2, 20, 16), rnd(2, 90, 80)
    sl = torch.tensor([90, 41], dtype=torch.int32, device=DEV)
    out = mla_decode(qn, qp, kv, sl, n_splits=splits, block_h=16, block_n=16, sm_scale=0.1, layout=layout)
    assert err(out, mla_decode_ref(qn, qp, kv, sl, 64, 0.1)) < BOUND


@pytest.mark.parametrize("layout", ["wgmma", "seesaw"])
def test_mla_gluon_layouts_refuse_other_devices(layout):
    if DEV == "cuda" and torch.cuda.get_device_capability() == (9, 0):
        pytest.skip("this is a Hopper GPU: the kernel runs (the gpu check grid covers it)")
    qn, qp, kv = rnd(1, 64, 64), rnd(1, 64, 16), rnd(1, 90, 80)
    with pytest.raises(ValueError, match="Hopper"):
        mla_decode(qn, qp, kv, torch.tensor([90], dtype=torch.int32, device=DEV), layout=layout)


def test_mla_wgmma_sass_has_each_tiles_tensor_work_once():
    """Compiled for sm_90 here, without a GPU: per 64-token tile each of the two warpgroups
    issues MMAs totalling exactly its half of the tile's FLOPs (64 heads x 32 tokens x 576 for the
    scores, 64 heads x 256 latent x 64 tokens for P V): Triton's tl.dot computed the score tile in
    both. No spills, and shared memory within the H100's 227 KB per block. In a process of its
    own: under TRITON_INTERPRET (set here without a GPU) Gluon kernels do not compile."""
    import json
    import os
    import re
    import subprocess
    import sys

    from attn_dse.gpu.mla_decode_wgmma import BLOCK_H, BLOCK_N

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    code = ("import json, sys; from attn_dse.gpu.mla_decode_wgmma import compile_sm90; "
            "sass, shared = compile_sm90(); print(json.dumps([sass, shared]))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    sass, shared = json.loads(run.stdout.strip().splitlines()[-1])
    shapes = [tuple(map(int, m)) for m in re.findall(r"HGMMA\.(\d+)x(\d+)x(\d+)\.F32\.BF16", sass)]
    issued = sum(2 * m * n * k for m, n, k in shapes)  # the loop body appears once in the SASS
    D, R = 512, 64
    assert issued == 2 * BLOCK_H * (BLOCK_N // 2) * (D + R) + 2 * BLOCK_H * (D // 2) * BLOCK_N
    assert not re.search(r"\b(LDL|STL)\b", sass), "the kernel spills registers"
    assert shared <= 227 * 1024


def test_mla_seesaw_sass_has_each_warpgroups_tensor_work_once():
    """Compiled for sm_90 here, without a GPU: per pair of 32-token tiles each warpgroup issues
    the scores of its own tile (64 heads x 32 tokens x 576) and P V of both tiles for its half of
    the latent (2 x 64 heads x 256 x 32 tokens), the loop body of each once in the SASS; no
    spills (each warpgroup holds 240 registers a thread), shared memory within 227 KB."""
    import re

    from tests.gpu.sm90 import build
    from attn_dse.gpu.mla_decode_seesaw import BLOCK_H, BLOCK_N
    sass, shared = build("mla_decode_seesaw")
    shapes = [tuple(map(int, m)) for m in re.findall(r"HGMMA\.(\d+)x(\d+)x(\d+)\.F32\.BF16", sass)]
    issued = sum(2 * m * n * k for m, n, k in shapes)
    D, R = 512, 64
    per_warpgroup = 2 * BLOCK_H * BLOCK_N * (D + R) + 2 * (2 * BLOCK_H * (D // 2) * BLOCK_N)
    assert issued == 2 * per_warpgroup
    assert not re.search(r"\b(LDL|STL)\b", sass), "the kernel spills registers"
    assert shared <= 227 * 1024


@pytest.mark.parametrize("D,causal", [(128, False), (128, True), (256, True)])
def test_prefill_ws_sass_is_warp_specialized(D, causal):
    """Compiled for sm_90 here, without a GPU: registers handed between the producer and the
    consumer warpgroups (USETMAXREG), and the consumers' MMAs, each partition's loop body once
    in the SASS, total one key tile's FLOPs for the block's rows: 2 x BLOCK_M x BLOCK_N x D for
    QK^T and as many for PV. No spills, shared memory within 227 KB. In a process of its own
    (under TRITON_INTERPRET kernels are not compiled)."""
    import json
    import os
    import re
    import subprocess
    import sys

    from attn_dse.gpu.prefill import WS_CONFIG

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    code = ("import json, sys; from attn_dse.gpu.prefill import ws_sm90_build; "
            f"b = ws_sm90_build({D}, {causal}); print(json.dumps([b['sass'], b['shared'], b['stack']]))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    sass, shared, stack = json.loads(run.stdout.strip().splitlines()[-1])
    assert re.search(r"\bUSETMAXREG\b", sass), "not warp-specialized"
    shapes = [tuple(map(int, m)) for m in re.findall(r"HGMMA\.(\d+)x(\d+)x(\d+)\.F32\.BF16", sass)]
    block_m, block_n = WS_CONFIG[D][:2]
    assert sum(2 * m * n * k for m, n, k in shapes) == 2 * (2 * block_m * block_n * D)
    assert stack == 0 and not re.search(r"\b(LDL|STL)\b", sass), "the kernel spills registers"
    assert shared <= 227 * 1024


@pytest.mark.parametrize("heads,fraction", [(2, None), (1, None), (4, 0.5)])
def test_block_sparse_prefill_and_decode(heads, fraction):
    """Query heads of a group packed into one tile (heads > 1) share the selection; with a
    fraction the selections have different lengths, padded with -1."""
    B, S, Hq, Hkv, D, blk = 2, 70, 8, 2, 64, 16
    q, k, v = rnd(B, S, Hq, D), rnd(B, S, Hkv, D), rnd(B, S, Hkv, D)
    idx = causal_topk(B, Hkv, S, blk, 3, torch.Generator().manual_seed(1), DEV, fraction=fraction)
    out = torch.full_like(q, float("nan"))
    block_sparse_prefill(q, k, v, idx, block=blk, heads=heads, out=out)
    assert err(out, block_sparse_ref(q, k, v, idx.long(), blk, True)) < BOUND
    qd, idx_d = rnd(B, 1, Hq, D), idx[:, :, -1].contiguous()
    sl = torch.tensor([S, S], dtype=torch.int32, device=DEV)
    out = block_sparse_decode(qd, k, v, sl, idx_d, block=blk, n_splits=2)
    assert err(out, block_sparse_ref(qd, k, v, idx_d[:, :, None].long(), blk, True)) < BOUND


@pytest.mark.gpu
def test_gpu_check_grid(tmp_path):
    """The measurement script's correctness grid (bf16, production tile sizes, poisoned outputs)."""
    from attn_dse.gpu.harness import Recorder
    from attn_dse.gpu.measure import family_modules
    rec = Recorder(tmp_path)
    modules = family_modules()
    for module in modules.values():
        module.check(rec, torch.Generator().manual_seed(0))
    assert rec.checks and all(c["ok"] for c in rec.checks)
    assert {c["kernel"].split()[0] for c in rec.checks} == set(modules)  # every family checked


def test_every_gpu_family_benches_a_cost_family():
    """Each GPU family file names a family the cost model registers (their rows calibrate it);
    a family the model offers beside another (a second kernel for the same shapes) names the
    GPU file whose bench times it."""
    import re
    from pathlib import Path

    import attn_dse.gpu
    from attn_dse.cost.family import get_family, tiled_families
    from attn_dse.gpu.measure import family_modules
    modules = family_modules()
    assert set(modules) <= set(tiled_families())
    for name, module in modules.items():
        assert callable(module.check) and callable(module.bench), name
    offered = set(tiled_families()) - set(modules)
    assert offered == {"decode_regs", "decode_widen", "mla_decode_widen", "mla_decode_smem", "mla_decode_smem_pair",
                       "mla_decode_seesaw", "mla_decode_wgmma", "mla_decode_ws", "prefill_ws", "prefill_gluon"}
    gpu_dir = Path(attn_dse.gpu.__file__).parent
    for name in offered:
        files = re.findall(r"gpu/(\w+\.py)", " ".join(type(get_family(name)).__doc__.split()))
        assert files and all((gpu_dir / f).is_file() for f in files), name


def test_recorded_flops_are_the_models_exact_count():
    """A row's FLOPs come from the cost model's workload: 4*B*H*pairs*d for causal prefill."""
    from attn_dse.gpu.harness import model_flops
    row = dict(family="prefill", batch=2, seq=1000, context=1000, n_heads=8, n_kv_heads=2, head_dim=128,
               causal=True, window="", dtype="bf16", config="default")
    assert model_flops(row) == 4 * 2 * 8 * (1000 * 1001 / 2) * 128
    row = dict(row, family="decode", seq=1, context=4096, causal=True, n_split=8)
    assert model_flops(row) == 4 * 2 * 8 * 4097 * 128


def test_prefill_warp_specialized_refuses_what_it_cannot_take():
    """Asked for by name, the warp-specialized kernel says why it cannot run; "auto" falls back."""
    q, k, v = rnd(1, 40, 2, 64), rnd(1, 40, 2, 64), rnd(1, 40, 2, 64)
    with pytest.raises(ValueError, match="head dims"):
        prefill(q, k, v, True, kernel="ws")
    q, k, v = rnd(1, 40, 2, 128), rnd(1, 40, 2, 128), rnd(1, 40, 2, 128)
    with pytest.raises(ValueError, match="without a window"):
        prefill(q, k, v, True, window=8, kernel="ws")
    with pytest.raises(ValueError, match="contiguous"):
        prefill(q.transpose(1, 2).contiguous().transpose(1, 2), k, v, True, kernel="ws")
    out = torch.full_like(q, float("nan"))
    prefill(q, k, v, True, window=8, out=out, config=(16, 16, 4, 1))  # auto with a window: the other kernel
    assert err(out, attention_ref(q, k, v, True, 8)) < BOUND
