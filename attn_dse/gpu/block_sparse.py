"""Block-sparse attention over given top-k key blocks (MoBA/NSA selection style), in Triton.

Selections come as block_idx [B, Hkv, n_query_blocks, top_k] (key-block ids, -1 = unused),
shared by the query heads of a KV group. Blocks are BLOCK keys wide, and in prefill query
blocks are BLOCK rows too; only the selected tiles are loaded and computed, so time scales with
top_k. Decode: one query block; the selected list is split across programs and merged by the
split-KV combine kernel.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from attn_dse.gpu.softmax import finish, online_softmax_step, start_state

from attn_dse.gpu.decode import kv_head_program, run_splits, store_partial

from attn_dse.gpu.harness import BF16_BOUND, DEV, Recorder, rel_err, rnd, sm_count, timed
from attn_dse.gpu.prefill import prefill
from attn_dse.gpu.reference import block_sparse_ref


@triton.jit
def _sparse_prefill(Q, K, V, O, Idx, stride_qb, stride_qs, stride_qh, stride_kb, stride_ks, stride_kh,
                    stride_vb, stride_vs, stride_vh, stride_ob, stride_os, stride_oh,
                    stride_ib, stride_ih, stride_iq, n_kv_heads, group, seq, top_k, sm_scale,
                    HEAD_DIM: tl.constexpr, BLOCK: tl.constexpr, HEADS: tl.constexpr, TOPK_P2: tl.constexpr,
                    CAUSAL: tl.constexpr):
    """One program: query block qb of HEADS query heads of one KV group, which share the
    selection, stacked into HEADS * BLOCK rows (row r is head r // BLOCK, position r % BLOCK)."""
    qb = tl.program_id(0)
    pid = tl.program_id(1)
    heads_per_group = group // HEADS
    b = (pid // (n_kv_heads * heads_per_group)).to(tl.int64)  # int64: batch offsets pass 2**31 elements
    kvh = (pid // heads_per_group) % n_kv_heads
    rows = tl.arange(0, HEADS * BLOCK)
    head = kvh * group + (pid % heads_per_group) * HEADS + rows // BLOCK
    pos = qb * BLOCK + rows % BLOCK
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(Q + b * stride_qb + head[:, None] * stride_qh + pos[:, None] * stride_qs + offs_d[None, :],
                mask=pos[:, None] < seq, other=0.0)
    K += b * stride_kb + kvh * stride_kh
    V += b * stride_vb + kvh * stride_vh
    Idx += b * stride_ib + kvh * stride_ih + qb * stride_iq
    sel = tl.load(Idx + tl.arange(0, TOPK_P2), mask=tl.arange(0, TOPK_P2) < top_k, other=-1)
    count = tl.sum((sel >= 0).to(tl.int32), 0)  # selected blocks come first, -1 fills the rest
    acc, l_i, m_i = start_state(HEADS * BLOCK, HEAD_DIM)
    qk_scale = sm_scale * 1.4426950408889634
    for j in range(count):
        offs_n = tl.load(Idx + j) * BLOCK + tl.arange(0, BLOCK)
        k = tl.load(K + offs_n[None, :] * stride_ks + offs_d[:, None], mask=offs_n[None, :] < seq, other=0.0)
        qk = tl.dot(q, k) * qk_scale
        keep = offs_n[None, :] < seq
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= pos[:, None])
        qk = tl.where(keep, qk, float("-inf"))
        v = tl.load(V + offs_n[:, None] * stride_vs + offs_d[None, :], mask=offs_n[:, None] < seq, other=0.0)
        acc, l_i, m_i = online_softmax_step(acc, l_i, m_i, qk, v)
    out, _ = finish(acc, l_i, m_i)
    tl.store(O + b * stride_ob + head[:, None] * stride_oh + pos[:, None] * stride_os + offs_d[None, :],
             out.to(O.dtype.element_ty), mask=pos[:, None] < seq)


@triton.jit
def _sparse_decode(Q, K, V, Lens, Idx, Part, Lse, stride_qb, stride_qs, stride_qh, stride_kb, stride_kn, stride_kh,
                   stride_vb, stride_vn, stride_vh, stride_ib, stride_ih, group, seq_q, top_k, n_splits, per_split,
                   sm_scale, HEAD_DIM: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK: tl.constexpr):
    b, kvh, q, tok, head, valid, length, last_visible, K, V = kv_head_program(
        Q, K, V, Lens, stride_qb, stride_qs, stride_qh, stride_kb, stride_kh, stride_vb, stride_vh, group, seq_q,
        HEAD_DIM, BLOCK_H)
    split = tl.program_id(2)
    offs_d = tl.arange(0, HEAD_DIM)
    Idx += b * stride_ib + kvh * stride_ih
    acc, l_i, m_i = start_state(BLOCK_H, HEAD_DIM)
    qk_scale = sm_scale * 1.4426950408889634
    for j in range(split * per_split, tl.minimum((split + 1) * per_split, top_k)):
        kb = tl.load(Idx + j)
        if kb >= 0:
            offs_n = kb * BLOCK + tl.arange(0, BLOCK)
            k = tl.load(K + offs_n[None, :] * stride_kn + offs_d[:, None], mask=offs_n[None, :] < length, other=0.0)
            qk = tl.dot(q, k) * qk_scale
            qk = tl.where((offs_n[None, :] < length) & (offs_n[None, :] <= last_visible[:, None]), qk, float("-inf"))
            v = tl.load(V + offs_n[:, None] * stride_vn + offs_d[None, :], mask=offs_n[:, None] < length, other=0.0)
            acc, l_i, m_i = online_softmax_step(acc, l_i, m_i, qk, v)
    out, lse = finish(acc, l_i, m_i)
    store_partial(Part, Lse, out, lse, b, tok, head, valid, group, seq_q, split, n_splits, HEAD_DIM)


def block_sparse_prefill(q, k, v, block_idx, block: int = 64, causal: bool = True, heads: int | None = None,
                         num_warps: int | None = None, num_stages: int = 2, out=None):
    """block_idx [B, Hkv, n_query_blocks, top_k]: each query block's selected key blocks first,
    then -1. `heads` query heads of a group share one program (default: 2 where the group
    allows, giving 128-row tiles)."""
    B, S, Hq, D = q.shape
    Hkv = k.shape[2]
    group = Hq // Hkv
    heads = heads or (2 if group % 2 == 0 else 1)
    if group % heads:
        raise ValueError(f"heads={heads} must divide the group of {group} query heads per KV head")
    num_warps = num_warps or (8 if heads * block >= 128 else 4)
    o = torch.empty_like(q) if out is None else out
    top_k = block_idx.shape[3]
    _sparse_prefill[(triton.cdiv(S, block), B * Hkv * (group // heads))](
        q, k, v, o, block_idx, q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2), o.stride(0), o.stride(1), o.stride(2),
        block_idx.stride(0), block_idx.stride(1), block_idx.stride(2), Hkv, group, S, top_k,
        1.0 / math.sqrt(D), HEAD_DIM=D, BLOCK=block, HEADS=heads, TOPK_P2=triton.next_power_of_2(top_k),
        CAUSAL=causal, num_warps=num_warps, num_stages=num_stages)
    return o


def decode_splits(batch: int, kv_heads: int, top_k: int, sms: int) -> int:
    """Splits of the selected blocks that give every SM about two programs."""
    return max(1, min(top_k, math.ceil(2 * sms / (batch * kv_heads))))


def block_sparse_decode(q, k, v, seq_lens, block_idx, block: int = 64, n_splits: int | None = None,
                        num_warps: int = 4, out=None):
    """block_idx [B, Hkv, top_k] selected key blocks for the new tokens of each KV group."""
    B, Sq, Hq, D = q.shape
    Hkv = k.shape[2]
    top_k = block_idx.shape[-1]
    n_splits = n_splits or decode_splits(B, Hkv, top_k, sm_count(q.device))
    per_split = triton.cdiv(top_k, n_splits)
    group = Hq // Hkv
    return run_splits(lambda part, lse: _sparse_decode[(B, Hkv, n_splits)](
        q, k, v, seq_lens, block_idx, part, lse, q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1),
        k.stride(2), v.stride(0), v.stride(1), v.stride(2), block_idx.stride(0), block_idx.stride(1), group, Sq, top_k,
        n_splits, per_split, 1.0 / math.sqrt(D), HEAD_DIM=D, BLOCK_H=max(16, triton.next_power_of_2(group * Sq)),
        BLOCK=block, num_warps=num_warps), (B, Sq, Hq, D), n_splits, q, out)


def causal_topk(B: int, Hkv: int, seq: int, block: int, top_k: int, generator=None, device="cpu",
                fraction: float | None = None) -> torch.Tensor:
    """A random MoBA-style causal selection: each query block takes its own block plus top_k - 1
    random earlier ones (sorted; -1 where fewer exist). With `fraction`, query block qb takes
    round(fraction * (qb + 1)) blocks instead (at least its own): that share of the pairs it sees."""
    nb = triton.cdiv(seq, block)
    width = top_k if fraction is None else max(1, round(fraction * nb))
    idx = torch.full((B, Hkv, nb, width), -1, dtype=torch.int32)
    for qb in range(nb):
        want = top_k if fraction is None else max(1, round(fraction * (qb + 1)))
        for bb in range(B):
            for h in range(Hkv):
                earlier = torch.randperm(qb, generator=generator)[: want - 1] if qb else torch.empty(0, dtype=torch.long)
                chosen = torch.cat([earlier.sort().values, torch.tensor([qb])])
                idx[bb, h, qb, : len(chosen)] = chosen.to(torch.int32)
    return idx.to(device)


# ---------------------------------------------------------------- check and bench
FAMILY = "block_sparse"  # the cost model's family these measurements calibrate


def check(rec: Recorder, g: torch.Generator) -> None:
    """Outputs poisoned with NaN, then compared with the float32 reference over ragged shapes."""
    for (B, S, Hq, Hkv, D, topk) in [(2, 1000, 8, 2, 128, 4), (1, 2048, 4, 1, 64, 8)]:
        q, k, v = rnd(B, S, Hq, D), rnd(B, S, Hkv, D), rnd(B, S, Hkv, D)
        idx = causal_topk(B, Hkv, S, 64, topk, g, DEV)
        for heads, warps, fraction in ((1, 4, None), (2, 8, None), (2, 4, None), (2, 8, 0.25)):
            sel = idx if fraction is None else causal_topk(B, Hkv, S, 64, 0, g, DEV, fraction=fraction)
            out = torch.full_like(q, float("nan"))
            block_sparse_prefill(q, k, v, sel, heads=heads, num_warps=warps, out=out)
            rec.check(f"block_sparse prefill B{B} S{S} k{topk} heads={heads} warps={warps} fraction={fraction}",
                      rel_err(out, block_sparse_ref(q, k, v, sel.long(), 64, True)), BF16_BOUND)
        qd = rnd(B, 1, Hq, D)
        idx_d = idx[:, :, -1].contiguous()
        lens = torch.full((B,), S, device=DEV, dtype=torch.int32)
        out = torch.full_like(qd, float("nan"))
        block_sparse_decode(qd, k, v, lens, idx_d, out=out)
        rec.check(f"block_sparse decode B{B} S{S} k{topk}",
                  rel_err(out, block_sparse_ref(qd, k, v, idx_d[:, :, None].long(), 64, True)), BF16_BOUND)


def bench(rec: Recorder) -> None:
    g = torch.Generator().manual_seed(0)
    S, B, Hq, Hkv, D = 16384, 1, 32, 8, 128
    q, k, v = rnd(B, S, Hq, D), rnd(B, S, Hkv, D), rnd(B, S, Hkv, D)
    nb = S // 64
    idx = causal_topk(B, Hkv, S, 64, 64, g, DEV)
    tune = {}
    for heads, w, st in [(2, 8, 2), (2, 8, 3), (2, 4, 3), (1, 4, 2), (1, 4, 3)]:
        tune[(heads, w, st)] = timed(lambda: block_sparse_prefill(q, k, v, idx, heads=heads, num_warps=w,
                                                                     num_stages=st))[0]
    heads, warps, stages = cfg = min(tune, key=tune.get)
    print("tune block_sparse (heads, warps, stages): " + ", ".join(f"{c}:{t * 1e6:.0f}us" for c, t in tune.items()),
          flush=True)

    def sparse(idx, causal=True):
        return timed(lambda: block_sparse_prefill(q, k, v, idx, causal=causal, heads=heads, num_warps=warps,
                                                     num_stages=stages))

    for top_k in (16, 32, 64, 128, nb):
        idx = causal_topk(B, Hkv, S, 64, top_k, g, DEV)
        med, p20, p80 = sparse(idx)
        rec.add(family="block_sparse", variant="moba", phase="prefill", batch=B, seq=S, context=S, n_heads=Hq,
                n_kv_heads=Hkv, head_dim=D, causal=True, window="", top_k=top_k, block=64, dtype="bf16",
                config=str((64 * heads, 64, warps, stages)), n_split=1, median_s=med, p20_s=p20, p80_s=p80,
                kv_bytes=2 * B * S * Hkv * D * 2)
    dense_c, _, _ = timed(lambda: prefill(q, k, v, True))
    print(f"dense causal prefill for comparison: {dense_c * 1e6:.1f} us", flush=True)
    # causal selection of a fixed share of the blocks each query block sees: time should follow the share
    for fraction in (0.125, 0.25, 0.5):
        idx = causal_topk(B, Hkv, S, 64, 0, g, DEV, fraction=fraction)
        med, p20, p80 = sparse(idx)
        share = float((idx >= 0).sum()) / (B * Hkv * nb * (nb + 1) / 2)
        rec.scaling.append({**rec.prov, "selection": "causal, share of visible blocks", "fraction": fraction,
                            "block_share": share, "median_s": med, "dense_s": dense_c, "ratio": med / dense_c})
        print(f"causal block-sparse {100 * share:.1f}% of visible blocks: {med * 1e6:.1f} us = "
              f"{100 * med / dense_c:.1f}% of dense causal ({dense_c * 1e6:.1f} us)", flush=True)
    # non-causal selection (MoBA over a bidirectional context): top_k / nb is exactly the pair share
    dense_nc, _, _ = timed(lambda: prefill(q, k, v, False))
    for top_k in (32, 64, 128):
        idx = torch.stack([torch.randperm(nb, generator=g)[:top_k].sort().values for _ in range(B * Hkv * nb)])
        idx = idx.view(B, Hkv, nb, top_k).to(DEV, torch.int32)
        med, p20, p80 = sparse(idx, causal=False)
        rec.scaling.append({**rec.prov, "selection": "non-causal, top_k of all blocks", "fraction": top_k / nb,
                            "block_share": top_k / nb, "median_s": med, "dense_s": dense_nc, "ratio": med / dense_nc})
        print(f"non-causal block-sparse {top_k}/{nb} blocks: {med * 1e6:.1f} us = {100 * med / dense_nc:.1f}% of "
              f"dense non-causal ({dense_nc * 1e6:.1f} us)", flush=True)
        rec.add(family="block_sparse", variant="moba", phase="prefill", batch=B, seq=S, context=S, n_heads=Hq,
                n_kv_heads=Hkv, head_dim=D, causal=False, window="", top_k=top_k, block=64, dtype="bf16",
                config=str((64 * heads, 64, warps, stages)), n_split=1, median_s=med, p20_s=p20, p80_s=p80,
                kv_bytes=2 * B * S * Hkv * D * 2)
    for Bd, L in ((1, 32768), (16, 32768)):
        kd, vd = rnd(Bd, L, Hkv, D), rnd(Bd, L, Hkv, D)
        qd = rnd(Bd, 1, Hq, D)
        lens = torch.full((Bd,), L, device=DEV, dtype=torch.int32)
        for top_k in (8, 32, 128):
            idx = torch.stack([torch.randperm(L // 64, generator=g)[:top_k].sort().values for _ in range(Bd * Hkv)])
            idx = idx.view(Bd, Hkv, top_k).to(DEV, torch.int32)
            med, p20, p80 = timed(lambda: block_sparse_decode(qd, kd, vd, lens, idx))
            rec.add(family="block_sparse", variant="moba", phase="decode", batch=Bd, seq=1, context=L - 1, n_heads=Hq,
                    n_kv_heads=Hkv, head_dim=D, causal=True, window="", top_k=top_k, block=64, dtype="bf16",
                    config="(64, 4)", n_split=decode_splits(Bd, Hkv, top_k, sm_count()), median_s=med,
                    p20_s=p20, p80_s=p80, kv_bytes=2 * Bd * top_k * 64 * Hkv * D * 2)
