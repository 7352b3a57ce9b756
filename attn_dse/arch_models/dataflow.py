"""Tiled dataflow model of fused attention kernels, with a mapping search.

Prefill (FlashAttention-style): each CTA owns Br query rows of one head and streams the
key/value tiles it needs (Bc keys each) through on-chip memory. Modelled: tile fit (SMEM or
VMEM, and the register file for the fp32 accumulators), diagonal-tile waste of causal and
window masks, K/V re-reads across query tiles and the share L2 absorbs, wave quantization of
CTAs over cores, the exp unit beside the matmul units, launch overhead.

Decode (flash-decoding): the g*s_q query rows of one KV head are packed into MMA row tiles
(GQA packing; all h_q rows for MLA), the keys are split across n_split CTAs to fill the cores,
and each split writes an fp32 partial output plus its log-sum-exp for a combine kernel.
Few CTAs leave cores idle: bandwidth is capped at active cores x one core's streaming rate.
Each wave of CTAs first fills its pipeline (a latency, then every CTA's first tiles through
HBM), which CTAs with few tiles (short splits, short windows) cannot hide.

Everything broadcasts: the candidate mappings form a leading axis and the search is an argmin.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from attn_dse.arch_models.hardware import Hardware
from attn_dse.arch_models.roofline import Ceilings, bound_time
from attn_dse.workloads.registry import Core

GPU_REGISTER_BYTES = 256 * 1024  # register file per SM (Hopper/Ampere/Blackwell)
ACCUMULATOR_SHARE = 0.75  # of the registers, what accumulators and the score tile may use
STAGES = (2, 1)  # K/V pipeline depths: 2 overlaps loads with math; 1 fits where 2 does not
GPU_PREFILL_TILES = ((32, 32), (64, 32), (64, 64), (64, 128), (128, 64), (128, 128), (128, 176), (192, 128))
TPU_PREFILL_TILES = ((128, 128), (256, 256), (256, 512), (512, 512), (512, 1024), (1024, 1024))
SPLITS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
GPU_DECODE_BC, TPU_DECODE_BC = (32, 64), (256, 512)
DECODE_MMA_ROWS = 16  # mma.sync m16n8k16: the row granularity of small-M decode on GPUs
PARTIAL_BYTES = 4  # fp32 partial outputs of split-KV


@dataclass(frozen=True)
class KernelEstimate:
    time_s: Any
    hbm_bytes: Any
    cache_bytes: Any  # K/V tile traffic served through L2 (before hits)
    flops: Any  # matmul FLOPs executed, masked/padded waste included
    exps: Any
    limiter: Any
    mapping: dict  # block_m, block_n, n_split (arrays)
    compute_s: Any
    memory_s: Any


def estimate(core: Core, hw: Hardware, c: Ceilings, family: str | None = None,
             fixed: dict | None = None) -> KernelEstimate:
    """The cheapest mapping for this attention kernel, with its time and traffic.
    `fixed` pins mapping fields (e.g. {"n_split": 1}: decode without split-KV)."""
    family = family or core.family
    params = hw.model
    eff_c = params.compute_efficiency.get(family, params.compute_efficiency["prefill"])
    eff_m = params.memory_efficiency.get(family, params.memory_efficiency["prefill"])
    core_bw = params.core_bytes_per_s.get(family, params.core_bytes_per_s["prefill"])
    fixed = dict(fixed or {})
    if core.phase == "decode":
        key_tiles = GPU_DECODE_BC if hw.kind == "gpu" else TPU_DECODE_BC
        row_tiles = (hw.mma_rows, DECODE_MMA_ROWS) if hw.kind == "gpu" else (hw.mma_rows,)
        splits = (fixed.pop("n_split"),) if "n_split" in fixed else SPLITS  # any pinned count
        cands = [_decode(core, hw, c, eff_c, eff_m, core_bw, n, bc, st, rows) for n in splits for bc in key_tiles
                 for st in STAGES for rows in row_tiles]
    else:
        tiles = GPU_PREFILL_TILES if hw.kind == "gpu" else TPU_PREFILL_TILES
        cands = [_prefill(core, hw, c, eff_c, eff_m, core_bw, br, bc, st) for br, bc in tiles for st in STAGES]
    for key, value in fixed.items():
        cands = [cand for cand in cands if cand["mapping"][key] == value] or _no_mapping(key, value)
    return _best(cands)


def _no_mapping(key, value):
    from attn_dse.errors import AttnDseError
    raise AttnDseError(f"no candidate mapping has {key}={value}",
                       fix=f"{key} takes: " + ", ".join(map(str, SPLITS if key == "n_split" else
                                                                 sorted({t[0 if key == 'block_m' else 1] for t in GPU_PREFILL_TILES}))))


def _kv_width(core: Core):
    """Elements per key token per KV head streamed from memory (K = V for a shared latent)."""
    return core.d_qk if core.kv_shared else core.d_qk + core.d_v * (1 - core.skip * (core.phase == "decode"))


def tile_bytes(core: Core, block_m, block_n, stages=2):
    """On-chip operand bytes of one CTA: its Q tile and `stages` K/V tiles."""
    width = core.d_qk if core.kv_shared else core.d_qk + core.d_v
    return (block_m * core.d_qk + stages * block_n * width) * core.bytes_per_element


def fits_on_chip(hw: Hardware, core: Core, block_m, block_n, stages=2) -> np.ndarray:
    """The tile set (Q tile, `stages` K/V tiles; fp32 accumulators and scores) fits a core."""
    operands = tile_bytes(core, block_m, block_n, stages)
    accum = block_m * (core.d_v + block_n) * 4
    cap = hw.core_memory.capacity_bytes
    if hw.kind == "gpu":
        return (operands <= cap) & (accum <= ACCUMULATOR_SHARE * GPU_REGISTER_BYTES)
    return operands + accum <= cap


def _waves(ctas, cores):
    """Active cores, and the waves of CTAs each core runs in turn."""
    return np.minimum(ctas, cores), np.ceil(ctas / cores)


def _prefill(core: Core, hw: Hardware, c: Ceilings, eff_c, eff_m, core_bw, br, bc, stages) -> dict:
    B, S, hq, hkv, b = core.batch, core.seq, core.h_q, core.h_kv, core.bytes_per_element
    keys = core.kv_read_tokens + S
    n_qt = np.ceil(S / br)
    dense = n_qt * br * np.ceil(keys / bc) * bc  # every tile of a full score matrix
    masked = np.asarray(core.pairs) < S * keys
    # masked tiles on the diagonal (and the window's far edge) are computed whole
    edges = 1 + np.isfinite(core.window)
    waste = np.where(masked, edges * S * np.maximum(br, bc) / 2, 0.0)
    computed = np.minimum(core.pairs * n_qt * br / S + waste, dense)
    kept = 1 - core.skip
    flops = 2 * B * hq * computed * (core.d_qk + core.d_v * kept)
    exps = B * hq * computed * kept
    kv_token = (core.d_qk if core.kv_shared else core.d_qk + core.d_v) * b
    raw_kv = B * hq * computed / br * kv_token  # each query tile streams its key tiles
    unique_kv = B * hkv * keys * kv_token
    ctas = B * hq * n_qt
    hit = _l2_hit(hw, np.minimum(ctas, hw.cores) / n_qt / (hq / hkv), keys * kv_token)
    hbm_kv = unique_kv + np.maximum(raw_kv - unique_kv, 0) * (1 - hit)
    q_o = B * S * hq * (core.d_qk + core.d_v) * b
    iterations = B * hq * computed / (br * bc)  # K/V-tile steps over all CTAs
    return _finish(hw, c, eff_c, eff_m, core_bw, flops, exps, q_o + hbm_kv, raw_kv, q_o, ctas, iterations,
                   tile_bytes(core, br, bc, stages), fits_on_chip(hw, core, br, bc, stages),
                   {"block_m": br, "block_n": bc, "n_split": 1.0, "stages": stages})


def _decode(core: Core, hw: Hardware, c: Ceilings, eff_c, eff_m, core_bw, n_split, bc, stages, rows) -> dict:
    B, S, hq, hkv, b = core.batch, core.seq, core.h_q, core.h_kv, core.bytes_per_element
    keys = core.kv_read_tokens + S
    m_rows = hq / hkv * S  # GQA packing: a KV head's query rows share its K/V loads
    m_tiles = np.ceil(m_rows / rows)
    # small-M decode uses the narrowest MMA (mma.sync m16 on GPUs); TPU MXUs pad to full rows
    pad = DECODE_MMA_ROWS if hw.kind == "gpu" else rows
    kept = 1 - core.skip
    padded = B * hkv * np.ceil(m_rows / pad) * pad * keys  # padded rows are wasted work
    flops = 2 * padded * (core.d_qk + core.d_v * kept)
    exps = padded * kept
    kv_token = _kv_width(core) * b
    unique_kv = B * hkv * keys * kv_token
    raw_kv = unique_kv * m_tiles
    hbm_kv = unique_kv + (raw_kv - unique_kv) * (1 - hw.model.l2_reuse)
    q_o = B * S * hq * (core.d_qk + core.d_v) * b
    partial = np.where(n_split > 1, 2 * B * hq * S * (core.d_v + 2) * PARTIAL_BYTES * n_split, 0.0)
    ctas = B * hkv * m_tiles * n_split
    iterations = B * hkv * m_tiles * np.ceil(keys / bc)
    est = _finish(hw, c, eff_c, eff_m, core_bw, flops, exps, q_o + hbm_kv, raw_kv, q_o, ctas, iterations,
                  tile_bytes(core, rows, bc, stages), fits_on_chip(hw, core, rows, bc, stages), {"block_m": float(rows), "block_n": float(bc),
                                                             "n_split": float(n_split), "stages": stages})
    combine = np.where(n_split > 1, partial / (c.hbm_bytes_per_s * eff_m) + hw.launch_overhead_s, 0.0)
    est["time"] = est["time"] + combine
    est["hbm"] = est["hbm"] + partial
    return est


def _l2_hit(hw: Hardware, kv_heads_in_flight, kv_bytes_per_head):
    """Share of K/V re-reads served by L2: the reuse fraction while the K/V of the heads in
    flight fits the cache, falling off in proportion beyond."""
    if hw.cache is None:
        return 0.0
    working_set = np.maximum(kv_heads_in_flight, 1) * kv_bytes_per_head
    return hw.model.l2_reuse * np.minimum(1.0, hw.cache.capacity_bytes / working_set)


def _finish(hw, c: Ceilings, eff_c, eff_m, core_bw, flops, exps, hbm, raw_kv, q_o, ctas, iterations, fill,
            fits, mapping) -> dict:
    """Time of one candidate: each resource's time is the larger of its aggregate rate and the
    per-core rate times the waves (so idle cores only cost where one core is the limit)."""
    active, waves = _waves(ctas, hw.cores)
    per_core = waves / ctas  # share of the work the busiest core does
    t_mm = np.maximum(flops / (c.matmul_flop_per_s * eff_c),
                      flops * per_core / (c.matmul_flop_per_s * eff_c / hw.cores))
    t_mm = t_mm + iterations * per_core * hw.model.tile_overhead_cycles / hw.clock_hz
    t_exp = np.maximum(exps / c.exp_per_s, exps * per_core / (c.exp_per_s / hw.cores))
    overlap = hw.model.exp_overlap
    t_compute = np.maximum(t_mm, t_exp) + (1 - overlap) * np.minimum(t_mm, t_exp)
    t_bw = hbm / (c.hbm_bytes_per_s * eff_m)
    t_core = hbm * per_core / core_bw  # one core streams at most this fast
    times = {"compute": t_compute, "hbm": np.maximum(t_bw, t_core),
             "smem": (raw_kv + q_o) * per_core / (c.core_memory_bytes_per_s / hw.cores)}
    if c.cache_bytes_per_s:
        times["l2"] = raw_kv / c.cache_bytes_per_s
    t, limiter = bound_time(times)
    if mapping["stages"] == 1:  # no double buffering: loads and math take turns
        t = t_compute + times["hbm"]
    limiter = np.where(limiter == "compute", np.where(t_exp > t_mm, "exp", "matmul"), limiter)
    limiter = np.where((limiter == "hbm") & (t_core > t_bw), "core_bw", limiter)
    # each wave fills its pipeline before the math starts: a latency, then the first tiles of all
    # its CTAs come through HBM together (CTAs with few tiles cannot hide it)
    t = t + waves * (hw.model.wave_latency_s + active * fill / (c.hbm_bytes_per_s * eff_m))
    return {"time": np.where(fits, t + hw.launch_overhead_s, np.inf), "hbm": hbm, "cache": raw_kv,
            "flops": flops, "exps": exps, "limiter": limiter, "mapping": mapping,
            "compute": t_compute, "memory": times["hbm"], "fits": fits}


def _best(cands: list[dict]) -> KernelEstimate:
    times = np.stack(np.broadcast_arrays(*[c["time"] for c in cands]))
    if np.any(np.isinf(times.min(axis=0))):
        from attn_dse.errors import AttnDseError
        raise AttnDseError("no tile mapping fits on chip for this shape",
                           fix="a head dimension this large needs more SMEM/VMEM; lower head_dim")
    idx = np.argmin(times, axis=0)

    def pick(key):
        stacked = np.stack(np.broadcast_arrays(*[np.asarray(c[key]) for c in cands]))
        return np.take_along_axis(stacked, idx[None], axis=0)[0]

    shape = np.zeros(times.shape[1:])
    mapping = {k: np.take_along_axis(np.stack([np.asarray(c["mapping"][k], dtype=np.float64) + shape
                                               for c in cands]), idx[None], 0)[0]
               for k in cands[0]["mapping"]}
    return KernelEstimate(time_s=times.min(axis=0), hbm_bytes=pick("hbm"), cache_bytes=pick("cache"),
                          flops=pick("flops"), exps=pick("exps"), limiter=pick("limiter"),
                          mapping=mapping, compute_s=pick("compute"), memory_s=pick("memory"))
