"""Split-KV decode (flash-decoding) with a combine kernel, in Triton.

One program per (batch entry, KV head, split): the group*seq_q query rows that share a KV
head are packed into one row tile (GQA packing: K/V loaded once per group), the split's slice
of the keys is streamed, and an fp32 partial output plus its log2-sum-exp is written; the
combine kernel merges the splits. seq_q >= 1 new tokens (speculative decoding) attend causally
among themselves; every batch entry has its own length (seq_lens, new tokens included).
Layout: q [B, Sq, Hq, D]; k/v cache [B, L, Hkv, D].
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from attn_dse.gpu.softmax import finish, online_softmax_step, start_state

from attn_dse.gpu.harness import BF16_BOUND, DEV, Recorder, rel_err, rnd, sm_count, timed
from attn_dse.gpu.reference import attention_ref


@triton.jit
def kv_head_program(Q, K, V, Lens, stride_qb, stride_qs, stride_qh, stride_kb, stride_kh, stride_vb, stride_vh,
                    group, seq_q, HEAD_DIM: tl.constexpr, BLOCK_H: tl.constexpr):
    """The start of a program for one (sequence, KV head): grid axes 0 and 1. GQA packing: its
    query rows, row = token * group + head-in-group; its K/V pointers; the sequence's length;
    the last key each row sees (causal among the new tokens)."""
    b = tl.program_id(0).to(tl.int64)  # int64: batch offsets pass 2**31 elements
    kvh = tl.program_id(1)
    rows = tl.arange(0, BLOCK_H)
    tok = rows // group
    head = kvh * group + rows % group
    valid = rows < group * seq_q
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(Q + b * stride_qb + tok[:, None] * stride_qs + head[:, None] * stride_qh + offs_d[None, :],
                mask=valid[:, None], other=0.0)
    length = tl.load(Lens + b)
    K += b * stride_kb + kvh * stride_kh
    V += b * stride_vb + kvh * stride_vh
    return b, kvh, q, tok, head, valid, length, length - seq_q + tok, K, V


@triton.jit
def store_partial(Part, Lse, out, lse, b, tok, head, valid, group, seq_q, split, n_splits, HEAD_DIM: tl.constexpr):
    """A split's output and log2-sum-exp, laid out [B, seq_q, Hq, n_splits, (D)]: fp32 partials,
    or with one split the output itself (see run_splits)."""
    hq = group * tl.num_programs(1)
    base = ((b * seq_q + tok) * hq + head) * n_splits + split
    tl.store(Part + base[:, None] * HEAD_DIM + tl.arange(0, HEAD_DIM)[None, :], out.to(Part.dtype.element_ty),
             mask=valid[:, None])
    tl.store(Lse + base, lse, mask=valid)


@triton.jit
def _decode_split(Q, K, V, Lens, Part, Lse, stride_qb, stride_qs, stride_qh, stride_kb, stride_kn, stride_kh,
                  stride_vb, stride_vn, stride_vh, group, seq_q, n_splits, split_len, sm_scale,
                  HEAD_DIM: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr):
    b, kvh, q, tok, head, valid, length, last_visible, K, V = kv_head_program(
        Q, K, V, Lens, stride_qb, stride_qs, stride_qh, stride_kb, stride_kh, stride_vb, stride_vh, group, seq_q,
        HEAD_DIM, BLOCK_H)
    split = tl.program_id(2)
    offs_d = tl.arange(0, HEAD_DIM)
    start = split * split_len
    end = tl.minimum(start + split_len, length)
    acc, l_i, m_i = start_state(BLOCK_H, HEAD_DIM)
    qk_scale = sm_scale * 1.4426950408889634
    for n0 in range(start, end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        in_range = offs_n < end
        k = tl.load(K + offs_n[None, :] * stride_kn + offs_d[:, None], mask=in_range[None, :], other=0.0)
        qk = tl.dot(q, k) * qk_scale
        keep = in_range[None, :] & (offs_n[None, :] <= last_visible[:, None])
        qk = tl.where(keep, qk, float("-inf"))
        v = tl.load(V + offs_n[:, None] * stride_vn + offs_d[None, :], mask=in_range[:, None], other=0.0)
        acc, l_i, m_i = online_softmax_step(acc, l_i, m_i, qk, v)
    out, lse = finish(acc, l_i, m_i)
    store_partial(Part, Lse, out, lse, b, tok, head, valid, group, seq_q, split, n_splits, HEAD_DIM)


@triton.jit
def _combine(Part, Lse, O, n_splits, stride_ob, stride_os, stride_oh, seq_q, n_heads,
             HEAD_DIM: tl.constexpr, BLOCK_S: tl.constexpr):
    """One output row from its splits, BLOCK_S splits at a time (a [splits, D] fp32 tile in
    registers spilled at 64+ splits and took longer than the attention itself)."""
    row = tl.program_id(0)  # (b, token, head)
    b = row // (seq_q * n_heads)
    t = (row // n_heads) % seq_q
    h = row % n_heads
    offs_s = tl.arange(0, BLOCK_S)
    offs_d = tl.arange(0, HEAD_DIM)
    m = tl.full([BLOCK_S], float("-inf"), tl.float32)
    for s0 in range(0, n_splits, BLOCK_S):
        m = tl.maximum(m, tl.load(Lse + row * n_splits + s0 + offs_s, mask=s0 + offs_s < n_splits,
                                  other=float("-inf")))
    m_all = tl.max(m, 0)
    acc = tl.zeros([HEAD_DIM], tl.float32)
    den = tl.zeros([BLOCK_S], tl.float32)
    for s0 in range(0, n_splits, BLOCK_S):
        in_range = s0 + offs_s < n_splits
        w = tl.math.exp2(tl.load(Lse + row * n_splits + s0 + offs_s, mask=in_range, other=float("-inf")) - m_all)
        den += w
        part = tl.load(Part + (row * n_splits + s0 + offs_s[:, None]) * HEAD_DIM + offs_d[None, :],
                       mask=in_range[:, None], other=0.0)
        acc += tl.sum(part * w[:, None], 0)
    tl.store(O + b * stride_ob + t * stride_os + h * stride_oh + offs_d, (acc / tl.sum(den, 0)).to(O.dtype.element_ty))


def combine(part: torch.Tensor, lse: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Merge split partials [B, Sq, H, S, D] (fp32) with their log2-sum-exps into out [B, Sq, H, D]."""
    B, Sq, H, S, D = part.shape
    _combine[(B * Sq * H,)](part, lse, out, S, out.stride(0), out.stride(1), out.stride(2), Sq, H,
                            HEAD_DIM=D, BLOCK_S=min(16, max(triton.next_power_of_2(S), 2)), num_warps=4)
    return out


