"""Absorbed MLA decode for Hopper in Gluon with FlashMLA's seesaw: the two warpgroups take the
key tiles in turn, so each computes whole score tiles and its softmax runs while the other's
matmuls keep the tensor cores busy.

`mla_decode_wgmma.py` splits every tile's scores across the warpgroups, so both read the whole
72 KB query from shared memory for half a tile, and both wait at each tile's softmax. Here the
32-token key tiles come in pairs: warpgroup 0 scores the even tile (64 heads x 32 tokens,
K = 576) and warpgroup 1 the odd one, and each owns half of the output's 512 latent columns.
Per pair:

    WG0: S0 = Q K0^T; m0 = max(m, rowmax S0); P0 = exp(S0 - m0) -> shared; O_L = O_L a0 + P0 C0_L
    WG1: S1 = Q K1^T (beside WG0's softmax); waits for m0, P0; O_R = O_R a0 + P0 C0_R issued,
         then beside it m1 = max(m0, rowmax S1), P1 = exp(S1 - m1) -> shared; O_R = O_R a1 + P1 C1_R
    WG0: waits for m1, P1; O_L = O_L a1 + P1 C1_L

with a0 = exp(m - m0), a1 = exp(m0 - m1). Both halves follow the same running max; each
warpgroup sums its own tiles' probabilities, and the two sums meet at the end. A tile's P goes
to shared memory over the tile's RoPE keys, which only its own scores read. The compiler puts a
warpgroup barrier before each mbarrier arrive (one thread arrives), so a warpgroup's stores are
in before the other is told.

Shared memory: the query (72 KB), four 32-token key tiles (4 x 36 KB: this pair and the next; a
producer refills a pair's slots by TMA once both warpgroups released them), the maxima and sums:
217 KB. Measured on an H200 (docs/MEASUREMENTS.md, "MLA bf16 decode: FlashMLA's seesaw"):
1.08-1.17x the kernel it replaced, 465-519 TFLOP/s at 128 heads where compute-bound.

q_nope [B, H, 512], q_pe [B, H, 64], kv [B, L, 576] (bf16), output [B, H, 512] in the latent.
"""
from __future__ import annotations

import torch
import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import (fence_async_shared, mbarrier, tma, warpgroup_mma,
                                                              warpgroup_mma_wait)

from attn_dse.gpu.decode import run_splits
from attn_dse.gpu.mla_decode_wgmma import BLOCK_H, _smem_layout, descriptors, sm90_signature

# Gluon is experimental and renames things: Triton 3.6 (the device image) has only the old names
_tma_load = tma.async_load if hasattr(tma, "async_load") else tma.async_copy_global_to_shared
_wg_barrier = gl.barrier if hasattr(gl, "barrier") else gl.thread_barrier

