"""Attention backward for Hopper in Gluon, warp-specialized by hand (FlashAttention-3's
structure): dK and dV in registers, dQ added in fp32 to global memory by a writer warp, one pass.

A program owns a block of 128 keys of one K/V head and walks the query blocks (64 rows) that see
it, for every query head of the GQA group in turn (the group's dK, dV add up in registers). One
producer warp TMA-loads the block's K and V once, then each query block's Q, dO, L and D into a
two-stage ring. Two consumer warpgroups own 64 keys each and, per query block i, in the
transposed frame (rows are keys, as FlashAttention-3's swapped S and dP):
    S^T = K Q^T, dP^T = V dO^T                  (async wgmma, both issued at once)
    P^T = 2^(S^T scale log2 e - L)              (L: the forward's log2-sum-exp)
    dV += P^T dO                                 (async, P^T from registers) while dS^T is formed:
    dS^T = P^T * (dP^T - D)                      (D = rowsum(dO * O), backward._delta)
    dS^T -> shared memory (two buffers); dK += dS^T Q   (async, dS^T from registers)
    dQ_{i-1}[:, half] = dS_{i-1} K[:, half]     (async, both consumers' dS of block i - 1)
so neither consumer waits on the other's dS of the block it is on: it takes the previous block's,
written long before (waiting for the current one put both in lockstep: 6.5-6.7 ms against 6.3 at
8k causal, docs/device-logs/h200-backward-gluon-variants-2026-12-03.log). Each consumer hands its
dQ half to a writer warp through shared memory; it adds it into an fp32 buffer blocked by
query block (converted to dQ by `_dq_out`, a Triton kernel) with one TMA bulk reduction a half
(cp.reduce.async.bulk.tensor .add), keeping one in flight: the consumer gets its buffer back when
the reduction after the next one is issued. So the atomics' latency stays off the matmul warps
(issued by the consumers themselves they cost 2 ms of 8.3), and off the writer too: its 16-byte
register reductions (red.v4.f32) took 6.34 ms at 8k causal GQA against 5.59 for the bulk ones,
11.19 against 10.73 non-causal (docs/device-logs/h200-backward-gluon-dq-2026-12-04.log).
A head's key blocks are neighbours in the launch order, so the programs running at once share
one head's Q, dO and dQ in L2. With the heads side by side instead (every head's first, in
causal longest, key blocks first) MHA at 8k non-causal took 14.5-14.8 ms against 9.9-10.2, at
8 x 2k 2.1 against 1.4, GQA non-causal 3-6 % more; only causal GQA at 8k gained (5-7 %) from
the longest-first order (same log).

Five matmuls per pair of key and query blocks, 3 d + 2 d wide per attended pair (the cost
model's Backward family), against 4 d + 3 d for backward.py's two-kernel form (its dQ kernel
recomputes S and dP).

Layout as backward.py: q, o, dO [B, Sq, Hq, D], k, v [B, Sk, Hkv, D], contiguous, queries the last
Sq positions; bf16 or fp16; head dim 128. The loads view them as 2-D [B * S, H * D] (TMA): query
rows past a batch's end read the next batch's (their L is +inf: P is 0) and keys past it are
masked, neither stored.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from triton.experimental import gluon
from triton._C.libtriton import ir
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language._core import builtin
from triton.experimental.gluon.language.nvidia.hopper import (fence_async_shared, mbarrier, tma, warpgroup_mma,
                                                              warpgroup_mma_wait)
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

from attn_dse.gpu.prefill_gluon import _smem_layout, _tma_load

_warpgroup_barrier = gl.thread_barrier if hasattr(gl, "thread_barrier") else gl.barrier  # renamed after Triton 3.6


@builtin
def _tma_reduce_add_36(tensor_desc, coord, src, _semantic=None):
    """tma.async_atomic_add for Triton 3.6 (the device image), which builds the op but does not name it."""
    coord = _semantic._convert_to_ir_values(coord, require_i64=False)
    _semantic.builder.create_async_tma_reduce(ir.DESCRIPTOR_REDUCE_KIND.ADD, tensor_desc.handle, coord, src.handle)


_tma_reduce_add = getattr(tma, "async_atomic_add", _tma_reduce_add_36)

ROWS = 64  # one consumer warpgroup's keys and one query block's rows (one wgmma M)
STAGES = gl.constexpr(2)  # Q, dO ring depth (three do not fit beside the dQ buffers: 227 KB)
# as prefill_gluon: 10 warps launch at 168 registers; consumer 1 takes 240, the producer warp and
# the writer warp (one thread issues its TMA reductions) 24, consumer 0 what is left
NUM_WARPS, MAXNREG = 4, 168
CONSUMER_REGS = gl.constexpr(240)
WRITER_WARPS = gl.constexpr(1)


@gluon.jit
def _produce(q_desc, do_desc, k_desc, v_desc, lse_desc, delta_desc, q_smem, do_smem, k_smem, v_smem, lse_smem,
             delta_smem, bars, kv_row, kv_col, q_row0, h0, lo, n_blocks, group, n_heads, b, row_stride):
    """The producer warp: the block's K and V (each consumer's rows), then Q, dO, L and D of
    every query block of every head of the group."""
    kv_bar, ready, empty, ds_ready, ds_free, dq_full, dq_empty = bars
    ROWS_: gl.constexpr = q_desc.block_type.shape[0]
    D: gl.constexpr = q_desc.block_type.shape[1]
    mbarrier.expect(kv_bar, 2 * k_desc.block_type.nbytes + 2 * v_desc.block_type.nbytes)
    for w in gl.static_range(2):
        _tma_load(k_desc, [kv_row + w * ROWS_, kv_col], kv_bar, k_smem.index(w))
        _tma_load(v_desc, [kv_row + w * ROWS_, kv_col], kv_bar, v_smem.index(w))
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
def _write_dq(dq_desc, dq_smem, bars, b, h0, lo, n_blocks, group, n_heads, row_stride):
    """The dQ writer: each consumer's column half of each query block's dQ, from shared memory
    into the fp32 buffer (viewed as [B * Hq * blocks * 2 halves * 64, 64]) by a TMA reduction.
    A half's buffer goes back to its consumer once the reduction issued after it is, so one
    is always in flight."""
    kv_bar, ready, empty, ds_ready, ds_free, dq_full, dq_empty = bars
    ROWS_: gl.constexpr = dq_smem.type.shape[1]
    i = 0
    for g in range(group):
        for m in range(lo, n_blocks):
            for w in gl.static_range(2):
                mbarrier.wait(dq_full.index(w), i & 1)
                row = (((b * n_heads + h0 + g) * (row_stride // ROWS_) + m) * 2 + w) * ROWS_
                _tma_reduce_add(dq_desc, [row, 0], dq_smem.index(w))
                tma.store_wait(1)  # the reduction before this one has read its buffer
                if i > 0 or w == 1:
                    mbarrier.arrive(dq_empty.index(1 - w), count=1)
            i += 1
    tma.store_wait(0)


@gluon.jit
def _issue_dq(j, k_all, ds_smem, bars, half: gl.constexpr, zero_q):
    """This consumer's column half of block j's dQ = dS K (over both consumers' keys: K's column
    half of each's rows), issued once both halves of dS^T are in."""
    kv_bar, ready, empty, ds_ready, ds_free, dq_full, dq_empty = bars
    ROWS_: gl.constexpr = ds_smem.type.shape[2]
    HALF_: gl.constexpr = zero_q.type.shape[1]
    buf = j % 2
    mbarrier.wait(ds_ready.index(buf), (j // 2) & 1)
    ds = ds_smem.index(buf)
    tok = warpgroup_mma(ds.slice(0, ROWS_).permute((1, 0)), k_all.index(0).slice(half * HALF_, HALF_, dim=1), zero_q,
                        use_acc=False, is_async=True)
    return warpgroup_mma(ds.slice(ROWS_, ROWS_).permute((1, 0)), k_all.index(1).slice(half * HALF_, HALF_, dim=1),
                         tok, is_async=True)


@gluon.jit
def _hand_dq(j, dq, dq_smem, bars, half: gl.constexpr):
    """Block j's dQ half (its matmul done) to the writer warp; its dS^T buffer is free."""
    kv_bar, ready, empty, ds_ready, ds_free, dq_full, dq_empty = bars
    mbarrier.arrive(ds_free.index(j % 2), count=1)
    mbarrier.wait(dq_empty.index(half), (j & 1) ^ 1)
    dq_smem.index(half).store(dq)
    fence_async_shared()  # the stores are seen by the TMA reduction
    _warpgroup_barrier()
    mbarrier.arrive(dq_full.index(half), count=1)


@gluon.jit
def _step(i, m, k_smem, v_smem, q_smem, do_smem, lse_smem, delta_smem, ds_smem, dq_smem, bars, half: gl.constexpr, dk,
          dv, zero_s, zero_q, keys, last_key, past, qk_scale, MASK: gl.constexpr, CAUSAL: gl.constexpr):
    """Query block m (the program's i-th) into this consumer's dK and dV; the previous block's
    dQ half to the writer."""
    kv_bar, ready, empty, ds_ready, ds_free, dq_full, dq_empty = bars
    ROWS_: gl.constexpr = q_smem.type.shape[1]
    D: gl.constexpr = q_smem.type.shape[2]
    dtype: gl.constexpr = q_smem.dtype
    s_layout: gl.constexpr = zero_s.type.layout
    op_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=dk.type.layout, k_width=2)
    st = i % STAGES
    mbarrier.wait(ready.index(st), (i // STAGES) & 1)
    q = q_smem.index(st)
    do = do_smem.index(st)
    s_tok = warpgroup_mma(k_smem.index(half), q.permute((1, 0)), zero_s, use_acc=False, is_async=True)
    dp_tok = warpgroup_mma(v_smem.index(half), do.permute((1, 0)), zero_s, use_acc=False, is_async=True)
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
    buf = i % 2
    mbarrier.wait(ds_free.index(buf), ((i // 2) & 1) ^ 1)  # both consumers' dQ matmuls of block i - 2 are done
    ds_smem.index(buf).slice(half * ROWS_, ROWS_).store(ds)
    fence_async_shared()
    _warpgroup_barrier()  # every thread's piece is stored before the arrival
    mbarrier.arrive(ds_ready.index(buf), count=1)
    dk_tok = warpgroup_mma(gl.convert_layout(ds, op_layout), q, dk, is_async=True)
    if i > 0:  # the previous block's dQ: the other consumer's dS for it is long written
        dq_tok = _issue_dq(i - 1, k_smem, ds_smem, bars, half, zero_q)
        dv, dk, dq = warpgroup_mma_wait(0, deps=[dv_tok, dk_tok, dq_tok])
        mbarrier.arrive(empty.index(st), count=1)
        _hand_dq(i - 1, dq, dq_smem, bars, half)
    else:
        dv, dk = warpgroup_mma_wait(0, deps=[dv_tok, dk_tok])
        mbarrier.arrive(empty.index(st), count=1)
    return dk, dv


@gluon.jit
def _consume(k_smem, v_smem, q_smem, do_smem, lse_smem, delta_smem, ds_smem, dq_smem, bars, half: gl.constexpr, DK, DV,
             b, kvh, n_heads, group, seq_q, seq_k, start_n, lo, diag_hi, n_blocks, qk_scale, sm_scale,
             CAUSAL: gl.constexpr):
    """One consumer warpgroup: keys start_n + half * 64 ... + 63. Query blocks [lo, diag_hi) hold
    queries that must not see some of them (causal, or all blocks where the keys pass the
    sequence's end): masked; the rest run without mask code."""
    kv_bar, ready, empty, ds_ready, ds_free, dq_full, dq_empty = bars
    ROWS_: gl.constexpr = q_smem.type.shape[1]
    D: gl.constexpr = q_smem.type.shape[2]
    HALF: gl.constexpr = D // 2
    dtype: gl.constexpr = q_smem.dtype
    s_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, ROWS_, 16])
    q_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, HALF, 16])
    kv_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, D, 16])
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
        for m in range(lo, diag_hi):
            dk, dv = _step(i, m, k_smem, v_smem, q_smem, do_smem, lse_smem, delta_smem, ds_smem, dq_smem, bars, half, dk,
                           dv, zero_s, zero_q, keys, last_key, past, qk_scale, True, CAUSAL)
            i += 1
        for m in range(diag_hi, n_blocks):
            dk, dv = _step(i, m, k_smem, v_smem, q_smem, do_smem, lse_smem, delta_smem, ds_smem, dq_smem, bars, half, dk,
                           dv, zero_s, zero_q, keys, last_key, past, qk_scale, False, CAUSAL)
            i += 1
    dq = warpgroup_mma_wait(0, deps=[_issue_dq(i - 1, k_smem, ds_smem, bars, half, zero_q)])
    _hand_dq(i - 1, dq, dq_smem, bars, half)
    keys_out = first + gl.arange(0, ROWS_, layout=gl.SliceLayout(1, kv_layout))
    cols = gl.arange(0, D, layout=gl.SliceLayout(0, kv_layout))
    n_kv = n_heads // group
    offs = (b.to(gl.int64) * seq_k + keys_out)[:, None] * (n_kv * D) + kvh * D + cols[None, :]
    keep = (keys_out < seq_k)[:, None]
    gl.store(DK + offs, (dk * sm_scale).to(dtype), mask=keep)  # S = scale * Q K^T
    gl.store(DV + offs, dv.to(dtype), mask=keep)


@gluon.jit
def _backward_wgmma(q_desc, do_desc, k_desc, v_desc, lse_desc, delta_desc, dq_desc, DK, DV, n_heads, group, seq_q,
                    seq_k, row_stride, qk_scale, sm_scale, CAUSAL: gl.constexpr):
    """q_desc, do_desc: [B * Sq, Hq * D] in blocks of [64, D]; k_desc, v_desc: [B * Sk, Hkv * D]
    in blocks of [64, D]; lse_desc, delta_desc: L and D as [B * Hq * row_stride] float32 in
    blocks of 64 (row_stride: seq_q padded to 64, L +inf and D 0 past seq_q); dq_desc: [B, Hq,
    row_stride / 64, 2, 64, D / 2] float32, zeroed (dQ / scale is added into it), as
    [B * Hq * row_stride * 2, D / 2] in blocks of [64, D / 2]; DK, DV as k."""
    ROWS_: gl.constexpr = q_desc.block_type.shape[0]
    dtype: gl.constexpr = q_desc.dtype
    pid_n = gl.program_id(0)  # a head's key blocks (causal: the longest first) launch side by side,
    bh = gl.program_id(1)  # so the SMs share its Q, dO stream and its dQ in L2
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
    lse_smem = gl.allocate_shared_memory(gl.float32, [STAGES] + lse_desc.block_type.shape, lse_desc.layout)
    delta_smem = gl.allocate_shared_memory(gl.float32, [STAGES] + delta_desc.block_type.shape, delta_desc.layout)
    ds_smem = gl.allocate_shared_memory(dtype, [2, 2 * ROWS_, ROWS_], gl.NVMMASharedLayout.get_default_for(
        [2 * ROWS_, ROWS_], dtype))  # dS^T of two blocks: both consumers' keys, the block's queries
    kv_bar = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
    ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    dq_smem = gl.allocate_shared_memory(gl.float32, [2] + dq_desc.block_type.shape, dq_desc.layout)  # one half each
    dq_full = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
    dq_empty = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
    ds_ready = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
    ds_free = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
    mbarrier.init(kv_bar, count=1)
    for w in gl.static_range(2):
        mbarrier.init(ds_ready.index(w), count=2)  # each consumer, its half written
        mbarrier.init(ds_free.index(w), count=2)  # each consumer, its dQ matmul done
        mbarrier.init(dq_full.index(w), count=1)
        mbarrier.init(dq_empty.index(w), count=1)
    for s in gl.static_range(STAGES):
        mbarrier.init(ready.index(s), count=1)
        mbarrier.init(empty.index(s), count=2)
    bars = (kv_bar, ready, empty, ds_ready, ds_free, dq_full, dq_empty)

    h0 = kvh * group
    gl.warp_specialize([  # each partition's arguments spelled out: a tuple sum drops constexprs (Triton 3.6)
        (_consume, (k_smem, v_smem, q_smem, do_smem, lse_smem, delta_smem, ds_smem, dq_smem, bars, 0, DK, DV, b, kvh,
                    n_heads, group, seq_q, seq_k, start_n, lo, diag_hi, n_blocks, qk_scale, sm_scale, CAUSAL)),
        (_consume, (k_smem, v_smem, q_smem, do_smem, lse_smem, delta_smem, ds_smem, dq_smem, bars, 1, DK, DV, b, kvh,
                    n_heads, group, seq_q, seq_k, start_n, lo, diag_hi, n_blocks, qk_scale, sm_scale, CAUSAL)),
        (_produce, (q_desc, do_desc, k_desc, v_desc, lse_desc, delta_desc, q_smem, do_smem, k_smem, v_smem, lse_smem,
                    delta_smem, bars, b * seq_k + start_n, kvh * q_desc.block_type.shape[1], b * seq_q, h0, lo, n_blocks,
                    group, n_heads, b, row_stride)),
        (_write_dq, (dq_desc, dq_smem, bars, b, h0, lo, n_blocks, group, n_heads, row_stride)),
    ], [4, 1, WRITER_WARPS], [CONSUMER_REGS, 24, 24])


@triton.jit(do_not_specialize=["seq_q"])
def _dq_out(DQacc, DQ, stride_b, stride_s, stride_h, n_heads, seq_q, scale, BLOCK_M: tl.constexpr, HALF: tl.constexpr):
    """dQ = scale * DQacc in DQ's dtype, one [BLOCK_M, HALF] piece a program: DQacc as the Gluon
    backward accumulates it, [B, Hq, blocks, 2 column halves, BLOCK_M, HALF] float32."""
    blk = tl.program_id(0)
    half = tl.program_id(1) % 2
    bh = tl.program_id(1) // 2
    piece = ((bh.to(tl.int64) * tl.num_programs(0) + blk) * 2 + half) * BLOCK_M * HALF
    rows = tl.arange(0, BLOCK_M)
    cols = tl.arange(0, HALF)
    acc = tl.load(DQacc + piece + rows[:, None] * HALF + cols[None, :])
    offs_m = blk * BLOCK_M + rows
    out = (DQ + (bh // n_heads).to(tl.int64) * stride_b + (bh % n_heads) * stride_h + offs_m[:, None] * stride_s
           + half * HALF + cols[None, :])
    tl.store(out, (acc * scale).to(DQ.dtype.element_ty), mask=offs_m[:, None] < seq_q)


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


def _dq_layout():
    """Shared memory of a [64, 64] float32 dQ half, as the TMA reduction reads it."""
    return gl.NVMMASharedLayout.get_default_for([ROWS, 64], gl.float32)


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
    dq_acc = torch.zeros((B, Hq, row_stride // ROWS, 2, ROWS, D // 2), device=q.device, dtype=torch.float32)
    dq_flat = dq_acc.view(-1, D // 2)
    dq_desc = TensorDescriptor(dq_flat, list(dq_flat.shape), [D // 2, 1], [ROWS, D // 2], _dq_layout())
    grid = (triton.cdiv(Sk, 2 * ROWS), B * Hkv)
    _backward_wgmma[grid](desc(q, [ROWS, D]), desc(do, [ROWS, D]), desc(k, [ROWS, D]), desc(v, [ROWS, D]), rows(lse),
                          rows(delta), dq_desc, dk, dv, Hq, Hq // Hkv, Sq, Sk, row_stride, 1.4426950408889634 / math.sqrt(D), 1.0 / math.sqrt(D), CAUSAL=causal,
                          num_warps=NUM_WARPS, maxnreg=MAXNREG)
    _dq_out[(row_stride // ROWS, B * Hq * 2)](dq_acc, dq, *dq.stride()[:3], Hq, Sq, 1.0 / math.sqrt(D), BLOCK_M=ROWS,
                                              HALF=D // 2, num_warps=4)


def sm90_build(causal: bool = False) -> dict:
    """The kernel compiled for sm_90 without a GPU (harness.sm90_build): SASS, registers, stack,
    shared memory. Run with TRITON_INTERPRET unset."""
    from triton.experimental.gluon._runtime import GluonASTSource

    from attn_dse.gpu.harness import sm90_build as build
    from attn_dse.gpu.harness import tensordesc

    row = tensordesc("bf16", [ROWS, 128], _smem_layout([ROWS, 128], torch.bfloat16))
    vec = tensordesc("fp32", [ROWS], gl.NVMMASharedLayout.get_default_for([ROWS], gl.float32))
    sig = {"q_desc": row, "do_desc": row, "k_desc": row, "v_desc": row, "lse_desc": vec, "delta_desc": vec,
           "dq_desc": tensordesc("fp32", [ROWS, 64], _dq_layout()), "DK": "*bf16", "DV": "*bf16", "n_heads": "i32",
           "group": "i32", "seq_q": "i32", "seq_k": "i32", "row_stride": "i32", "qk_scale": "fp32", "sm_scale": "fp32",
           "CAUSAL": "constexpr"}
    src = GluonASTSource(fn=_backward_wgmma, signature=sig, constexprs={"CAUSAL": causal})
    return build(src, NUM_WARPS, maxnreg=MAXNREG)
