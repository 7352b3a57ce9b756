"""Fused attention backward (FlashAttention-2 structure) in Triton, and its training step.

    python3 -m attn_dse.gpu.backward --out DIR [--quick] [--kernel auto|triton]
        (on a CUDA GPU: checks, then times; writes DIR/backward-measurements.csv and
        DIR/backward-checks.csv)

`backward(kernel="auto")` runs the Gluon kernel (backward_gluon.py, FlashAttention-3's one pass)
where it can: head dim 128, bf16 or fp16, on Hopper; this file then supplies its pre-pass
(`_delta` with L copied into rows padded for TMA; its dQ conversion lives with it). Elsewhere, or
with tiles given, the Triton kernels below run.

The forward is our prefill kernel (`prefill(..., lse=)`), which keeps each row's log2-sum-exp L.
The backward recomputes the probabilities from it, P = 2^(QK^T scale log2(e) - L), and runs three
kernels:
- delta: D = rowsum(dO * O) in fp32 (the softmax's Jacobian term, dS = P * (dP - D));
- dK/dV: a program owns one K/V block of one K/V head and walks the query blocks that see it
  (causal: those at or below the diagonal), for every query head of the GQA group in turn, so the
  group's contributions add up in registers (no atomics): dV += P^T dO, dP = dO V^T,
  dS = P * (dP - D), dK += dS^T Q;
- dQ: a program owns one query block and walks its key blocks: dQ += dS K.
Matmul width per attended pair: 2 d_qk + 2 d_v in the dK/dV kernel (S, dP, dV, dK) and
2 d_qk + d_v in the dQ kernel (S and dP again, dQ): 4 d_qk + 3 d_v; dQ, dK, dV are written once
each, in the inputs' dtype, and Q, dO (and K, V) are read by both kernels. The alternative,
FA2's single pass (dQ tiles None in the config): no dQ kernel, the dK/dV kernel adds each block's
dS K to an fp32 dQ buffer atomically, 3 d_qk + 2 d_v wide, as the cost model's Backward family
counts it (Q, O, dO read, dQ through an fp32 accumulator). The GPU tuning picks between them.
Tiles on the diagonal and past the sequence's end are masked;
the others run without masks.

Layout as the forward: q, o, dO [B, Sq, Hq, D], k, v [B, Sk, Hkv, D] (contiguous), Sq <= Sk with
the queries the last Sq positions; bf16 or fp16 in, fp32 accumulation.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
import triton
import triton.language as tl

from attn_dse.gpu.prefill import prefill

SEQ_ARGS = ["seq_q", "seq_k"]  # one compilation for every length (the ragged checks, then the grid)


@triton.jit
def _rows(ptr, offs, n, stride, HEAD_DIM: tl.constexpr, MASK: tl.constexpr):
    """Rows `offs` of a [n, HEAD_DIM] matrix; with MASK, rows at or past n read as zeros."""
    ptrs = ptr + offs[:, None] * stride + tl.arange(0, HEAD_DIM)[None, :]
    if MASK:
        return tl.load(ptrs, mask=offs[:, None] < n, other=0.0)
    return tl.load(ptrs)


@triton.jit
def _vec(ptr, offs, n, MASK: tl.constexpr):
    if MASK:
        return tl.load(ptr + offs, mask=offs < n, other=0.0)
    return tl.load(ptr + offs)


@triton.jit(do_not_specialize=["seq_q", "row_stride"])
def _delta(O, DO, Delta, Lse, LseOut, stride_b, stride_s, stride_h, n_heads, seq_q, row_stride,
           HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, COPY_LSE: tl.constexpr):
    """Delta [B * Hq, row_stride] = rowsum(dO * O), 0 past seq_q; COPY_LSE: also the forward's
    Lse [B * Hq, seq_q] into LseOut as Delta, +inf past seq_q (rows padded for TMA)."""
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    base = (bh // n_heads).to(tl.int64) * stride_b + (bh % n_heads) * stride_h
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    o = _rows(O + base, offs_m, seq_q, stride_s, HEAD_DIM, True).to(tl.float32)
    do = _rows(DO + base, offs_m, seq_q, stride_s, HEAD_DIM, True).to(tl.float32)
    keep = offs_m < row_stride
    tl.store(Delta + bh.to(tl.int64) * row_stride + offs_m, tl.sum(o * do, 1), mask=keep)
    if COPY_LSE:
        lse = tl.load(Lse + bh.to(tl.int64) * seq_q + offs_m, mask=offs_m < seq_q, other=float("inf"))
        tl.store(LseOut + bh.to(tl.int64) * row_stride + offs_m, lse, mask=keep)


@triton.jit
def _dkdv_step(dk, dv, k, v, Q, DO, Lse, Delta, DQacc, start_m, offs_n, seq_q, seq_k, stride_qs, qk_scale, q_offset,
               sm_scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, MASK: tl.constexpr, CAUSAL: tl.constexpr,
               ATOMIC_DQ: tl.constexpr):
    """One query block into the K/V block's (dk, dv), in the transposed frame: rows are keys.
    ATOMIC_DQ: also the block's share of dQ, added to the fp32 DQacc (FA2's single pass)."""
    offs_m = start_m + tl.arange(0, BLOCK_M)
    q = _rows(Q, offs_m, seq_q, stride_qs, HEAD_DIM, MASK)  # rows past seq_q are zeros: they add nothing
    do = _rows(DO, offs_m, seq_q, stride_qs, HEAD_DIM, MASK)
    lse = _vec(Lse, offs_m, seq_q, MASK)
    delta = _vec(Delta, offs_m, seq_q, MASK)
    p_t = tl.math.exp2(tl.dot(k, tl.trans(q)) * qk_scale - lse[None, :])  # [BLOCK_N, BLOCK_M]
    if MASK:
        if CAUSAL:
            p_t = tl.where(offs_n[:, None] <= offs_m[None, :] + q_offset, p_t, 0.0)
    dv += tl.dot(p_t.to(do.dtype), do)
    dp_t = tl.dot(v, tl.trans(do))
    ds_t = p_t * (dp_t - delta[None, :])
    dk += tl.dot(ds_t.to(q.dtype), q)
    if ATOMIC_DQ:  # keys past seq_k read as zeros, but their P need not be finite: dropped
        ds_t = tl.where(offs_n[:, None] < seq_k, ds_t, 0.0)
        dq = tl.dot(tl.trans(ds_t.to(k.dtype)), k) * sm_scale
        ptrs = DQacc + offs_m[:, None] * stride_qs + tl.arange(0, HEAD_DIM)[None, :]
        tl.atomic_add(ptrs, dq, mask=offs_m[:, None] < seq_q, sem="relaxed")
    return dk, dv


@triton.jit(do_not_specialize=SEQ_ARGS)
def _dkdv(Q, K, V, DO, Lse, Delta, DK, DV, DQacc, stride_qb, stride_qs, stride_qh, stride_kb, stride_ks, stride_kh,
          n_heads, n_kv_heads, seq_q, seq_k, sm_scale,
          HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr,
          ATOMIC_DQ: tl.constexpr):
    pid_n = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // n_kv_heads).to(tl.int64)
    kvh = bh % n_kv_heads
    group = n_heads // n_kv_heads
    q_offset = seq_k - seq_q
    start_n = pid_n * BLOCK_N
    offs_n = start_n + tl.arange(0, BLOCK_N)
    kv_base = b * stride_kb + kvh * stride_kh
    k = _rows(K + kv_base, offs_n, seq_k, stride_ks, HEAD_DIM, True)
    v = _rows(V + kv_base, offs_n, seq_k, stride_ks, HEAD_DIM, True)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)
    qk_scale = sm_scale * 1.4426950408889634
    # query blocks [lo, diag_hi) cross the diagonal (masked), [diag_hi, even_hi) see every key of
    # the block (unmasked), [even_hi, seq_q) is the ragged last block (masked)
    lo = 0
    diag_hi = 0
    if CAUSAL:
        lo = tl.maximum(0, start_n - q_offset) // BLOCK_M * BLOCK_M
        diag_hi = tl.cdiv(tl.maximum(0, start_n + BLOCK_N - 1 - q_offset), BLOCK_M) * BLOCK_M
        diag_hi = tl.minimum(diag_hi, tl.cdiv(seq_q, BLOCK_M) * BLOCK_M)
    even_hi = tl.maximum(seq_q // BLOCK_M * BLOCK_M, diag_hi)
    for g in range(0, group):  # the group's query heads share this K/V head: they sum here
        h = kvh * group + g
        q_base = b * stride_qb + h * stride_qh
        row = (b * n_heads + h) * seq_q
        Qh, DOh, Lh, Dh, DQh = Q + q_base, DO + q_base, Lse + row, Delta + row, DQacc + q_base
        for start_m in range(lo, diag_hi, BLOCK_M):
            dk, dv = _dkdv_step(dk, dv, k, v, Qh, DOh, Lh, Dh, DQh, start_m, offs_n, seq_q, seq_k, stride_qs,
                                qk_scale, q_offset, sm_scale, HEAD_DIM, BLOCK_M, True, CAUSAL, ATOMIC_DQ)
        for start_m in range(diag_hi, even_hi, BLOCK_M):
            dk, dv = _dkdv_step(dk, dv, k, v, Qh, DOh, Lh, Dh, DQh, start_m, offs_n, seq_q, seq_k, stride_qs,
                                qk_scale, q_offset, sm_scale, HEAD_DIM, BLOCK_M, False, CAUSAL, ATOMIC_DQ)
        for start_m in range(even_hi, seq_q, BLOCK_M):
            dk, dv = _dkdv_step(dk, dv, k, v, Qh, DOh, Lh, Dh, DQh, start_m, offs_n, seq_q, seq_k, stride_qs,
                                qk_scale, q_offset, sm_scale, HEAD_DIM, BLOCK_M, True, CAUSAL, ATOMIC_DQ)
    offs_d = tl.arange(0, HEAD_DIM)
    out = kv_base + offs_n[:, None] * stride_ks + offs_d[None, :]
    keep = offs_n[:, None] < seq_k
    tl.store(DK + out, (dk * sm_scale).to(DK.dtype.element_ty), mask=keep)  # S = scale * Q K^T
    tl.store(DV + out, dv.to(DV.dtype.element_ty), mask=keep)


@triton.jit
def _dq_step(dq, q, do, lse, delta, K, V, offs_m, start_n, seq_k, stride_ks, qk_scale, q_offset,
             HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, MASK: tl.constexpr, CAUSAL: tl.constexpr):
    offs_n = start_n + tl.arange(0, BLOCK_N)
    k = _rows(K, offs_n, seq_k, stride_ks, HEAD_DIM, MASK)
    v = _rows(V, offs_n, seq_k, stride_ks, HEAD_DIM, MASK)
    p = tl.math.exp2(tl.dot(q, tl.trans(k)) * qk_scale - lse[:, None])  # [BLOCK_M, BLOCK_N]
    if MASK:
        keep = offs_n[None, :] < seq_k
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None] + q_offset)
        p = tl.where(keep, p, 0.0)
    dp = tl.dot(do, tl.trans(v))
    ds = p * (dp - delta[:, None])
    dq += tl.dot(ds.to(k.dtype), k)
    return dq


@triton.jit(do_not_specialize=SEQ_ARGS)
def _dq(Q, K, V, DO, Lse, Delta, DQ, stride_qb, stride_qs, stride_qh, stride_kb, stride_ks, stride_kh,
        n_heads, n_kv_heads, seq_q, seq_k, sm_scale,
        HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr):
    pid_m = tl.num_programs(0) - 1 - tl.program_id(0)  # causal: the longest rows start first
    bh = tl.program_id(1)
    b = (bh // n_heads).to(tl.int64)
    h = bh % n_heads
    kvh = h // (n_heads // n_kv_heads)
    q_offset = seq_k - seq_q
    start_m = pid_m * BLOCK_M
    offs_m = start_m + tl.arange(0, BLOCK_M)
    q_base = b * stride_qb + h * stride_qh
    q = _rows(Q + q_base, offs_m, seq_q, stride_qs, HEAD_DIM, True)
    do = _rows(DO + q_base, offs_m, seq_q, stride_qs, HEAD_DIM, True)
    row = bh.to(tl.int64) * seq_q
    lse = _vec(Lse + row, offs_m, seq_q, True)
    delta = _vec(Delta + row, offs_m, seq_q, True)
    K += b * stride_kb + kvh * stride_kh
    V += b * stride_kb + kvh * stride_kh
    dq = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    qk_scale = sm_scale * 1.4426950408889634
    # key blocks [0, full_hi) are visible to every row of the block and lie inside seq_k
    hi = seq_k
    full_hi = seq_k // BLOCK_N * BLOCK_N
    if CAUSAL:
        hi = tl.minimum(seq_k, start_m + BLOCK_M + q_offset)
        full_hi = tl.minimum(full_hi, (start_m + q_offset + 1) // BLOCK_N * BLOCK_N)
    for start_n in range(0, full_hi, BLOCK_N):
        dq = _dq_step(dq, q, do, lse, delta, K, V, offs_m, start_n, seq_k, stride_ks, qk_scale, q_offset,
                      HEAD_DIM, BLOCK_N, False, CAUSAL)
    for start_n in range(full_hi, hi, BLOCK_N):
        dq = _dq_step(dq, q, do, lse, delta, K, V, offs_m, start_n, seq_k, stride_ks, qk_scale, q_offset,
                      HEAD_DIM, BLOCK_N, True, CAUSAL)
    tl.store(DQ + q_base + offs_m[:, None] * stride_qs + tl.arange(0, HEAD_DIM)[None, :],
             (dq * sm_scale).to(DQ.dtype.element_ty), mask=offs_m[:, None] < seq_q)


# (dK/dV: BLOCK_M over queries, BLOCK_N keys owned, warps, stages), (dQ: BLOCK_M owned, BLOCK_N, warps, stages).
# Chosen from sm_90 builds (`sm90_resources`): d 128's dK/dV kernel holds two [BLOCK_N, 128] fp32
# accumulators (128 registers a thread at 8 warps, BLOCK_N 128); BLOCK_M 64 there spills (stack
# 400+ bytes), 32 does not (non-causal) or barely (causal: 56 bytes); 16 never, at twice the
# shared-memory reads of K and V per FLOP. The d 128 tiles are tuned on the GPU among these.
DEFAULT_CONFIG = {64: ((64, 128, 8, 3), (128, 64, 8, 3)), 128: ((32, 128, 8, 2), (128, 64, 8, 2))}
TUNE_DKDV = [(32, 128, 8, 2), (32, 64, 8, 2), (16, 128, 8, 3)]
TUNE_DQ = [(128, 64, 8, 2), (128, 32, 8, 3), (128, 64, 8, 3)]
# the single pass's dK/dV tiles: its dQ matmul has BLOCK_M rows, under wgmma's 64 the older MMA
# path; BLOCK_M 64 spills (250-400 bytes), these do not or barely (causal 32 x 64: 16 bytes)
TUNE_SINGLE = [(32, 64, 8, 2), (16, 128, 8, 3)]
TUNE_SHAPES = ((2, 8192, True), (1, 16384, False))  # (B, S, causal) at 32/8 heads: the pair
DELTA_BLOCK = 64


def forward(q, k, v, causal: bool, config=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(O, log2-sum-exp [B, Hq, Sq] fp32) from our prefill kernel."""
    lse = torch.empty(q.shape[0], q.shape[2], q.shape[1], device=q.device, dtype=torch.float32)
    return prefill(q, k, v, causal, config=config, lse=lse), lse


