"""The whole step of a model on one GPU: attention (the families and projections `predict`
times) + every layer's MLP or mixture of experts (`cost/ffn.py`) + norms, embedding lookup and
the LM head. What serving asks of it: tokens/s per GPU, time per output token, time to first
token (`serving`).

Phases: prefill (the LM head runs on each sequence's last token only: the first output
token), decode (one step of `seq` new tokens per sequence; weights are read once per step
whatever the batch, so they amortise over it), train (forward + backward, logits of every
token). Chunked prefill (`prefill_chunk` on the model) runs the prompt as ceil(S/c) steps of
c tokens: each re-reads the weights and attends the chunks before it from the KV cache.
Every field broadcasts over numpy arrays.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from attn_dse.cost.ffn import GemmCosts, Kernels, elementwise, ffn_all_layers, ffn_weight_params, gemm
from attn_dse.cost.knobs import knobs_for
from attn_dse.cost.roofline import COMPUTE_LIMITERS, bound_time, select
from attn_dse.workloads.shape import DTYPE_BYTES

NORM_VECTOR_OPS = 5.0  # fused residual add + RMSNorm per element: add, square, sum, scale, weight
LOGIT_VECTOR_OPS = 5.0  # softmax / sampling over the vocabulary per logit


def tensor_parallel(wl) -> Any:
    """GPUs one replica spans: the attention's tensor-parallel degree."""
    return np.asarray(wl.params.get("tp", 1.0), dtype=np.float64)


# A GEMM with few tokens puts them on the MMA's N side (cuBLAS and CUTLASS swap the operands of
# skinny GEMMs), whose tile is a multiple of 8 on Hopper's wgmma (PTX ISA, m64nNk16: N = 8..256);
# the weights fill the 64-row M side. [U] for accelerators other than NVIDIA GPUs.
ROW_GRANULE = 8


# The grouped GEMM's knobs are the GEMM library's, whatever the attention kernel: stored as the
# `gemm` family and launch cost of `calibration/knobs/HW/gemm/grouped.yaml` (written by
# `python3 -m attn_dse.validation.ffn HW CSV --write`), found along the hardware's relatives like
# any knobs; without a file, the `gemm` family's defaults.
GROUPED_GEMM_KNOBS = "gemm/grouped"


def gemm_costs(hw, knobs) -> GemmCosts:
    """The dense GEMMs' costs from the `gemm` family of `knobs`, the grouped GEMM's from its own file."""
    fam, grouped = knobs.family("gemm"), knobs_for(hw, GROUPED_GEMM_KNOBS)
    gg = grouped.family("gemm")
    return GemmCosts(fam.compute_efficiency, fam.memory_efficiency, knobs.launch_overhead_s, ROW_GRANULE,
                     GemmCosts(gg.compute_efficiency, gg.memory_efficiency, grouped.launch_overhead_s, ROW_GRANULE))


def n_chunks(info, s):
    """Prefill steps the prompt runs as (1 unless the model sets prefill_chunk below the prompt)."""
    if s.phase != "prefill":
        return np.ones_like(s.seq)
    c = np.asarray(info.prefill_chunk, dtype=np.float64)
    return np.where(c > 0, np.ceil(s.seq / np.where(c > 0, c, 1.0)), 1.0)


def step_kernels(hw, c, knobs, wl, s) -> dict[str, Kernels]:
    """The MLP and the rest of the step beyond attention, on one GPU of the replica."""
    info = wl.model
    g = gemm_costs(hw, knobs)
    tp = tensor_parallel(wl)
    ab = wb = DTYPE_BYTES[s.dtype]
    E, L, V = info.d_model, info.n_layers, info.vocab_size
    link = hw.interconnect.link_bytes_per_s
    train = s.phase == "train"
    chunks = n_chunks(info, s)
    tokens = s.tokens / chunks  # per step of the prompt (the whole batch in decode)
    ffn = ffn_all_layers(c, g, info.ffn, tokens, E, L, tp, wb, ab, link, train).times(chunks)
    t_gpu = s.tokens / tp
    norms = elementwise(c, g, (2 * L + 1) * NORM_VECTOR_OPS * t_gpu * E, (2 * L + 1) * 4 * t_gpu * E * ab)
    embed = elementwise(c, g, 0.0, 2 * t_gpu * E * ab)
    logit_rows = s.tokens if s.phase != "prefill" else s.batch
    head = gemm(c, g, logit_rows, E, V / tp, weight_bytes_per_param=wb, act_bytes=ab) + \
        elementwise(c, g, LOGIT_VECTOR_OPS * logit_rows * V / tp, logit_rows * V / tp * 4.0, exps=logit_rows * V / tp)
    if train:
        norms, embed = norms.times(2), embed.times(2)
        head = Kernels(3 * head.time_s, 3 * head.flops, 3 * head.executed_flops, 3 * head.hbm_bytes + head.weight_bytes,
                       head.weight_bytes, 0.0, head.limiter)
    return {"ffn": ffn, "norms_embeddings": norms + embed, "lm_head": head}


