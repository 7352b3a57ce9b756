"""Absorbed MLA decode for Hopper in Gluon (Triton's layout-explicit dialect), the same
algorithm as `mla_decode.py` with the work split across the two warpgroups by hand.

Triton's `tl.dot` gives each of 8 warps' two warpgroups half of the 512 output columns but
computes the whole score tile in both (seen in the SASS): a third of the tensor work is wasted.
Here the layouts are stated: scores S [64 heads, 64 tokens] and output O [64 heads, 512] are both
split by columns across the warpgroups (warps_per_cta [4, 2]), so each computes 32 tokens' scores
and 256 latent columns, nothing twice. The row max and sum cross warpgroups (the compiler's
reduction through shared memory); the probabilities go to shared memory, where both warpgroups
read all of them as the left operand of P V.

Shared memory, all of an SM's 227 KB but 2.5 KB: the query (64 x 576 bf16, 72 KB), two stages of
64-token key tiles (2 x 72 KB, loaded by TMA one tile ahead) and P (8 KB).
Tried and dropped (H200, 2026-12-03, docs/device-logs/h200-mla-bf16-overlap-2026-12-03.*):
issuing tile t + 1's score wgmmas before tile t's softmax, so the softmax would run beside
them, was correct but 0.73-0.79x this kernel's speed (B64 x 32k: 1715 us against 1248); issuing
them right behind P V (no gap on the tensor cores) gained nothing (0.97-1.005x). Neither is the
limit, then: at 467 TFLOP/s a tile takes ~2.5 us an SM, and each warpgroup reads the whole query
(72 KB) from shared memory for its 32 tokens' scores (N = 32), ~300 KB of shared-memory reads a
tile, about 1.2 us at 128 B a clock. FlashMLA's seesaw (`mla_decode_seesaw.py`, 2026-12-04) gives
each warpgroup whole tiles in turn and replaced this kernel on Hopper: 1.08-1.17x its speed.

q_nope [B, H, 512], q_pe [B, H, 64], kv [B, L, 576] (bf16), output [B, H, 512] in the latent.
"""
from __future__ import annotations

import torch
import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import (fence_async_shared, mbarrier, tma, warpgroup_mma,
                                                              warpgroup_mma_wait)
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

from attn_dse.gpu.decode import run_splits

# Gluon is experimental and renames things: Triton 3.6 (the device image) has only
# the old names, 3.9 only the new.
_tma_load = tma.async_load if hasattr(tma, "async_load") else tma.async_copy_global_to_shared
_cta_barrier = gl.barrier if hasattr(gl, "barrier") else gl.thread_barrier

BLOCK_H = 64  # one warpgroup's MMA rows
BLOCK_N = 64  # two stages of 64 x 576 keys and the query fill shared memory
FIXED = {"block_h": BLOCK_H, "block_n": BLOCK_N, "num_warps": 8, "num_stages": 2}  # the loop holds two stages


