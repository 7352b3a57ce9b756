"""Attention backward for Hopper in Gluon, warp-specialized by hand (FlashAttention-3's
structure): dK and dV in registers, dQ added in fp32 to global memory, one pass.

A program owns a block of 128 keys of one K/V head and walks the query blocks (64 rows) that see
it, for every query head of the GQA group in turn (the group's dK, dV add up in registers). One
producer warp TMA-loads the block's K and V once, then each query block's Q and dO into a ring.
Two consumer warpgroups own 64 keys each and, per query block, in the transposed frame (rows
are keys, as FlashAttention-3's swapped S and dP):
    S^T = K Q^T, dP^T = V dO^T                  (async wgmma, both issued at once)
    P^T = 2^(S^T scale log2 e - L)              (L: the forward's log2-sum-exp)
    dV += P^T dO                                 (async, P^T from registers) while dS^T is formed:
    dS^T = P^T * (dP^T - D)                      (D = rowsum(dO * O), backward._delta)
    dK += dS^T Q                                 (async, dS^T from registers)
    dS^T -> shared memory; once both halves are there each consumer takes half of dQ's columns:
    dQ[:, half] = dS K[:, half]                  (async, dS from shared memory, transposed)
and adds it to an fp32 buffer atomically. Five matmuls per pair of key and query blocks, 3 d + 2 d
wide per attended pair (the cost model's Backward family), against 4 d + 3 d for backward.py's
two-kernel form (its dQ kernel recomputes S and dP).

Layout as backward.py: q, o, dO [B, Sq, Hq, D], k, v [B, Sk, Hkv, D], contiguous, queries the last
Sq positions; bf16 or fp16; head dim 128. The loads view them as 2-D [B * S, H * D] (TMA): query
rows past a batch's end read the next batch's (their L is +inf: P is 0) and keys past it are
masked, neither stored.
"""
from __future__ import annotations

import math

import torch
import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import (fence_async_shared, mbarrier, tma, warpgroup_mma,
                                                              warpgroup_mma_wait)
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

from attn_dse.gpu.prefill_gluon import _smem_layout, _tma_load

_warpgroup_barrier = gl.thread_barrier if hasattr(gl, "thread_barrier") else gl.barrier  # renamed after Triton 3.6

ROWS = 64  # one consumer warpgroup's keys and one query block's rows (one wgmma M)
STAGES = gl.constexpr(2)  # Q, dO ring depth
NUM_WARPS, MAXNREG = 4, 168  # as prefill_gluon: consumer 1 takes 240 registers, the producer 24
CONSUMER_REGS = gl.constexpr(240)