def run_splits(launch, shape: tuple, n_splits: int, like: torch.Tensor, out: torch.Tensor | None = None):
    """Allocate where split programs write, launch them (launch(part, lse)) and merge. With one
    split the programs write the output [B, Sq, H, D] directly: no fp32 partials, no combine."""
    B, Sq, H, D = shape
    o = torch.empty(shape, device=like.device, dtype=like.dtype) if out is None else out
    lse = torch.empty(B, Sq, H, n_splits, device=like.device, dtype=torch.float32)
    direct = n_splits == 1 and o.is_contiguous()
    part = o if direct else torch.empty(B, Sq, H, n_splits, D, device=like.device, dtype=torch.float32)
    launch(part, lse)
    return o if direct else combine(part, lse, o)


def choose_splits(batch: int, kv_heads: int, max_len: int, sms: int, block_n: int = 64) -> int:
    """Enough splits to give every SM about two programs, no split shorter than 4 key tiles."""
    want = max(1, math.ceil(2 * sms / (batch * kv_heads)))
    return max(1, min(want, max_len // (4 * block_n), 128))


def decode(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, seq_lens: torch.Tensor, n_splits: int | None = None,
           block_n: int = 64, num_warps: int = 4, num_stages: int = 2, out: torch.Tensor | None = None) -> torch.Tensor:
    """q [B, Sq, Hq, D] against the cache k/v [B, L, Hkv, D] holding seq_lens[b] tokens (new included)."""
    B, Sq, Hq, D = q.shape
    L, Hkv = k.shape[1], k.shape[2]
    group = Hq // Hkv
    n_splits = n_splits or choose_splits(B, Hkv, L, sm_count(q.device), block_n=block_n)
    split_len = triton.cdiv(triton.cdiv(L, n_splits), block_n) * block_n
    block_h = max(16, triton.next_power_of_2(group * Sq))
    return run_splits(lambda part, lse: _decode_split[(B, Hkv, n_splits)](
        q, k, v, seq_lens, part, lse, q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2), group, Sq, n_splits, split_len, 1.0 / math.sqrt(D),
        HEAD_DIM=D, BLOCK_H=block_h, BLOCK_N=block_n, num_warps=num_warps, num_stages=num_stages),
        (B, Sq, Hq, D), n_splits, q, out)


# ---------------------------------------------------------------- check and bench
FAMILY = "decode"  # the cost model's family these measurements calibrate


def check(rec: Recorder, g: torch.Generator) -> None:
    """Outputs poisoned with NaN, then compared with the float32 reference over ragged shapes."""
    for (B, Sq, Hq, Hkv, D, L, splits) in [(3, 1, 32, 8, 128, 3000, 8), (2, 4, 16, 2, 128, 1111, 3),
                                           (4, 1, 8, 8, 64, 515, None), (1, 2, 8, 1, 128, 4097, 16)]:
        q, k, v = rnd(B, Sq, Hq, D), rnd(B, L, Hkv, D), rnd(B, L, Hkv, D)
        lens = torch.randint(max(Sq, L // 3), L + 1, (B,), generator=g).to(DEV, torch.int32)
        out = torch.full_like(q, float("nan"))
        decode(q, k, v, lens, n_splits=splits, out=out)
        rec.check(f"decode B{B} Sq{Sq} H{Hq}/{Hkv} d{D} L{L} splits={splits}",
                  rel_err(out, attention_ref(q, k, v, True, seq_lens=lens)), BF16_BOUND)


def tune_decode(B=64, L=32768, Hq=64, Hkv=8, D=128) -> tuple:
    q, k, v = rnd(B, 1, Hq, D), rnd(B, L, Hkv, D), rnd(B, L, Hkv, D)
    lens = torch.full((B,), L, device=DEV, dtype=torch.int32)
    times = {}
    for block_n in (64, 128):
        for warps in (4, 8):
            for stages in (2, 3, 4):
                cfg = (block_n, warps, stages)
                times[cfg] = timed(lambda: decode(q, k, v, lens, block_n=block_n, num_warps=warps, num_stages=stages))[0]
    kv = 2 * B * L * Hkv * D * 2
    print("tune decode: " + ", ".join(f"{c}:{kv / t / 1e12:.2f}TB/s" for c, t in times.items()), flush=True)
    # configurations within 2% stream equally with every SM busy; the deepest pipeline (K/V
    # bytes in flight) streams most per SM when few programs run (no split-KV at batch 1)
    best = min(times.values())
    return max((c for c, t in times.items() if t <= 1.02 * best), key=lambda c: (c[0] * c[2], -times[c]))



def measure_decode(rec: Recorder, cfg: tuple) -> None:
    block_n, warps, stages = cfg
    shapes = [(b, 1, 64, 8, 128, L, None) for b in (1, 4, 16, 64, 128) for L in (1024, 4096, 16384, 32768, 65536)]
    shapes += [(b, 1, 32, 32, 128, L, None) for b in (1, 16) for L in (4096, 32768)]
    shapes += [(b, 1, 32, 1, 128, 32768, None) for b in (1, 64)]
    shapes += [(b, 4, 64, 8, 128, 32768, None) for b in (1, 16)]
    shapes += [(b, 1, 64, 8, 128, 32768, 1) for b in (1, 4, 16)]  # no split-KV
    for B, Sq, Hq, Hkv, D, L, splits in shapes:
        q, k, v = rnd(B, Sq, Hq, D), rnd(B, L, Hkv, D), rnd(B, L, Hkv, D)
        lens = torch.full((B,), L, device=DEV, dtype=torch.int32)
        n_split = splits or choose_splits(B, Hkv, L, sm_count(), block_n=block_n)
        med, p20, p80 = timed(lambda: decode(q, k, v, lens, n_splits=n_split, block_n=block_n, num_warps=warps,
                                             num_stages=stages))
        variant = "mha" if Hq == Hkv else ("mqa" if Hkv == 1 else "gqa")
        rec.add(family="decode", variant=variant, phase="decode", batch=B, seq=Sq, context=L - Sq, n_heads=Hq,
                n_kv_heads=Hkv, head_dim=D, causal=True, window="", top_k="", block="", dtype="bf16",
                config=str(cfg), n_split=n_split, median_s=med, p20_s=p20, p80_s=p80,
                kv_bytes=2 * B * L * Hkv * D * 2)
        del q, k, v




def bench(rec: Recorder) -> None:
    measure_decode(rec, tune_decode())