KERNELS = ("auto", "gluon", "triton")


def backward(q, k, v, o, lse, do, causal: bool, config=None, dq=None, dk=None, dv=None, kernel: str = "auto"):
    """(dQ, dK, dV) of attention for q, o, do [B, Sq, Hq, D], k, v [B, Sk, Hkv, D] and the
    forward's lse; dq/dk/dv: preallocated outputs (every element is written).
    kernel: "gluon" (backward_gluon.py: FlashAttention-3's one pass, head dim 128 on Hopper;
    ValueError with the reason where it cannot run), "triton" (this file's kernels, config:
    (dK/dV tiles, dQ tiles); dQ tiles None: no dQ kernel, the dK/dV kernel adds each block's dQ
    share to an fp32 buffer atomically, FA2's single pass), or "auto": gluon where it can run
    and no config is given, else triton."""
    if kernel not in KERNELS:
        raise ValueError(f"unknown backward kernel {kernel!r}: expected one of {', '.join(KERNELS)}")
    q, k, v, o, do = (t.contiguous() for t in (q, k, v, o, do))
    B, Sq, Hq, D = q.shape
    Sk, Hkv = k.shape[1], k.shape[2]
    assert Hq % Hkv == 0 and Sq <= Sk and v.shape == k.shape and o.shape == do.shape == q.shape
    assert lse.shape == (B, Hq, Sq) and lse.is_contiguous()
    dq = torch.empty_like(q) if dq is None else dq
    dk = torch.empty_like(k) if dk is None else dk
    dv = torch.empty_like(v) if dv is None else dv
    assert dq.stride() == q.stride() and dk.stride() == k.stride() and dv.stride() == k.stride()
    if kernel == "gluon" or (kernel == "auto" and config is None):
        from attn_dse.gpu import backward_gluon
        why = backward_gluon.refusal(q, k, v)
        if why and kernel == "gluon":
            raise ValueError(why)
        if not why:
            rows = backward_gluon.padded_rows(Sq)
            lse_rows, delta = (torch.empty(B * Hq, rows, device=q.device, dtype=torch.float32) for _ in range(2))
            _delta[(rows // DELTA_BLOCK, B * Hq)](o, do, delta, lse, lse_rows, *q.stride()[:3], Hq, Sq, rows,
                                                  HEAD_DIM=D, BLOCK_M=DELTA_BLOCK, COPY_LSE=True, num_warps=4)
            backward_gluon.backward_wgmma(q, k, v, do, lse_rows, delta, causal, dq, dk, dv)
            return dq, dk, dv
    (m1, n1, w1, s1), dq_tiles = config or DEFAULT_CONFIG[D]
    delta = torch.empty_like(lse)
    _delta[(triton.cdiv(Sq, DELTA_BLOCK), B * Hq)](o, do, delta, lse, lse, *q.stride()[:3], Hq, Sq, Sq, HEAD_DIM=D,
                                                   BLOCK_M=DELTA_BLOCK, COPY_LSE=False, num_warps=4)
    common = (*q.stride()[:3], *k.stride()[:3], Hq, Hkv, Sq, Sk, 1.0 / math.sqrt(D))
    single = dq_tiles is None  # dQ accumulated atomically in fp32 by the dK/dV kernel
    dq_acc = torch.zeros(q.shape, device=q.device, dtype=torch.float32) if single else None
    _dkdv[(triton.cdiv(Sk, n1), B * Hkv)](q, k, v, do, lse, delta, dk, dv,
                                          dq_acc if single else dq,  # only read with ATOMIC_DQ
                                          *common, HEAD_DIM=D, BLOCK_M=m1, BLOCK_N=n1, CAUSAL=causal,
                                          ATOMIC_DQ=single, num_warps=w1, num_stages=s1)
    if single:
        dq.copy_(dq_acc)
    else:
        m2, n2, w2, s2 = dq_tiles
        _dq[(triton.cdiv(Sq, m2), B * Hq)](q, k, v, do, lse, delta, dq, *common, HEAD_DIM=D, BLOCK_M=m2,
                                           BLOCK_N=n2, CAUSAL=causal, num_warps=w2, num_stages=s2)
    return dq, dk, dv


class _Attention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, causal, fwd_config, bwd_config):
        o, lse = forward(q, k, v, causal, fwd_config)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.causal, ctx.bwd_config = causal, bwd_config
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse = ctx.saved_tensors
        return (*backward(q, k, v, o, lse, do, ctx.causal, ctx.bwd_config), None, None, None)