@gluon.jit
def _produce(q_desc, do_desc, k_desc, v_desc, kd_desc, lse_desc, delta_desc, q_smem, do_smem, k_smem, v_smem, kd_smem,
             lse_smem, delta_smem, bars, kv_row, kv_col, q_row0, h0, lo, n_blocks, group, n_heads, b, row_stride):
    """The producer warp: the block's K and V (each consumer's rows, and K once more in column
    halves, dQ's operand), then Q, dO, L and D of every query block of every head of the group."""
    kv_bar, ready, empty, ds_ready, ds_free = bars
    ROWS_: gl.constexpr = q_desc.block_type.shape[0]
    D: gl.constexpr = q_desc.block_type.shape[1]
    HALF: gl.constexpr = kd_desc.block_type.shape[1]
    mbarrier.expect(kv_bar, 2 * k_desc.block_type.nbytes + 2 * v_desc.block_type.nbytes
                    + 2 * kd_desc.block_type.nbytes)
    for w in gl.static_range(2):
        _tma_load(k_desc, [kv_row + w * ROWS_, kv_col], kv_bar, k_smem.index(w))
        _tma_load(v_desc, [kv_row + w * ROWS_, kv_col], kv_bar, v_smem.index(w))
        _tma_load(kd_desc, [kv_row, kv_col + w * HALF], kv_bar, kd_smem.index(w))
    i = 0
    for g in range(group):
        col = (h0 + g) * D
        row = (b * n_heads + h0 + g) * row_stride
        for m in range(lo, n_blocks):
            st = i % STAGES
            mbarrier.wait(empty.index(st), ((i // STAGES) & 1) ^ 1)  # a fresh barrier passes phase 1
            mbarrier.expect(ready.index(st), 2 * q_desc.block_type.nbytes + 2 * lse_desc.block_type.nbytes)
            _tma_load(q_desc, [q_row0 + m * ROWS_, col], ready.index(st), q_smem.index(st))
            _tma_load(do_desc, [q_row0 + m * ROWS_, col], ready.index(st), do_smem.index(st))
            _tma_load(lse_desc, [row + m * ROWS_], ready.index(st), lse_smem.index(st))
            _tma_load(delta_desc, [row + m * ROWS_], ready.index(st), delta_smem.index(st))
            i += 1


@gluon.jit
def _step(i, m, k, v, kd, q_smem, do_smem, lse_smem, delta_smem, ds_smem, bars, half: gl.constexpr, dk, dv, zero_s,
          zero_q, keys, last_key, DQ, dq_stride, seq_q, past, qk_scale, MASK: gl.constexpr, CAUSAL: gl.constexpr):
    """Query block m (the program's i-th) into this consumer's dK, dV and its half of dQ (DQ:
    the fp32 buffer at the block's head and column half, rows of the batch)."""
    kv_bar, ready, empty, ds_ready, ds_free = bars
    ROWS_: gl.constexpr = q_smem.type.shape[1]
    D: gl.constexpr = q_smem.type.shape[2]
    dtype: gl.constexpr = q_smem.dtype
    s_layout: gl.constexpr = zero_s.type.layout
    q_layout: gl.constexpr = zero_q.type.layout
    op_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=dk.type.layout, k_width=2)
    st = i % STAGES
    mbarrier.wait(ready.index(st), (i // STAGES) & 1)
    q = q_smem.index(st)
    do = do_smem.index(st)
    s_tok = warpgroup_mma(k, q.permute((1, 0)), zero_s, use_acc=False, is_async=True)
    dp_tok = warpgroup_mma(v, do.permute((1, 0)), zero_s, use_acc=False, is_async=True)
    cols_s: gl.constexpr = gl.SliceLayout(0, s_layout)  # the block's queries are columns here
    s = warpgroup_mma_wait(1, deps=[s_tok])
    p = gl.exp2(s * qk_scale - lse_smem.index(st).load(cols_s)[None, :])  # L past seq_q is +inf: P = 0
    if MASK:  # keys past each query's position (causal) or past the sequence
        if CAUSAL:
            rows = m * ROWS_ + gl.arange(0, ROWS_, layout=cols_s)
            p = gl.where(keys[:, None] <= gl.minimum(rows + past, last_key)[None, :], p, 0.0)
        else:
            p = gl.where(keys[:, None] <= last_key, p, 0.0)
    dv_tok = warpgroup_mma(gl.convert_layout(p.to(dtype), op_layout), do, dv, is_async=True)
    dp = warpgroup_mma_wait(1, deps=[dp_tok])
    ds = (p * (dp - delta_smem.index(st).load(cols_s)[None, :])).to(dtype)
    mbarrier.wait(ds_free, (i & 1) ^ 1)  # both consumers' dQ matmuls of the previous block are done with it
    ds_smem.slice(half * ROWS_, ROWS_).store(ds)
    fence_async_shared()
    _warpgroup_barrier()  # every thread's piece is stored before the arrival
    mbarrier.arrive(ds_ready, count=1)
    dk_tok = warpgroup_mma(gl.convert_layout(ds, op_layout), q, dk, is_async=True)
    mbarrier.wait(ds_ready, i & 1)
    dq_tok = warpgroup_mma(ds_smem.permute((1, 0)), kd, zero_q, use_acc=False, is_async=True)
    dv, dk, dq = warpgroup_mma_wait(0, deps=[dv_tok, dk_tok, dq_tok])
    mbarrier.arrive(ds_free, count=1)
    mbarrier.arrive(empty.index(st), count=1)
    q_rows = m * ROWS_ + gl.arange(0, ROWS_, layout=gl.SliceLayout(1, q_layout))
    q_cols = gl.arange(0, zero_q.type.shape[1], layout=gl.SliceLayout(0, q_layout))
    offs = q_rows[:, None] * dq_stride + q_cols[None, :]
    gl.atomic_add(DQ + offs, dq, mask=(q_rows < seq_q)[:, None], sem="relaxed")
    return dk, dv


@gluon.jit
def _consume(k_smem, v_smem, kd_smem, q_smem, do_smem, lse_smem, delta_smem, ds_smem, bars, half: gl.constexpr, DQ, DK,
             DV,
             b, h0, kvh, n_heads, group, seq_q, seq_k, start_n, lo, diag_hi, n_blocks, qk_scale, sm_scale,
             CAUSAL: gl.constexpr):
    """One consumer warpgroup: keys start_n + half * 64 ... + 63. Query blocks [lo, diag_hi) hold
    queries that must not see some of them (causal, or all blocks where the keys pass the
    sequence's end): masked; the rest run without mask code."""
    kv_bar, ready, empty, ds_ready, ds_free = bars
    ROWS_: gl.constexpr = q_smem.type.shape[1]
    D: gl.constexpr = q_smem.type.shape[2]
    HALF: gl.constexpr = kd_smem.type.shape[2]
    dtype: gl.constexpr = q_smem.dtype
    s_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, ROWS_, 16])
    q_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, HALF, 16])
    kv_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, D, 16])
    k = k_smem.index(half)
    v = v_smem.index(half)
    kd = kd_smem.index(half)
    first = start_n + half * ROWS_
    keys = first + gl.arange(0, ROWS_, layout=gl.SliceLayout(1, s_layout))
    past = seq_k - seq_q  # queries are the last seq_q positions
    last_key = seq_k - 1
    zero_s = gl.zeros([ROWS_, ROWS_], gl.float32, layout=s_layout)
    zero_q = gl.zeros([ROWS_, HALF], gl.float32, layout=q_layout)
    dk = gl.zeros([ROWS_, D], gl.float32, layout=kv_layout)
    dv = gl.zeros([ROWS_, D], gl.float32, layout=kv_layout)
    mbarrier.wait(kv_bar, 0)
    i = 0
    for g in range(group):
        h = h0 + g
        DQh = DQ + b.to(gl.int64) * seq_q * n_heads * D + h * D + half * HALF
        for m in range(lo, diag_hi):
            dk, dv = _step(i, m, k, v, kd, q_smem, do_smem, lse_smem, delta_smem, ds_smem, bars, half, dk, dv, zero_s,
                           zero_q, keys, last_key, DQh, n_heads * D, seq_q, past, qk_scale, True, CAUSAL)
            i += 1
        for m in range(diag_hi, n_blocks):
            dk, dv = _step(i, m, k, v, kd, q_smem, do_smem, lse_smem, delta_smem, ds_smem, bars, half, dk, dv, zero_s,
                           zero_q, keys, last_key, DQh, n_heads * D, seq_q, past, qk_scale, False, CAUSAL)
            i += 1
    keys_out = first + gl.arange(0, ROWS_, layout=gl.SliceLayout(1, kv_layout))
    cols = gl.arange(0, D, layout=gl.SliceLayout(0, kv_layout))
    n_kv = n_heads // group
    offs = (b.to(gl.int64) * seq_k + keys_out)[:, None] * (n_kv * D) + kvh * D + cols[None, :]
    keep = (keys_out < seq_k)[:, None]
    gl.store(DK + offs, (dk * sm_scale).to(dtype), mask=keep)  # S = scale * Q K^T
    gl.store(DV + offs, dv.to(dtype), mask=keep)