# 12 warps: the producer (the default partition: 4 warps, one thread issues the loads) and the two
# warpgroups; they launch with 168 registers a thread, the warpgroups take 240 and the producer
# keeps what is left (24)
NUM_WARPS, MAXNREG = 4, 168
WG_REGS = gl.constexpr(240)
BLOCK_N = 32  # a warpgroup's score tile: 64 heads x 32 tokens; pairs of tiles two deep
SLOTS = 4  # key tiles in shared memory: this pair and the next
FIXED = {"block_h": BLOCK_H, "block_n": BLOCK_N, "num_warps": 8, "num_stages": SLOTS // 2}


@gluon.jit
def _load(qn_desc, qp_desc, c_desc, kp_desc, qn_smem, qp_smem, c_smem, kp_smem, bars, row0, kv_row0, n_pairs):
    """The producer: the query once, then tile t into slot t % SLOTS once both warpgroups
    released the slot's previous tile."""
    q_ready, k_ready, k_empty, p_ready, done = bars
    BLOCK_N_: gl.constexpr = c_desc.block_type.shape[0]
    SLOTS: gl.constexpr = c_smem.type.shape[0]
    mbarrier.expect(q_ready.index(0), qn_desc.block_type.nbytes + qp_desc.block_type.nbytes)
    _tma_load(qn_desc, [row0, 0], q_ready.index(0), qn_smem)
    _tma_load(qp_desc, [row0, 0], q_ready.index(0), qp_smem)
    for t in range(2 * n_pairs):
        st = t % SLOTS
        mbarrier.wait(k_empty.index(st // 2), ((t // SLOTS) & 1) ^ 1)  # a fresh barrier passes phase 1
        mbarrier.expect(k_ready.index(st), c_desc.block_type.nbytes + kp_desc.block_type.nbytes)
        _tma_load(c_desc, [kv_row0 + t * BLOCK_N_, 0], k_ready.index(st), c_smem.index(st))
        _tma_load(kp_desc, [kv_row0 + t * BLOCK_N_, 0], k_ready.index(st), kp_smem.index(st))


@gluon.jit
def _scores(qn_smem, qp_smem, c_t, kp_t, zero_s, first_col, end, qk_scale):
    """One key tile's scaled scores [heads, tokens], tokens from `end` on at -inf."""
    s = warpgroup_mma(qn_smem, c_t.permute((1, 0)), zero_s, use_acc=False, is_async=True)
    s = warpgroup_mma(qp_smem, kp_t.permute((1, 0)), s, is_async=True)
    s = warpgroup_mma_wait(0, deps=[s])
    cols = first_col + gl.arange(0, zero_s.shape[1], layout=gl.SliceLayout(0, zero_s.type.layout))
    return gl.where((cols < end)[None, :], s * qk_scale, float("-inf"))


@gluon.jit
def _share(p, m_new, p_t, m_buf, ready):
    """A tile's probabilities (over its RoPE keys, read by its scores only, which are done) and
    its running max, for the other warpgroup."""
    p_t.store(p.to(p_t.dtype))
    m_buf.store(m_new)
    fence_async_shared()
    mbarrier.arrive(ready, count=1)  # one thread, after the partition's barrier the compiler puts first


@gluon.jit
def _warpgroup(qn_smem, qp_smem, c_smem, kp_smem, m_smem, l_smem, bars, Lens, Part, Lse, n_heads, n_splits,
               split_len, qk_scale, HALF: gl.constexpr, P_LAYOUT: gl.constexpr):
    """Warpgroup HALF: the key tiles 2j + HALF and the output's latent columns HALF * 256 ..."""
    q_ready, k_ready, k_empty, p_ready, done = bars
    hb, b, split, start, end, n_pairs = _program(Lens, split_len, c_smem.type.shape[1])
    BLOCK_H_: gl.constexpr = qn_smem.type.shape[0]
    D_LAT: gl.constexpr = qn_smem.type.shape[1]
    BLOCK_N_: gl.constexpr = c_smem.type.shape[1]
    SLOTS: gl.constexpr = c_smem.type.shape[0]
    D_HALF: gl.constexpr = D_LAT // 2
    dtype: gl.constexpr = qn_smem.dtype
    s_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                       instr_shape=[16, BLOCK_N_, 16])
    o_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                       instr_shape=[16, D_HALF, 16])
    p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
    rows_s: gl.constexpr = gl.SliceLayout(1, s_layout)
    rows_o: gl.constexpr = gl.SliceLayout(1, o_layout)

    m_i = gl.full([BLOCK_H_], float("-inf"), gl.float32, layout=rows_s)  # the running max both halves share
    l_i = gl.zeros([BLOCK_H_], gl.float32, layout=rows_s)  # this warpgroup's tiles' share of the row sums
    acc = gl.zeros([BLOCK_H_, D_HALF], gl.float32, layout=o_layout)
    zero_s = gl.zeros([BLOCK_H_, BLOCK_N_], gl.float32, layout=s_layout)
    mbarrier.wait(q_ready.index(0), 0)
    for j in range(n_pairs):
        e = (2 * j) % SLOTS  # the pair's slots: e (the even tile), e + 1 (the odd one)
        phase = ((2 * j) // SLOTS) & 1
        c0 = c_smem.index(e)
        c1 = c_smem.index(e + 1)
        p0 = kp_smem.index(e)._reinterpret(dtype, [BLOCK_H_, BLOCK_N_], P_LAYOUT)
        p1 = kp_smem.index(e + 1)._reinterpret(dtype, [BLOCK_H_, BLOCK_N_], P_LAYOUT)
        if HALF == 0:
            mbarrier.wait(k_ready.index(e), phase)
            s = _scores(qn_smem, qp_smem, c0, kp_smem.index(e), zero_s, start + 2 * j * BLOCK_N_, end, qk_scale)
            m_new = gl.maximum(m_i, gl.max(s, axis=1))
            p = gl.exp2(s - m_new[:, None])
            alpha = gl.exp2(m_i - m_new)
            l_i = l_i * alpha + gl.sum(p, axis=1)
            _share(p, m_new, p0, m_smem.index(0), p_ready.index(0))
            acc = acc * gl.convert_layout(alpha, rows_o)[:, None]
            acc = warpgroup_mma(gl.convert_layout(p.to(dtype), p_layout), c0.slice(0, D_HALF, dim=1), acc,
                                is_async=True)
            mbarrier.wait(p_ready.index(1), j & 1)  # the odd tile's max and probabilities
            m_odd = m_smem.index(1).load(rows_s)
            alpha = gl.exp2(m_new - m_odd)
            l_i = l_i * alpha
            acc = warpgroup_mma_wait(0, deps=[acc])
            acc = acc * gl.convert_layout(alpha, rows_o)[:, None]
            acc = warpgroup_mma(p1, c1.slice(0, D_HALF, dim=1), acc, is_async=True)
            m_i = m_odd
        else:
            mbarrier.wait(k_ready.index(e + 1), phase)
            s = _scores(qn_smem, qp_smem, c1, kp_smem.index(e + 1), zero_s, start + (2 * j + 1) * BLOCK_N_, end,
                        qk_scale)
            mbarrier.wait(p_ready.index(0), j & 1)  # the even tile's max and probabilities
            m_even = m_smem.index(0).load(rows_s)
            alpha_even = gl.exp2(m_i - m_even)
            acc = acc * gl.convert_layout(alpha_even, rows_o)[:, None]
            acc = warpgroup_mma(p0, c0.slice(D_HALF, D_HALF, dim=1), acc, is_async=True)  # beside this softmax
            m_new = gl.maximum(m_even, gl.max(s, axis=1))
            p = gl.exp2(s - m_new[:, None])
            _share(p, m_new, p1, m_smem.index(1), p_ready.index(1))
            alpha = gl.exp2(m_even - m_new)
            l_i = l_i * alpha_even * alpha + gl.sum(p, axis=1)
            p_op = gl.convert_layout(p.to(dtype), p_layout)
            acc = warpgroup_mma_wait(0, deps=[acc])
            acc = acc * gl.convert_layout(alpha, rows_o)[:, None]
            acc = warpgroup_mma(p_op, c1.slice(D_HALF, D_HALF, dim=1), acc, is_async=True)
            m_i = m_new
        acc = warpgroup_mma_wait(0, deps=[acc])
        mbarrier.arrive(k_empty.index(e // 2), count=1)  # the pair's two slots

    # the row sums meet: each warpgroup's share, both at the same final max
    l_smem.index(HALF).store(l_i)
    _wg_barrier()
    mbarrier.arrive(done.index(0), count=1)
    mbarrier.wait(done.index(0), 0)
    l_i = l_i + l_smem.index(1 - HALF).load(rows_s)
    seen = l_i > 0
    l_safe = gl.where(seen, l_i, 1.0)
    out = acc / gl.convert_layout(l_safe, rows_o)[:, None]
    heads_o = hb * BLOCK_H_ + gl.arange(0, BLOCK_H_, layout=rows_o)
    lat = HALF * D_HALF + gl.arange(0, D_HALF, layout=gl.SliceLayout(0, o_layout))
    gl.store(Part + ((b * n_heads + heads_o) * n_splits + split)[:, None] * D_LAT + lat[None, :],
             out.to(Part.dtype.element_ty), mask=(heads_o < n_heads)[:, None])
    if HALF == 0:
        heads_s = hb * BLOCK_H_ + gl.arange(0, BLOCK_H_, layout=rows_s)
        gl.store(Lse + (b * n_heads + heads_s) * n_splits + split,
                 gl.where(seen, m_i + gl.log2(l_safe), float("-inf")), mask=heads_s < n_heads)


@gluon.jit
def _program(Lens, split_len, BLOCK_N_: gl.constexpr):
    """This program's head block, sequence, split, its keys [start, end) and their pairs of
    tiles: an odd count's last tile is past `end`, all masked (TMA fills rows past the cache
    with zeros); no pair for a split past the end of a short sequence."""
    hb = gl.program_id(0)  # the fastest-varying: a sequence's head blocks run together and share its keys in L2
    b = gl.program_id(1)
    split = gl.program_id(2)
    start = split * split_len
    end = gl.minimum(start + split_len, gl.load(Lens + b))
    return hb, b, split, start, end, gl.maximum(gl.cdiv(end - start, 2 * BLOCK_N_), 0)


@gluon.jit
def _mla_seesaw(qn_desc, qp_desc, c_desc, kp_desc, Lens, Part, Lse, L, n_heads, n_splits, split_len, qk_scale,
                P_LAYOUT: gl.constexpr, SLOTS: gl.constexpr):
    BLOCK_N_: gl.constexpr = c_desc.block_type.shape[0]
    BLOCK_H_: gl.constexpr = qn_desc.block_type.shape[0]
    dtype: gl.constexpr = qn_desc.dtype
    hb, b, split, start, end, n_pairs = _program(Lens, split_len, BLOCK_N_)

    qn_smem = gl.allocate_shared_memory(dtype, qn_desc.block_type.shape, qn_desc.layout)
    qp_smem = gl.allocate_shared_memory(dtype, qp_desc.block_type.shape, qp_desc.layout)
    c_smem = gl.allocate_shared_memory(dtype, [SLOTS] + c_desc.block_type.shape, c_desc.layout)
    kp_smem = gl.allocate_shared_memory(dtype, [SLOTS] + kp_desc.block_type.shape, kp_desc.layout)
    rows_layout: gl.constexpr = gl.SwizzledSharedLayout(vec=1, per_phase=1, max_phase=1, order=[0])
    m_smem = gl.allocate_shared_memory(gl.float32, [2, BLOCK_H_], rows_layout)
    l_smem = gl.allocate_shared_memory(gl.float32, [2, BLOCK_H_], rows_layout)
    q_ready = gl.allocate_shared_memory(gl.int64, [1, 1], mbarrier.MBarrierLayout())
    done = gl.allocate_shared_memory(gl.int64, [1, 1], mbarrier.MBarrierLayout())
    k_ready = gl.allocate_shared_memory(gl.int64, [SLOTS, 1], mbarrier.MBarrierLayout())
    k_empty = gl.allocate_shared_memory(gl.int64, [SLOTS // 2, 1], mbarrier.MBarrierLayout())  # per pair of slots
    p_ready = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
    mbarrier.init(q_ready.index(0), count=1)
    mbarrier.init(done.index(0), count=2)  # both warpgroups' row sums are in
    for i in gl.static_range(SLOTS):
        mbarrier.init(k_ready.index(i), count=1)
    for i in gl.static_range(SLOTS // 2):
        mbarrier.init(k_empty.index(i), count=2)  # both warpgroups release a pair's slots
    for i in gl.static_range(2):
        mbarrier.init(p_ready.index(i), count=1)
    fence_async_shared()
    bars = (q_ready, k_ready, k_empty, p_ready, done)
    row0 = b * n_heads + hb * BLOCK_H_  # rows past the last head are masked at the store
    gl.warp_specialize([
        (_load, (qn_desc, qp_desc, c_desc, kp_desc, qn_smem, qp_smem, c_smem, kp_smem, bars, row0, b * L + start,
                 n_pairs)),
        (_warpgroup, (qn_smem, qp_smem, c_smem, kp_smem, m_smem, l_smem, bars, Lens, Part, Lse, n_heads, n_splits,
                      split_len, qk_scale, 0, P_LAYOUT)),  # spelled out: a tuple sum
        (_warpgroup, (qn_smem, qp_smem, c_smem, kp_smem, m_smem, l_smem, bars, Lens, Part, Lse, n_heads, n_splits,
                      split_len, qk_scale, 1, P_LAYOUT)),  # drops constexprs (Triton 3.6)
    ], [4, 4], [WG_REGS, WG_REGS])


def mla_decode_seesaw(q_nope: torch.Tensor, q_pe: torch.Tensor, kv: torch.Tensor, seq_lens: torch.Tensor,
                      n_splits: int, sm_scale: float, out: torch.Tensor | None = None) -> torch.Tensor:
    B, H, D = q_nope.shape
    L = kv.shape[1]
    descs = descriptors(q_nope, q_pe, kv, BLOCK_N, "seesaw")
    split_len = triton.cdiv(triton.cdiv(L, n_splits), 2 * BLOCK_N) * 2 * BLOCK_N  # whole pairs
    grid = (triton.cdiv(H, BLOCK_H), B, n_splits)
    return run_splits(lambda part, lse: _mla_seesaw[grid](
        *descs, seq_lens, part, lse, L, H, n_splits, split_len, sm_scale * 1.4426950408889634,
        P_LAYOUT=_smem_layout([BLOCK_H, BLOCK_N]), SLOTS=SLOTS, num_warps=NUM_WARPS, maxnreg=MAXNREG), (B, 1, H, D), n_splits, kv, out)[:, 0]


def sm90_build() -> dict:
    """The kernel compiled for sm_90 without a GPU (harness.sm90_build): SASS, registers, stack,
    shared memory. Run with TRITON_INTERPRET unset."""
    from triton.experimental.gluon._runtime import GluonASTSource

    from attn_dse.gpu.harness import sm90_build as build

    sig = {**sm90_signature(BLOCK_N), "SLOTS": "constexpr"}
    src = GluonASTSource(fn=_mla_seesaw, signature=sig,
                         constexprs={"P_LAYOUT": _smem_layout([BLOCK_H, BLOCK_N]), "SLOTS": SLOTS})
    return build(src, NUM_WARPS, maxnreg=MAXNREG)
