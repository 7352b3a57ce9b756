"""Absorbed MLA decode in Triton: the latent (d_c = 512) plus its RoPE key (64) is read once per
token for all heads of a head block; V is the latent itself. Split-KV plus the shared combine.

q_nope [B, H, 512] (already multiplied by W_UK), q_pe [B, H, 64], kv [B, L, 576] (bf16);
output [B, H, 512] in the latent (W_UV is applied after). Score = q_nope.c + q_pe.k_pe.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from attn_dse.validate.kernels.softmax import finish, online_softmax_step

from attn_dse.validate.kernels.decode import combine


@triton.jit
def _mla_split(QN, QP, KV, Lens, Part, Lse, stride_qnb, stride_qnh, stride_qpb, stride_qph, stride_kvb, stride_kvn,
               n_heads, n_splits, split_len, sm_scale,
               D_LAT: tl.constexpr, D_ROPE: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr,
               V_SPLIT: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)  # int64: batch offsets pass 2**31 elements
    hb = tl.program_id(1) // V_SPLIT
    vs = tl.program_id(1) % V_SPLIT  # which slice of the value (latent) columns this program owns
    split = tl.program_id(2)
    D_V: tl.constexpr = D_LAT // V_SPLIT
    offs_v = vs * D_V + tl.arange(0, D_V)
    heads = hb * BLOCK_H + tl.arange(0, BLOCK_H)
    hmask = heads < n_heads
    offs_c = tl.arange(0, D_LAT)
    offs_r = tl.arange(0, D_ROPE)
    qn = tl.load(QN + b * stride_qnb + heads[:, None] * stride_qnh + offs_c[None, :], mask=hmask[:, None], other=0.0)
    qp = tl.load(QP + b * stride_qpb + heads[:, None] * stride_qph + offs_r[None, :], mask=hmask[:, None], other=0.0)
    length = tl.load(Lens + b)
    start = split * split_len
    end = tl.minimum(start + split_len, length)
    KV += b * stride_kvb
    m_i = tl.full([BLOCK_H], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_H], tl.float32)
    acc = tl.zeros([BLOCK_H, D_V], tl.float32)
    qk_scale = sm_scale * 1.4426950408889634
    for n0 in range(start, end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        in_range = offs_n < end
        c = tl.load(KV + offs_n[:, None] * stride_kvn + offs_c[None, :], mask=in_range[:, None], other=0.0)
        kp = tl.load(KV + offs_n[:, None] * stride_kvn + D_LAT + offs_r[None, :], mask=in_range[:, None], other=0.0)
        qk = (tl.dot(qn, tl.trans(c)) + tl.dot(qp, tl.trans(kp))) * qk_scale
        qk = tl.where(in_range[None, :], qk, float("-inf"))
        if V_SPLIT == 1:
            cv = c  # the latent tile is V too
        else:
            cv = tl.load(KV + offs_n[:, None] * stride_kvn + offs_v[None, :], mask=in_range[:, None], other=0.0)
        acc, l_i, m_i = online_softmax_step(acc, l_i, m_i, qk, cv)
    out, lse = finish(acc, l_i, m_i)
    base = (b * n_heads + heads) * n_splits + split
    tl.store(Part + base[:, None] * D_LAT + offs_v[None, :], out, mask=hmask[:, None])
    tl.store(Lse + base, lse, mask=hmask)  # every value slice writes the same lse


def mla_decode(q_nope: torch.Tensor, q_pe: torch.Tensor, kv: torch.Tensor, seq_lens: torch.Tensor,
               n_splits: int | None = None, block_h: int = 64, block_n: int = 32, num_warps: int = 8,
               num_stages: int = 2, sm_scale: float | None = None, out: torch.Tensor | None = None,
               v_split: int = 1) -> torch.Tensor:
    """v_split = 2 gives each value half of the latent its own program (both compute the scores):
    half the fp32 accumulator per program, at the cost of computing QK^T twice."""
    B, H, D = q_nope.shape
    R = q_pe.shape[-1]
    L = kv.shape[1]
    block_h = min(block_h, max(16, triton.next_power_of_2(H)))
    head_blocks = triton.cdiv(H, block_h)
    if n_splits is None:
        n_splits = max(1, min(math.ceil(2 * 132 / (B * head_blocks)), L // (4 * block_n), 64))
    split_len = triton.cdiv(triton.cdiv(L, n_splits), block_n) * block_n
    scale = sm_scale or 1.0 / math.sqrt(192)  # DeepSeek's softmax scale uses d_nope + d_rope = 192
    part = torch.empty(B, 1, H, n_splits, D, device=kv.device, dtype=torch.float32)
    lse = torch.empty(B, 1, H, n_splits, device=kv.device, dtype=torch.float32)
    _mla_split[(B, head_blocks * v_split, n_splits)](q_nope, q_pe, kv, seq_lens, part, lse, q_nope.stride(0), q_nope.stride(1),
                                           q_pe.stride(0), q_pe.stride(1), kv.stride(0), kv.stride(1), H, n_splits,
                                           split_len, scale, D_LAT=D, D_ROPE=R, BLOCK_H=block_h, BLOCK_N=block_n,
                                           V_SPLIT=v_split, num_warps=num_warps, num_stages=num_stages)
    o = torch.empty(B, 1, H, D, device=kv.device, dtype=kv.dtype) if out is None else out
    return combine(part, lse, o)[:, 0]