@gluon.jit
def _backward_wgmma(q_desc, do_desc, k_desc, v_desc, kd_desc, lse_desc, delta_desc, DQ, DK, DV, n_heads, group, seq_q,
                    seq_k, row_stride, qk_scale, sm_scale, CAUSAL: gl.constexpr):
    """q_desc, do_desc: [B * Sq, Hq * D] in blocks of [64, D]; k_desc, v_desc: [B * Sk, Hkv * D]
    in blocks of [64, D], kd_desc the same K in [128, D / 2]; lse_desc, delta_desc: L and D as
    [B * Hq * row_stride] float32 in blocks of 64 (row_stride: seq_q padded to 64, L +inf and D 0
    past seq_q); DQ
    [B, Sq, Hq, D] float32, zeroed (dQ / scale is added into it); DK, DV as k."""
    ROWS_: gl.constexpr = q_desc.block_type.shape[0]
    dtype: gl.constexpr = q_desc.dtype
    bh = gl.program_id(0)
    pid_n = gl.program_id(1)  # every head's first key blocks (causal: the longest) launch first
    n_kv = n_heads // group
    b = bh // n_kv
    kvh = bh % n_kv
    start_n = pid_n * 2 * ROWS_
    past = seq_k - seq_q
    n_blocks = gl.cdiv(seq_q, ROWS_)
    lo = 0
    diag_hi = 0
    if CAUSAL:  # blocks before lo see none of the keys, blocks from diag_hi all of them
        lo = gl.maximum(0, start_n - past) // ROWS_
        diag_hi = gl.minimum(gl.cdiv(gl.maximum(0, start_n + 2 * ROWS_ - 1 - past), ROWS_), n_blocks)
    if start_n + 2 * ROWS_ > seq_k:
        diag_hi = n_blocks

    q_smem = gl.allocate_shared_memory(dtype, [STAGES] + q_desc.block_type.shape, q_desc.layout)
    do_smem = gl.allocate_shared_memory(dtype, [STAGES] + do_desc.block_type.shape, do_desc.layout)
    k_smem = gl.allocate_shared_memory(dtype, [2] + k_desc.block_type.shape, k_desc.layout)
    v_smem = gl.allocate_shared_memory(dtype, [2] + v_desc.block_type.shape, v_desc.layout)
    kd_smem = gl.allocate_shared_memory(dtype, [2] + kd_desc.block_type.shape, kd_desc.layout)
    lse_smem = gl.allocate_shared_memory(gl.float32, [STAGES] + lse_desc.block_type.shape, lse_desc.layout)
    delta_smem = gl.allocate_shared_memory(gl.float32, [STAGES] + delta_desc.block_type.shape, delta_desc.layout)
    ds_smem = gl.allocate_shared_memory(dtype, [2 * ROWS_, ROWS_], gl.NVMMASharedLayout.get_default_for(
        [2 * ROWS_, ROWS_], dtype))  # dS^T: both consumers' keys, the block's queries
    kv_bar = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
    ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    ds_ready = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
    ds_free = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
    mbarrier.init(kv_bar, count=1)
    mbarrier.init(ds_ready, count=2)  # each consumer, its half written
    mbarrier.init(ds_free, count=2)  # each consumer, its dQ matmul done
    for s in gl.static_range(STAGES):
        mbarrier.init(ready.index(s), count=1)
        mbarrier.init(empty.index(s), count=2)
    bars = (kv_bar, ready, empty, ds_ready, ds_free)

    h0 = kvh * group
    args = (DQ, DK, DV, b, h0, kvh, n_heads, group, seq_q, seq_k, start_n, lo, diag_hi, n_blocks,
            qk_scale, sm_scale, CAUSAL)
    gl.warp_specialize([
        (_consume, (k_smem, v_smem, kd_smem, q_smem, do_smem, lse_smem, delta_smem, ds_smem, bars, 0) + args),
        (_consume, (k_smem, v_smem, kd_smem, q_smem, do_smem, lse_smem, delta_smem, ds_smem, bars, 1) + args),
        (_produce, (q_desc, do_desc, k_desc, v_desc, kd_desc, lse_desc, delta_desc, q_smem, do_smem, k_smem, v_smem,
                    kd_smem, lse_smem, delta_smem, bars, b * seq_k + start_n, kvh * q_desc.block_type.shape[1],
                    b * seq_q, h0, lo, n_blocks, group, n_heads, b, row_stride)),
    ], [4, 1], [CONSUMER_REGS, 24])