def weight_params_per_gpu(wl, attention_weights) -> Any:
    """Parameters one GPU holds: attention (as the op graph shards it), MLP, embeddings and LM
    head (vocabulary-parallel over tp)."""
    info = wl.model
    tp = tensor_parallel(wl)
    return attention_weights + ffn_weight_params(info.ffn, info.d_model, info.n_layers, tp) + info.embedding_params() / tp


def with_step(predict, p, hw, c, knobs, wl, s, **predict_kw):
    """`p` (attention and projections of every layer, from `predict`, which times chunks of a
    chunked prefill too) with the rest of the step added: the Prediction of the whole model.
    Attention's parts keep p's limiter."""
    if s.phase == "prefill" and np.any(n_chunks(wl.model, s) > 1):
        p = _chunked_attention(predict, hw, c, knobs, wl, s, p, **predict_kw)
    extra = step_kernels(hw, c, knobs, wl, s)
    breakdown = {**p.breakdown, **{name: k.time_s for name, k in extra.items()}}
    limiters = {**{name: p.limiter for name in p.breakdown}, **{name: k.limiter for name, k in extra.items()}}
    _, main = bound_time(breakdown)
    limiter = select(main, limiters)
    flops = p.flops + sum(k.flops for k in extra.values())
    min_hbm = p.min_hbm_bytes + sum(k.hbm_bytes for k in extra.values())
    return dataclasses.replace(
        p, latency_s=p.latency_s + sum(k.time_s for k in extra.values()), flops=flops,
        executed_flops=p.executed_flops + sum(k.executed_flops for k in extra.values()),
        hbm_bytes=p.hbm_bytes + sum(k.hbm_bytes for k in extra.values()), min_hbm_bytes=min_hbm,
        weight_bytes=p.weight_bytes + sum(k.weight_bytes for k in extra.values()),
        comm_bytes=p.comm_bytes + sum(k.comm_bytes for k in extra.values()),
        arithmetic_intensity=flops / min_hbm, limiter=limiter,
        bound=np.where(np.isin(limiter, COMPUTE_LIMITERS), "compute", "memory"), breakdown=breakdown)


def _chunked_attention(predict, hw, c, knobs, wl, s, p, **kw):
    """Attention and projections of a prompt run in chunks of c tokens. The attention kernel
    attends the same pairs as one prefill (kept from `p`) and also reads, for chunk j, the K/V
    of the j*c tokens before it from HBM; projections and communication are one chunk's, once
    per chunk (their weights re-read each time)."""
    chunk = np.minimum(np.where(np.asarray(wl.model.prefill_chunk) > 0, wl.model.prefill_chunk, s.seq), s.seq)
    bare = dataclasses.replace(wl, model=None)
    one = predict(hw, bare, "prefill", s.batch, seq=chunk, dtype=s.dtype, scope="model", causal=s.causal, **kw)
    n = s.seq / chunk
    whole = np.ceil(n - 1e-9)
    kv_token = bare.kv_cache_bytes(bare.shape("decode", 1, 1, 1, s.causal, s.dtype), "model")
    prefix = s.batch * chunk * whole * (whole - 1) / 2 * kv_token
    eff = knobs.family("prefill").memory_efficiency
    breakdown = {k: v * n for k, v in one.breakdown.items() if k != "attention"}
    breakdown["attention"] = p.breakdown["attention"] + prefix / (c.hbm_bytes_per_s * eff)
    extra_weights = (whole - 1) * p.weight_bytes
    return dataclasses.replace(p, latency_s=sum(breakdown.values()), hbm_bytes=p.hbm_bytes + prefix + extra_weights,
                               min_hbm_bytes=p.min_hbm_bytes + prefix + extra_weights, breakdown=breakdown)


def serving(p, wl) -> dict:
    """What a serving deployment reads off one step: tokens/s per GPU (the replica's tokens over
    its tp GPUs), time per output token (decode: the step over the tokens it emits per
    sequence), time to first token (prefill: the whole prompt's step). Fields not meaningful for
    the phase are NaN."""
    gpus = tensor_parallel(wl)
    tokens = p.batch * p.seq
    tps = tokens / p.latency_s / gpus
    nan = np.full(np.shape(p.latency_s), np.nan)
    tpot = p.latency_s / p.seq if p.phase == "decode" else nan
    ttft = p.latency_s if p.phase == "prefill" else nan
    return {"tokens_per_s_per_gpu": tps, "tpot_s": tpot, "ttft_s": ttft}
