"""Kernels the plain roofline times (no tiling model): the projections and other GEMMs, and the
unfused attention path, whose QK^T, softmax and PV are kernels of their own through HBM."""
from __future__ import annotations

import numpy as np

from attn_dse.cost.family import Family, register_family

SOFTMAX_BYTES = 4  # eager softmax writes fp32 probabilities (softmax(dtype=float32)), then casts
SOFTMAX_VECTOR_FLOPS = 5  # per score: max, subtract, sum, divide (the exp on its own unit)


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


def eager_passes(spec) -> list[dict]:
    """The kernels of attention written as model code does (`execution: unfused`), each through
    HBM: K/V heads repeated to the query heads (GQA), QK^T, the scale, the mask (where masked
    scores exist in a prefill), softmax into fp32 and the cast back, PV. A shared latent (MLA)
    is one batched GEMM operand, read once per sequence. Returns per pass: name, flops,
    vector_flops, exps, hbm_bytes (fields broadcast over the spec's arrays)."""
    B, S, hq, hkv, b = spec.batch, spec.seq, spec.h_q, spec.h_kv, spec.bytes_per_element
    keys = spec.kv_read_tokens + S if spec.phase != "decode" else spec.kv_read_tokens + S
    scores = B * hq * S * keys
    q, o = B * hq * S * spec.d_qk * b, B * hq * S * spec.d_v * b
    passes = []
    if spec.kv_shared:
        k_read = v_read = B * keys * spec.d_qk * b
    else:
        k_read, v_read = B * hq * keys * spec.d_qk * b, B * hq * keys * spec.d_v * b
        repeat = np.where(np.asarray(hq) > np.asarray(hkv), 1.0, 0.0)
        kv = B * hkv * keys * (spec.d_qk + spec.d_v) * b
        passes.append(dict(name="repeat_kv", flops=0.0, vector_flops=0.0, exps=0.0,
                           hbm_bytes=repeat * (kv + k_read + v_read)))
    passes += [dict(name="qk", flops=2 * scores * spec.d_qk, vector_flops=0.0, exps=0.0,
                    hbm_bytes=q + k_read + scores * b),
               dict(name="scale", flops=0.0, vector_flops=scores, exps=0.0, hbm_bytes=2 * scores * b)]
    masked = spec.phase != "decode" and np.any(np.asarray(spec.pairs) < np.asarray(S * keys))
    if masked:  # masked_fill reads the scores and a bool mask, writes the scores
        passes.append(dict(name="mask", flops=0.0, vector_flops=scores, exps=0.0,
                           hbm_bytes=scores * (2 * b + 1 / B / hq)))
    passes += [dict(name="softmax", flops=0.0, vector_flops=SOFTMAX_VECTOR_FLOPS * scores, exps=scores,
                    hbm_bytes=scores * (b + SOFTMAX_BYTES)),
               dict(name="cast", flops=0.0, vector_flops=scores, exps=0.0, hbm_bytes=scores * (SOFTMAX_BYTES + b)),
               dict(name="pv", flops=2 * scores * spec.d_v, vector_flops=0.0, exps=0.0,
                    hbm_bytes=scores * b + v_read + o)]
    return passes