def attention(q, k, v, causal: bool = True, fwd_config=None, bwd_config=None) -> torch.Tensor:
    """Differentiable fused attention: our prefill forward, this file's backward."""
    return _Attention.apply(q, k, v, causal, fwd_config, bwd_config)


def reference_grads(q, k, v, do, causal: bool):
    """(O, dQ, dK, dV) of the float32 reference through torch autograd."""
    from attn_dse.gpu.reference import attention_ref
    leaves = [t.detach().float().requires_grad_() for t in (q, k, v)]
    out = attention_ref(*leaves, causal)
    return (out.detach(), *torch.autograd.grad(out, leaves, do.float()))


def train_flops(B, Sq, Sk, Hq, D, causal) -> float:
    """The training step's algorithmic FLOPs as the vendor rows count them (forward's two
    matmuls and the backward's four over the attended pairs; no recomputation)."""
    from attn_dse.gpu.prefill import prefill_flops
    from attn_dse.gpu.vendor import TRAIN_FLOP_FACTOR
    return TRAIN_FLOP_FACTOR * prefill_flops(B, Sq, Sk, Hq, D, causal)


def sm90_resources(kernel: str, D: int, causal: bool, config: tuple, atomic_dq: bool = False) -> dict:
    """Compile the dK/dV or dQ kernel for sm_90 without a GPU (Triton's bundled ptxas and
    cuobjdump): registers and stack bytes a thread, shared memory, and its SASS's tensor-core
    instructions (HGMMA: Hopper's warpgroup MMA; HMMA: the older path). Run with
    TRITON_INTERPRET unset. config: (BLOCK_M, BLOCK_N, warps, stages)."""
    import re

    from triton.compiler.compiler import ASTSource

    from attn_dse.gpu.harness import sm90_build
    fn = {"dkdv": _dkdv, "dq": _dq}[kernel]
    floats, ints = {"sm_scale"}, {"n_heads", "n_kv_heads", "seq_q", "seq_k"}
    sig = {}
    for name in fn.arg_names:
        if name in floats:
            sig[name] = "fp32"
        elif name in ints or name.startswith("stride"):
            sig[name] = "i32"
        elif name[0].isupper() and not name.isupper() or name in ("Q", "K", "V", "DO", "DQ", "DK", "DV"):
            sig[name] = "*fp32" if name in ("Lse", "Delta", "DQacc") else "*bf16"
        else:
            sig[name] = "constexpr"
    aligned = [n for n, t in sig.items() if t.startswith("*") or n.startswith("stride")]  # as a launch specializes
    attrs = {(fn.arg_names.index(n),): [["tt.divisibility", 16]] for n in aligned}
    m, n, warps, stages = config
    src = ASTSource(fn=fn, signature=sig, attrs=attrs,
                    constexprs=dict(HEAD_DIM=D, BLOCK_M=m, BLOCK_N=n, CAUSAL=causal,
                                    **({"ATOMIC_DQ": atomic_dq} if kernel == "dkdv" else {})))
    built = sm90_build(src, warps, stages)
    sass = built.pop("sass")
    return {**built, "hgmma": len(re.findall(r"\bHGMMA", sass)), "hmma": len(re.findall(r"\bHMMA", sass))}


