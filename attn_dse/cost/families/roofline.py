"""Kernels the plain roofline times (no tiling model): the projections and other GEMMs, and the
unfused attention path, whose QK^T, softmax and PV are kernels of their own through HBM."""
from __future__ import annotations

import numpy as np

from attn_dse.cost.family import Family, register_family

SOFTMAX_BYTES = 4  # eager softmax runs in fp32 (softmax(dtype=float32)), then casts back
SOFTMAX_VECTOR_FLOPS = 5  # per score: max, subtract, sum, divide (the exp on its own unit)
MASK_BYTES = 1  # a bool mask element


@register_family
class Gemm(Family):
    name = "gemm"
    tiled = False
    compute_efficiency, memory_efficiency = 0.9, 0.9


@register_family
class Unfused(Family):
    name = "unfused"
    tiled = False
    compute_efficiency, memory_efficiency = 0.8, 0.9


@register_family
class Strided(Family):
    """Element-wise kernels over an operand that is broadcast (stride 0) or gathered: a K/V head
    expanded to its query heads and copied, a mask broadcast over batch and heads. PyTorch's
    element-wise engine (TensorIterator) vectorizes only operands that are contiguous alike;
    these take its per-element path, which computes every element's offsets and loads one
    element at a time, far below the HBM rate. Its memory efficiency is fitted per implementation."""
    name = "strided"
    tiled = False
    compute_efficiency, memory_efficiency = 0.8, 0.3


def _pass(name, hbm_bytes, flops=0.0, vector_flops=0.0, exps=0.0, family="unfused", launches=1.0) -> dict:
    return dict(name=name, flops=flops, vector_flops=vector_flops, exps=exps, hbm_bytes=hbm_bytes,
                family=family, launches=launches)


def eager_passes(spec) -> list[dict]:
    """The kernels of attention written as model code does (`execution: unfused`, e.g.
    `gpu/vendor.eager_attention`), each through HBM, each one launch:
    - GQA: K and V each expanded to the query heads and copied (`repeat_interleave` with a
      whole count is expand + clone): reads the K/V heads, writes the query heads' copy (strided);
    - QK^T (batched GEMM): reads Q and K, writes the scores (bf16); the scale: reads, writes them;
    - where some scores are masked (causal prefill), `masked_fill` out of place: a contiguous
      clone of the scores, then the fill in place with the [S, keys] bool mask broadcast (strided);
    - `softmax(dtype=float32)` of bf16 scores: ATen casts them to fp32 first (its fused
      half-to-float path takes fp16 only), then softmaxes fp32 into fp32; the cast back to bf16;
    - PV (batched GEMM): reads P and V, writes O.
    A shared latent (MLA) is one batched GEMM operand, read once per sequence (V its first d_v
    columns). Returns per pass: name, flops, vector_flops, exps, hbm_bytes, family (whose knobs
    time it: unfused or strided) and launches (0 where the pass does not run); fields broadcast."""
    B, S, hq, hkv, b = spec.batch, spec.seq, spec.h_q, spec.h_kv, spec.bytes_per_element
    keys = spec.kv_read_tokens + S
    scores = B * hq * S * keys
    q, o = B * hq * S * spec.d_qk * b, B * hq * S * spec.d_v * b
    passes = []
    if spec.kv_shared:
        k_read, v_read = B * keys * spec.d_qk * b, B * keys * spec.d_v * b
    else:
        k_read, v_read = B * hq * keys * spec.d_qk * b, B * hq * keys * spec.d_v * b
        grouped = np.where(np.asarray(hq) > np.asarray(hkv), 1.0, 0.0)
        for name, d, expanded in (("repeat_k", spec.d_qk, k_read), ("repeat_v", spec.d_v, v_read)):
            passes.append(_pass(name, grouped * (B * hkv * keys * d * b + expanded), family="strided",
                                launches=grouped))
    passes += [_pass("qk", q + k_read + scores * b, flops=2 * scores * spec.d_qk, family="gemm"),
               _pass("scale", 2 * scores * b, vector_flops=scores)]
    masked = np.where(np.asarray(spec.pairs) < np.asarray(S * keys), 1.0, 0.0)
    passes += [_pass("mask_clone", masked * 2 * scores * b, launches=masked),
               _pass("mask_fill", masked * (2 * scores * b + S * keys * MASK_BYTES), vector_flops=masked * scores,
                     family="strided", launches=masked),
               _pass("upcast", scores * (b + SOFTMAX_BYTES), vector_flops=scores),
               _pass("softmax", 2 * scores * SOFTMAX_BYTES, vector_flops=SOFTMAX_VECTOR_FLOPS * scores, exps=scores),
               _pass("downcast", scores * (SOFTMAX_BYTES + b), vector_flops=scores),
               _pass("pv", scores * b + v_read + o, flops=2 * scores * spec.d_v, family="gemm")]
    return passes
