"""Op-list building blocks shared by the variants: projections and softmax attention."""
from __future__ import annotations

import dataclasses
from typing import Any

from attn_dse.workloads.ops import Op, Tensor
from attn_dse.workloads.shape import Shape

# Non-matmul work per attended score in online softmax: scale, running max, subtract, exp,
# row sum (FlashAttention-3 section 3.2 counts ~4-5 such ops per score, one of them an exp).
SOFTMAX_VECTOR_OPS = 4.0


def linear(name: str, s: Shape, d_in: Any, d_out: Any, x: str, y: str, *, tokens: Any = None,
           group: str = "proj", weight: str | None = None, x_bytes: Any = None) -> Op:
    """y = x @ W for `tokens` rows (default: the batch's query tokens). x_bytes: the size of
    the stored input when the matmul reads only part of it (e.g. the latent without RoPE)."""
    b = s.bytes_per_element
    tokens = s.tokens if tokens is None else tokens
    x_bytes = tokens * d_in * b if x_bytes is None else x_bytes
    return Op(name, "matmul", flops=2 * tokens * d_in * d_out,
              reads=(Tensor(x, x_bytes), Tensor(weight or f"W_{name}", d_in * d_out * b, "weight")),
              writes=(Tensor(y, tokens * d_out * b),), group=group)


def qkv_out_projections(s: Shape, d_model, h_q, h_kv, d_qk, d_v) -> tuple[list[Op], list[Op]]:
    """Standard Q/K/V projections (before the core) and the output projection (after)."""
    pre = [linear("q_proj", s, d_model, h_q * d_qk, "x", "q"),
           linear("k_proj", s, d_model, h_kv * d_qk, "x", "k_new", group="kv_proj"),
           linear("v_proj", s, d_model, h_kv * d_v, "x", "v_new", group="kv_proj")]
    post = [linear("o_proj", s, h_q * d_v, d_model, "o", "y")]
    return pre, post


def softmax_attention(s: Shape, *, h_q, h_kv, d_qk, d_v, pairs, cache_tokens, kv_shared=False,
                      skip: Any = 0.0, prefix: str = "", q: str = "q", o: str = "o",
                      cache: str = "kv_cache", new: str = "new", kv: str = "",
                      new_tokens: Any = None, kv_bytes: Any = None) -> list[Op]:
    """QK^T -> softmax -> PV over `pairs` attended pairs per query head and sequence.

    K/V come from the new tokens (k_new/v_new, seq of them) and the cache (cache_tokens).
    kv_shared: one latent tensor is both K (d_qk wide) and V (its first d_v columns).
    skip (BLASST): fraction of KV tiles whose exps and PV are skipped (QK^T is always
    computed); in decode their V is not loaded either.
    kv_bytes: bytes per cached element (default: the shape's KV format; a layout may set it).
    """
    b, B = s.bytes_per_element, s.batch
    kb = s.kv_bytes_per_element if kv_bytes is None else kv_bytes
    if cache != "kv_cache":
        kb = b  # re-materialized K/V are activations at the compute dtype
    Sq = s.seq if new_tokens is None else new_tokens  # K/V tokens produced this step
    n = B * h_q * pairs
    kept = 1.0 - skip
    q_t = Tensor(q, B * s.seq * h_q * d_qk * b)
    # cache: "kv_cache" (persistent) or "activation" (K/V re-materialized from a latent).
    c = "" if cache == "kv_cache" else "up_"
    if kv_shared:
        k_new = v_new = Tensor(f"{kv}kv_{new}", B * Sq * h_kv * d_qk * b)
        k_cache = v_cache = Tensor(f"{c}{kv}kv_cache", B * cache_tokens * h_kv * d_qk * kb, cache)
    else:
        k_new = Tensor(f"{kv}k_{new}", B * Sq * h_kv * d_qk * b)
        v_new = Tensor(f"{kv}v_{new}", B * Sq * h_kv * d_v * b)
        v_bytes = B * cache_tokens * h_kv * d_v * kb * (kept if s.phase == "decode" else 1.0)
        k_cache = Tensor(f"{c}{kv}k_cache", B * cache_tokens * h_kv * d_qk * kb, cache)
        v_cache = Tensor(f"{c}{kv}v_cache", v_bytes, cache)
    scores = Tensor(f"{prefix}scores", n * 4, "scratch")  # fp32 logits
    probs = Tensor(f"{prefix}probs", n * kept * b, "scratch")
    out = Tensor(o, B * s.seq * h_q * d_v * b)
    ops = [
        Op(f"{prefix}qk", "matmul", flops=2 * n * d_qk, reads=(q_t, k_new, k_cache), writes=(scores,),
           kernel="attention"),
        Op(f"{prefix}softmax", "softmax", vector_flops=SOFTMAX_VECTOR_OPS * n * kept, exps=n * kept,
           reads=(scores,), writes=(probs,), kernel="attention"),
        Op(f"{prefix}pv", "matmul", flops=2 * n * kept * d_v, reads=(probs, v_new, v_cache), writes=(out,),
           kernel="attention"),
    ]
    if s.phase == "train":
        # FlashAttention's backward recomputes QK^T and the exps instead of storing P.
        ops.append(Op(f"{prefix}qk_recompute", "matmul", flops=2 * n * d_qk, exps=n,
                      vector_flops=SOFTMAX_VECTOR_OPS * n, reads=(q_t, k_new), fused_only=True, kernel="attention"))
    return ops


def all_reduce(s: Shape, tensor: str, width, tp) -> Op:
    """Ring all-reduce of a [tokens, width] activation over tp devices: each sends
    2(tp-1)/tp of it."""
    size = s.tokens * width * s.bytes_per_element
    return Op("all_reduce", "comm", comm_bytes=2 * (tp - 1) / tp * size,
              reads=(Tensor(tensor, size),), writes=(Tensor(tensor + "_reduced", size),), group="comm")


def split_outputs(op: Op, *outs: Tensor) -> Op:
    """The same matmul writing its result as several tensors (e.g. K and V of one GEMM)."""
    return dataclasses.replace(op, writes=outs)