# ---------------------------------------------------------------- check and bench (GPU)
CHECK_SHAPES = [(2, 1000, 1000, 8, 2, 128, True), (1, 1100, 1100, 8, 1, 128, False), (3, 515, 515, 16, 4, 64, True),
                (1, 777, 777, 4, 4, 64, False), (1, 300, 701, 8, 2, 128, True), (2, 1024, 1024, 8, 8, 128, True)]


def check_shape(rec, shape: tuple, config=None, grads_only: bool = False, kernel: str = "auto") -> None:
    """One shape (B, Sq, Sk, Hq, Hkv, D, causal): outputs poisoned with NaN, O and dQ/dK/dV
    against float32 autograd; bound: the harness's bf16 bound, 2e-2 relative (norm)."""
    from attn_dse.gpu.harness import BF16_BOUND, rel_err, rnd
    B, Sq, Sk, Hq, Hkv, D, causal = shape
    q, k, v, do = rnd(B, Sq, Hq, D), rnd(B, Sk, Hkv, D), rnd(B, Sk, Hkv, D), rnd(B, Sq, Hq, D)
    o, lse = forward(q, k, v, causal)
    grads = [torch.full_like(t, float("nan")) for t in (q, k, v)]
    backward(q, k, v, o, lse, do, causal, config, *grads, kernel=kernel)
    ref = reference_grads(q, k, v, do, causal)
    tag = f"backward B{B} Sq{Sq} Sk{Sk} H{Hq}/{Hkv} d{D} causal={causal} {kernel}" + (f" {config}" if config else "")
    if not grads_only:
        rec.check(f"{tag} o", rel_err(o, ref[0]), BF16_BOUND)
    for name, got, want in zip(("dq", "dk", "dv"), grads, ref[1:]):
        rec.check(f"{tag} {name}", rel_err(got, want), BF16_BOUND)