@gluon.jit
def _mla_split(qn_desc, qp_desc, c_desc, kp_desc, Lens, Part, Lse, L, n_heads, n_splits, split_len, qk_scale,
               P_LAYOUT: gl.constexpr, num_warps: gl.constexpr):
    BLOCK_H: gl.constexpr = qn_desc.block_type.shape[0]
    D_LAT: gl.constexpr = qn_desc.block_type.shape[1]
    BLOCK_N: gl.constexpr = c_desc.block_type.shape[0]
    dtype: gl.constexpr = qn_desc.dtype
    s_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 2],
                                                       instr_shape=[16, BLOCK_N // 2, 16])
    o_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 2],
                                                       instr_shape=[16, D_LAT // 2, 16])
    rows_s: gl.constexpr = gl.SliceLayout(1, s_layout)
    rows_o: gl.constexpr = gl.SliceLayout(1, o_layout)

    hb = gl.program_id(0)  # the fastest-varying: a sequence's head blocks run together and share its keys in L2
    b = gl.program_id(1)
    split = gl.program_id(2)
    start = split * split_len
    end = gl.minimum(start + split_len, gl.load(Lens + b))
    n_tiles = gl.cdiv(end - start, BLOCK_N)  # <= 0 for a split past the end of a short sequence

    qn_smem = gl.allocate_shared_memory(dtype, qn_desc.block_type.shape, qn_desc.layout)
    qp_smem = gl.allocate_shared_memory(dtype, qp_desc.block_type.shape, qp_desc.layout)
    c_smem = gl.allocate_shared_memory(dtype, [2] + c_desc.block_type.shape, c_desc.layout)
    kp_smem = gl.allocate_shared_memory(dtype, [2] + kp_desc.block_type.shape, kp_desc.layout)
    p_smem = gl.allocate_shared_memory(dtype, [BLOCK_H, BLOCK_N], P_LAYOUT)
    bars = gl.allocate_shared_memory(gl.int64, [3, 1], mbarrier.MBarrierLayout())  # stage 0, stage 1, query
    for i in gl.static_range(3):
        mbarrier.init(bars.index(i), count=1)
    fence_async_shared()

    row0 = b * n_heads + hb * BLOCK_H  # rows past the last head are masked at the store
    mbarrier.expect(bars.index(2), qn_desc.block_type.nbytes + qp_desc.block_type.nbytes)
    _tma_load(qn_desc, [row0, 0], bars.index(2), qn_smem)
    _tma_load(qp_desc, [row0, 0], bars.index(2), qp_smem)
    tile_bytes: gl.constexpr = c_desc.block_type.nbytes + kp_desc.block_type.nbytes
    for i in gl.static_range(2):
        _load_tile(c_desc, kp_desc, b * L + start + i * BLOCK_N, bars.index(i), c_smem.index(i), kp_smem.index(i),
                   tile_bytes, i < n_tiles)

    m_i = gl.full([BLOCK_H], float("-inf"), gl.float32, layout=rows_s)
    l_i = gl.zeros([BLOCK_H], gl.float32, layout=rows_s)
    acc = gl.zeros([BLOCK_H, D_LAT], gl.float32, layout=o_layout)
    s_init = gl.zeros([BLOCK_H, BLOCK_N], gl.float32, layout=s_layout)
    mbarrier.wait(bars.index(2), 0)
    for t in range(n_tiles):
        st = t % 2
        mbarrier.wait(bars.index(st), (t // 2) & 1)
        c_t = c_smem.index(st)
        kp_t = kp_smem.index(st)
        s = warpgroup_mma(qn_smem, c_t.permute((1, 0)), s_init, use_acc=False, is_async=True)
        s = warpgroup_mma(qp_smem, kp_t.permute((1, 0)), s, is_async=True)
        s = warpgroup_mma_wait(0, deps=[s])
        # Tokens past `end` (the next split's or sequence's, or TMA's zero fill) are masked.
        cols = start + t * BLOCK_N + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, s_layout))
        s = gl.where((cols < end)[None, :], s * qk_scale, float("-inf"))
        m_new = gl.maximum(m_i, gl.max(s, axis=1))
        p = gl.exp2(s - m_new[:, None])
        alpha = gl.exp2(m_i - m_new)
        l_i = l_i * alpha + gl.sum(p, axis=1)
        m_i = m_new
        acc = acc * gl.convert_layout(alpha, rows_o)[:, None]
        p_smem.store(p.to(dtype))
        fence_async_shared()
        _cta_barrier()  # every warpgroup's half of P is in shared memory
        acc = warpgroup_mma(p_smem, c_t, acc, is_async=True)
        acc = warpgroup_mma_wait(0, deps=[acc])
        _cta_barrier()  # both warpgroups are done reading this stage and P
        _load_tile(c_desc, kp_desc, b * L + start + (t + 2) * BLOCK_N, bars.index(st), c_t, kp_t, tile_bytes,
                   t + 2 < n_tiles)
    for i in gl.static_range(3):
        mbarrier.invalidate(bars.index(i))

    seen = l_i > 0
    l_safe = gl.where(seen, l_i, 1.0)
    out = acc / gl.convert_layout(l_safe, rows_o)[:, None]
    heads_o = hb * BLOCK_H + gl.arange(0, BLOCK_H, layout=rows_o)
    lat = gl.arange(0, D_LAT, layout=gl.SliceLayout(0, o_layout))
    gl.store(Part + ((b * n_heads + heads_o) * n_splits + split)[:, None] * D_LAT + lat[None, :],
             out.to(Part.dtype.element_ty), mask=(heads_o < n_heads)[:, None])
    heads_s = hb * BLOCK_H + gl.arange(0, BLOCK_H, layout=rows_s)
    gl.store(Lse + (b * n_heads + heads_s) * n_splits + split, gl.where(seen, m_i + gl.log2(l_safe), float("-inf")),
             mask=heads_s < n_heads)


@gluon.jit
def _load_tile(c_desc, kp_desc, row, bar, c_dst, kp_dst, nbytes: gl.constexpr, pred):
    mbarrier.expect(bar, nbytes, pred=pred)
    _tma_load(c_desc, [row, 0], bar, c_dst, pred=pred)
    _tma_load(kp_desc, [row, 0], bar, kp_dst, pred=pred)


def _smem_layout(block: list) -> gl.NVMMASharedLayout:
    """The swizzled shared-memory layout of a bf16 tile, as TMA writes it and the MMAs read it."""
    return gl.NVMMASharedLayout.get_default_for(block, gl.bfloat16)


def _desc(base: torch.Tensor, rows: int, cols: int, row_stride: int, block: list) -> TensorDescriptor:
    return TensorDescriptor(base, [rows, cols], [row_stride, 1], block, _smem_layout(block))


def descriptors(q_nope: torch.Tensor, q_pe: torch.Tensor, kv: torch.Tensor, block_n: int, kernel: str) -> tuple:
    """The TMA descriptors of a Gluon MLA kernel: the query's latent and RoPE parts in blocks of
    64 heads, the cache's latent and RoPE columns in blocks of block_n tokens."""
    B, H, D = q_nope.shape
    R = q_pe.shape[-1]
    L = kv.shape[1]
    if kv.dtype != torch.bfloat16:
        raise ValueError(f"the {kernel} MLA kernel takes a bf16 cache, not {kv.dtype}")
    kv2 = kv.reshape(B * L, D + R)
    return (_desc(q_nope.reshape(B * H, D), B * H, D, D, [BLOCK_H, D]),
            _desc(q_pe.reshape(B * H, R), B * H, R, R, [BLOCK_H, R]),
            _desc(kv2, B * L, D, D + R, [block_n, D]), _desc(kv2[:, D:], B * L, R, D + R, [block_n, R]))


def sm90_signature(block_n: int) -> dict:
    """The argument types of a Gluon MLA kernel, for a build without a GPU."""
    from attn_dse.gpu.harness import tensordesc

    def desc(rows, cols):
        return tensordesc("bf16", [rows, cols], _smem_layout([rows, cols]))

    D, R = 512, 64
    return {"qn_desc": desc(BLOCK_H, D), "qp_desc": desc(BLOCK_H, R), "c_desc": desc(block_n, D),
            "kp_desc": desc(block_n, R), "Lens": "*i32", "Part": "*fp32", "Lse": "*fp32", "L": "i32", "n_heads": "i32",
            "n_splits": "i32", "split_len": "i32", "qk_scale": "fp32", "P_LAYOUT": "constexpr"}


def mla_decode_wgmma(q_nope: torch.Tensor, q_pe: torch.Tensor, kv: torch.Tensor, seq_lens: torch.Tensor,
                     n_splits: int, sm_scale: float, out: torch.Tensor | None = None) -> torch.Tensor:
    B, H, D = q_nope.shape
    L = kv.shape[1]
    descs = descriptors(q_nope, q_pe, kv, BLOCK_N, "wgmma")
    split_len = triton.cdiv(triton.cdiv(L, n_splits), BLOCK_N) * BLOCK_N
    p_layout = _smem_layout([BLOCK_H, BLOCK_N])
    grid = (triton.cdiv(H, BLOCK_H), B, n_splits)
    return run_splits(lambda part, lse: _mla_split[grid](
        *descs, seq_lens, part, lse, L, H, n_splits, split_len, sm_scale * 1.4426950408889634, P_LAYOUT=p_layout,
        num_warps=FIXED["num_warps"]), (B, 1, H, D), n_splits, kv, out)[:, 0]


def compile_sm90() -> tuple[str, int]:
    """Compile the split kernel for sm_90 without a GPU (harness.sm90_build): its SASS and the
    shared memory it asks for, to inspect its MMAs, registers and spills. Run with
    TRITON_INTERPRET unset: the interpreter replaces Triton's library functions (gl.max)."""
    from triton.experimental.gluon._runtime import GluonASTSource

    from attn_dse.gpu.harness import sm90_build

    sig = {**sm90_signature(BLOCK_N), "num_warps": "constexpr"}
    src = GluonASTSource(fn=_mla_split, signature=sig, constexprs={
        "P_LAYOUT": _smem_layout([BLOCK_H, BLOCK_N]),
        "num_warps": FIXED["num_warps"]})
    built = sm90_build(src, FIXED["num_warps"])
    return built["sass"], built["shared"]