def refusal(q, k, v) -> str | None:
    """Why _backward_wgmma cannot take these inputs (None: it can): head dim 128, bf16 or fp16,
    on a Hopper GPU (Gluon has no interpreter); backward() makes them contiguous."""
    if q.shape[-1] != 128 or k.shape[-1] != 128:
        return "the Gluon backward takes head dim 128"
    if q.dtype not in (torch.bfloat16, torch.float16):
        return f"the Gluon backward takes bf16 or fp16, not {q.dtype}"
    if not q.is_cuda or torch.cuda.get_device_capability(q.device)[0] != 9:
        return "the Gluon backward runs on Hopper (sm_90) GPUs only"
    return None


def padded_rows(seq_q: int) -> int:
    """The row stride of L and D for this kernel: seq_q rounded up to a query block."""
    return triton.cdiv(seq_q, ROWS) * ROWS


def backward_wgmma(q, k, v, do, lse, delta, causal: bool, dq, dk, dv) -> None:
    """dQ, dK, dV into dq, dk, dv (every element written) for contiguous q, do [B, Sq, Hq, 128],
    k, v [B, Sk, Hkv, 128]; lse (the forward's log2-sum-exp) and delta (rowsum(dO * O)) as
    [B * Hq, padded_rows(Sq)] float32, +inf and 0 in the padding."""
    B, Sq, Hq, D = q.shape
    Sk, Hkv = k.shape[1], k.shape[2]
    row_stride = padded_rows(Sq)
    assert lse.shape == delta.shape == (B * Hq, row_stride) and lse.is_contiguous() and delta.is_contiguous()

    def desc(t, block):
        return TensorDescriptor(t, [t.shape[0] * t.shape[1], t.shape[2] * t.shape[3]], [t.shape[2] * t.shape[3], 1],
                                block, _smem_layout(block, q.dtype))

    def rows(t):
        layout = gl.NVMMASharedLayout.get_default_for([ROWS], gl.float32)
        return TensorDescriptor(t, [t.numel()], [1], [ROWS], layout)
    dq_acc = torch.zeros(q.shape, device=q.device, dtype=torch.float32)
    grid = (B * Hkv, triton.cdiv(Sk, 2 * ROWS))
    _backward_wgmma[grid](desc(q, [ROWS, D]), desc(do, [ROWS, D]), desc(k, [ROWS, D]), desc(v, [ROWS, D]),
                          desc(k, [2 * ROWS, D // 2]), rows(lse), rows(delta), dq_acc, dk, dv, Hq, Hq // Hkv, Sq, Sk,
                          row_stride, 1.4426950408889634 / math.sqrt(D), 1.0 / math.sqrt(D), CAUSAL=causal,
                          num_warps=NUM_WARPS, maxnreg=MAXNREG)
    dq.copy_(dq_acc.mul_(1.0 / math.sqrt(D)))


def sm90_build(causal: bool = False) -> dict:
    """The kernel compiled for sm_90 without a GPU (harness.sm90_build): SASS, registers, stack,
    shared memory. Run with TRITON_INTERPRET unset."""
    from triton.experimental.gluon._runtime import GluonASTSource

    from attn_dse.gpu.harness import sm90_build as build

    def desc(block):
        return f"tensordesc<bf16[{block[0]},{block[1]}],{_smem_layout(block, torch.bfloat16)!r}>"
    row = desc([ROWS, 128])
    vec = f"tensordesc<fp32[{ROWS}],{gl.NVMMASharedLayout.get_default_for([ROWS], gl.float32)!r}>"
    sig = {"q_desc": row, "do_desc": row, "k_desc": row, "v_desc": row, "kd_desc": desc([2 * ROWS, 64]),
           "lse_desc": vec, "delta_desc": vec, "DQ": "*fp32", "DK": "*bf16", "DV": "*bf16", "n_heads": "i32",
           "group": "i32", "seq_q": "i32", "seq_k": "i32", "row_stride": "i32", "qk_scale": "fp32", "sm_scale": "fp32",
           "CAUSAL": "constexpr"}
    src = GluonASTSource(fn=_backward_wgmma, signature=sig, constexprs={"CAUSAL": causal})
    return build(src, NUM_WARPS, maxnreg=MAXNREG)