def check(rec, g=None, quick: bool = False) -> None:
    """CHECK_SHAPES at the default tiles: ragged lengths (Sq < Sk once), GQA 1, 4 and 8, d 64
    and 128, as backward(kernel="auto") runs them (on Hopper the Gluon kernel at d 128), and the
    d 128 shapes again through the Triton kernels where the Gluon one ran. quick: the first three
    (the kernels the quick bench runs; fewer compilations)."""
    for shape in CHECK_SHAPES[:3] if quick else CHECK_SHAPES:
        check_shape(rec, shape)
        if not quick and _runs_gluon(shape[5]):
            check_shape(rec, shape, kernel="triton", grads_only=True)


def _runs_gluon(head_dim: int) -> bool:
    """Whether backward(kernel="auto") runs the Gluon kernel for bf16 inputs of this head dim here."""
    from attn_dse.gpu.backward_gluon import refusal
    probe = torch.empty(1, 1, 1, head_dim, device="cuda", dtype=torch.bfloat16)
    return refusal(probe, probe, probe) is None


def train_config(head_dim: int, config=None) -> str:
    """A training row's config as the cost model reads it: the Gluon kernels' as the forward's
    prefill config (prefill_gluon.CONFIG) with the backward kernel named last; our Triton
    kernels' as their tiles (forward and backward tiles, then ",fwd+bwd")."""
    if config is None and _runs_gluon(head_dim):
        from attn_dse.gpu.prefill_gluon import CONFIG, ROWS
        block_n, stages, pingpong = CONFIG
        return str(("gluon", 2 * ROWS, block_n, stages, int(pingpong), "backward_gluon"))
    return str(config or DEFAULT_CONFIG[head_dim]) + ",fwd+bwd"


def shapes(quick: bool = False) -> list[tuple]:
    """(B, S, Hq, Hkv, D, causal): 16k tokens per batch (the GPU full at every length), GQA 4 over
    1k-16k at d 64 and 128; GQA 1 and 8 at 8k; one ragged length."""
    if quick:
        return [(2, 8192, 32, 8, 128, True), (1, 16384, 32, 8, 128, False), (4, 4096, 32, 8, 64, True)]
    out = [(16384 // S, S, 32, 8, D, causal) for D in (64, 128) for S in (1024, 2048, 4096, 8192, 16384)
           for causal in (True, False)]
    out += [(2, 8192, 32, h, 128, c) for h in (32, 4) for c in (True, False)]
    return out + [(5, 3000, 32, 8, 128, True)]


VENDOR_SHAPES = {(2, 8192, 32, 8, 128, True), (1, 16384, 32, 8, 128, False), (1, 16384, 32, 8, 128, True),
                 (2, 8192, 32, 8, 128, False), (4, 4096, 32, 8, 64, True)}  # also through SDPA (the pair first)


def _fastest(candidates, run) -> tuple:
    """(the candidate whose run() times fastest, {candidate: seconds})."""
    from attn_dse.gpu.harness import timed
    times = {}
    for cfg in candidates:
        try:
            times[cfg] = timed(lambda: run(cfg))[0]
        except Exception as exc:  # noqa: BLE001 (a config may not fit in shared memory)
            print(f"backward config {cfg} failed: {type(exc).__name__}: {str(exc)[:120]}", flush=True)
    return min(times, key=times.get), times


def tune(D: int = 128) -> dict:
    """{causal: config}: for 8k causal and 16k non-causal, the fastest backward over TUNE_DKDV
    (dQ tiles at their default), then over TUNE_DQ with that dK/dV tile and the single pass
    over TUNE_SINGLE."""
    from attn_dse.gpu.harness import rnd
    best = {}
    for B, S, causal in TUNE_SHAPES:
        q, k, v, do = rnd(B, S, 32, D), rnd(B, S, 8, D), rnd(B, S, 8, D), rnd(B, S, 32, D)
        o, lse = forward(q, k, v, causal)
        run = lambda cfg: backward(q, k, v, o, lse, do, causal, cfg)  # noqa: E731
        (dkdv, _), first = _fastest([(c, DEFAULT_CONFIG[D][1]) for c in TUNE_DKDV], run)
        best[causal], second = _fastest([(dkdv, c) for c in TUNE_DQ] + [(c, None) for c in TUNE_SINGLE], run)
        flops = 2 * train_flops(B, S, S, 32, D, causal) / 3  # the backward's four matmuls
        print(f"tune backward d{D} causal={causal} S{S}: " +
              ", ".join(f"{c}: {flops / t / 1e12:.0f} TF/s" for c, t in {**first, **second}.items()), flush=True)
        del q, k, v, do, o, lse
    return best


def _row(rec, impl, shape, config, step, fwd, bwd=None):
    """One training-step row (phase train: the cost model's prefill family with its backward),
    forward and backward times beside the step's. The config (forward and backward tiles, then
    ",fwd+bwd") is not one tile tuple, so the model pins no forward tile from it."""
    B, S, Hq, Hkv, D, causal = shape
    from attn_dse.gpu.vendor import attention_flops, dense_pairs
    med, p20, p80 = step
    rec.add(implementation=impl, family="prefill", variant="gqa", phase="train", batch=B, seq=S, context=S,
            n_heads=Hq, n_kv_heads=Hkv, head_dim=D, causal=causal, window="", top_k="", block="", dtype="bf16",
            config=config, n_split=1 if impl == "triton" else "", median_s=med, p20_s=p20, p80_s=p80,
            flops=train_flops(B, S, S, Hq, D, causal), kv_bytes=2 * B * S * Hkv * D * 2)
    fwd_flops = attention_flops(B, Hq, dense_pairs(S, causal), D)
    bwd = bwd if bwd is not None else med - fwd  # vendors: the step less the forward
    rec.rows[-1].update(fwd_s=fwd, bwd_s=bwd, bwd_tflop_per_s=2 * fwd_flops / bwd / 1e12, shape=shape)


def _vendor_rows(rec, impl, B, S, Hq, Hkv, D, causal) -> None:
    """SDPA forward and forward + backward through one backend (enable_gqa, else K/V repeated)."""
    from torch.nn.attention import sdpa_kernel

    from attn_dse.gpu.harness import rnd, timed
    from attn_dse.gpu.vendor import _sdpa_backend, sdpa
    with sdpa_kernel([_sdpa_backend(impl)]):
        q, k, v, do = rnd(B, Hq, S, D), rnd(B, Hkv, S, D), rnd(B, Hkv, S, D), rnd(B, Hq, S, D)
        for mode in ("enable_gqa", "repeat_kv"):
            kk, vv = (k, v) if mode == "enable_gqa" or Hq == Hkv else \
                (k.repeat_interleave(Hq // Hkv, 1), v.repeat_interleave(Hq // Hkv, 1))
            leaves = [t.detach().requires_grad_() for t in (q, kk, vv)]
            gqa = mode == "enable_gqa" and Hq != Hkv

            def step():
                for t in leaves:
                    t.grad = None
                sdpa(*leaves, causal, gqa).backward(do)
            try:  # the forward as training runs it (inputs requiring grad: it keeps the log-sum-exp)
                fwd = timed(lambda: sdpa(*leaves, causal, gqa))[0]
                t = timed(step)
            except RuntimeError as exc:
                print(f"sdpa-{impl} {mode} B{B} S{S} H{Hq}/{Hkv} d{D}: {str(exc).splitlines()[0][:160]}", flush=True)
                continue
            h = Hkv if mode == "enable_gqa" else Hq
            cfg = f"sdpa-{impl}" if Hq == Hkv else f"sdpa-{impl},{mode}"
            _row(rec, impl, (B, S, Hq, h, D, causal), cfg + ",fwd+bwd", t, fwd)
            rec.rows[-1]["shape"] = (B, S, Hq, Hkv, D, causal)  # as asked (K/V may have been repeated)
            return
        print(f"skip sdpa-{impl} B{B} S{S} H{Hq}/{Hkv} d{D} causal={causal}: no mode runs", flush=True)


def bench(rec, quick: bool = False, kernel: str = "auto") -> None:
    """Our forward + backward (and each alone) over `shapes`, as backward(kernel=...) runs them
    (triton: its d 128 tiles tuned first, unless quick); SDPA cuDNN and flash on VENDOR_SHAPES."""
    from attn_dse.gpu.harness import rnd, timed
    best = tune() if kernel == "triton" and not quick else {}
    for causal, cfg in list(best.items()):  # what is timed is checked: the tuned tiles, a ragged shape
        check_shape(rec, (2, 1000, 1000, 8, 2, 128, causal), cfg, grads_only=True)
        if not all(c["ok"] for c in rec.checks[-3:]):
            print(f"tuned backward {cfg} failed its check: the defaults are timed", flush=True)
            del best[causal]
    for B, S, Hq, Hkv, D, causal in shapes(quick):
        q, k, v, do = rnd(B, S, Hq, D), rnd(B, S, Hkv, D), rnd(B, S, Hkv, D), rnd(B, S, Hq, D)
        cfg = best.get(causal) if D == 128 else None
        kern = "triton" if cfg else kernel
        o, lse = forward(q, k, v, causal)
        fwd = timed(lambda: forward(q, k, v, causal))[0]
        bwd = timed(lambda: backward(q, k, v, o, lse, do, causal, cfg, kernel=kern))[0]
        step = timed(lambda: backward(q, k, v, *forward(q, k, v, causal), do, causal, cfg, kernel=kern))
        label = train_config(D, cfg if kern == "auto" else cfg or DEFAULT_CONFIG[D])
        _row(rec, "triton", (B, S, Hq, Hkv, D, causal), label, step, fwd, bwd)
        del q, k, v, do, o, lse
        torch.cuda.empty_cache()
        if (B, S, Hq, Hkv, D, causal) in VENDOR_SHAPES:
            for impl in ("cudnn", "flash"):
                try:
                    _vendor_rows(rec, impl, B, S, Hq, Hkv, D, causal)
                except (RuntimeError, ImportError, AttributeError) as exc:
                    print(f"skip sdpa-{impl}: {str(exc).splitlines()[0][:160]}", flush=True)
                torch.cuda.empty_cache()


EXTRA = ["fwd_s", "bwd_s", "bwd_tflop_per_s"]


def table(rows) -> str:
    """Per shape: each implementation's step and backward TFLOP/s, and ours against the best vendor."""
    head = ("shape", "impl", "fwd+bwd ms", "TF/s", "bwd ms", "bwd TF/s", "vs best")
    lines = ["{:34s} {:7s} {:>10s} {:>6s} {:>8s} {:>8s} {:>7s}".format(*head)]
    for r in rows:
        vendors = [x["median_s"] for x in rows if x["implementation"] != "triton" and x["shape"] == r["shape"]]
        ratio = f"{min(vendors) / r['median_s']:.2f}x" if vendors and r["implementation"] == "triton" else ""
        shape = f"B{r['batch']} S{r['seq']} H{r['n_heads']}/{r['n_kv_heads']} d{r['head_dim']} " + \
                ("causal" if r["causal"] else "full")
        lines.append(f"{shape:34s} {r['implementation']:7s} {r['median_s'] * 1e3:10.3f} {r['tflop_per_s']:6.0f} "
                     f"{r['bwd_s'] * 1e3:8.3f} {r['bwd_tflop_per_s']:8.0f} {ratio:>7s}")
    return "\n".join(lines)


def write(rec, out: Path) -> None:
    from attn_dse.gpu.harness import FIELDS
    rec.write(out, "backward", FIELDS + EXTRA)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="directory for backward-measurements.csv")
    ap.add_argument("--quick", action="store_true", help="three shapes, no tuning (under a minute)")
    ap.add_argument("--kernel", choices=("auto", "triton"), default="auto",
                    help="auto: as backward() picks (the Gluon kernel at d 128 on Hopper); triton: our "
                         "Triton kernels everywhere, their d 128 tiles tuned first unless --quick")
    args = ap.parse_args(argv)
    from attn_dse.gpu.harness import Recorder
    start = time.time()
    torch.manual_seed(0)
    rec = Recorder(args.out)
    check(rec, quick=args.quick)
    if all(c["ok"] for c in rec.checks):
        bench(rec, args.quick, args.kernel)
    ok = all(c["ok"] for c in rec.checks)
    write(rec, args.out)
    print(table(rec.rows), flush=True)
    print(f"{len(rec.rows)} rows, {sum(c['ok'] for c in rec.checks)}/{len(rec.checks)} checks ok, "
          f"{time.time() - start:.0f} s", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
