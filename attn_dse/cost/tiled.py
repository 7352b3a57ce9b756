"""The tiled dataflow machinery every fused attention family shares.

A candidate mapping (tile sizes, splits, pipeline depth) is timed by `finish`: each resource's
time is the larger of its aggregate rate and one core's rate times the waves of CTAs, the exp
unit runs beside the matmuls, and each wave of CTAs first fills its pipeline (a latency, then
every CTA's first tiles through HBM together). `search` keeps a running best per point over
the candidates, so memory does not grow with their number. Everything broadcasts.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from attn_dse.calibration.knobs import FamilyKnobs, Knobs
from attn_dse.cost.family import KernelEstimate
from attn_dse.cost.roofline import Ceilings, bound_time
from attn_dse.errors import AttnDseError
from attn_dse.hardware.spec import Hardware
from attn_dse.workloads.kernel_spec import KernelSpec

GPU_REGISTER_BYTES = 256 * 1024  # register file per SM (Hopper/Ampere/Blackwell)
ACCUMULATOR_SHARE = 0.75  # of the registers, what accumulators and the score tile may use
STAGES = (2, 1)  # K/V pipeline depths: 2 overlaps loads with math; 1 fits where 2 does not
_FIELDS = ("hbm", "cache", "flops", "exps", "limiter", "compute", "memory")


def tile_bytes(spec: KernelSpec, block_m, block_n, stages=2):
    """On-chip operand bytes of one CTA: its Q tile and `stages` K/V tiles."""
    width = spec.d_qk if spec.kv_shared else spec.d_qk + spec.d_v
    return (block_m * spec.d_qk + stages * block_n * width) * spec.bytes_per_element


def fits_on_chip(hw: Hardware, spec: KernelSpec, block_m, block_n, stages=2) -> np.ndarray:
    """The tile set (Q tile, `stages` K/V tiles; fp32 accumulators and scores) fits a core."""
    operands = tile_bytes(spec, block_m, block_n, stages)
    accum = block_m * (spec.d_v + block_n) * 4
    cap = hw.core_memory.capacity_bytes
    if hw.kind == "gpu":
        return (operands <= cap) & (accum <= ACCUMULATOR_SHARE * GPU_REGISTER_BYTES)
    return operands + accum <= cap


def waves(ctas, cores):
    """Active cores, and the waves of CTAs each core runs in turn."""
    return np.minimum(ctas, cores), np.ceil(ctas / cores)


def l2_hit(hw: Hardware, knobs: Knobs, kv_heads_in_flight, kv_bytes_per_head):
    """Share of K/V re-reads served by L2: the reuse fraction while the K/V of the heads in
    flight fits the cache, falling off in proportion beyond."""
    if hw.cache is None:
        return 0.0
    working_set = np.maximum(kv_heads_in_flight, 1) * kv_bytes_per_head
    return knobs.l2_reuse * np.minimum(1.0, hw.cache.capacity_bytes / working_set)


def finish(hw: Hardware, c: Ceilings, knobs: Knobs, fam: FamilyKnobs, flops, exps, hbm, raw_kv, q_o, ctas,
           iterations, fill, fits, mapping) -> dict:
    """Time of one candidate: each resource's time is the larger of its aggregate rate and the
    per-core rate times the waves (so idle cores only cost where one core is the limit)."""
    eff_c, eff_m = fam.compute_efficiency, fam.memory_efficiency
    active, n_waves = waves(ctas, hw.cores)
    per_core = n_waves / ctas  # share of the work the busiest core does
    t_mm = np.maximum(flops / (c.matmul_flop_per_s * eff_c),
                      flops * per_core / (c.matmul_flop_per_s * eff_c / hw.cores))
    t_mm = t_mm + iterations * per_core * knobs.tile_overhead_cycles / hw.clock_hz
    t_exp = np.maximum(exps / c.exp_per_s, exps * per_core / (c.exp_per_s / hw.cores))
    t_compute = np.maximum(t_mm, t_exp) + (1 - knobs.exp_overlap) * np.minimum(t_mm, t_exp)
    t_bw = hbm / (c.hbm_bytes_per_s * eff_m)
    t_core = hbm * per_core / fam.core_bytes_per_s  # one core streams at most this fast
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
    t = t + n_waves * (knobs.wave_latency_s + active * fill / (c.hbm_bytes_per_s * eff_m))
    return {"time": np.where(fits, t + knobs.launch_overhead_s, np.inf), "hbm": hbm, "cache": raw_kv,
            "flops": flops, "exps": exps, "limiter": limiter, "mapping": mapping,
            "compute": t_compute, "memory": times["hbm"]}


def search(candidates: Iterable[dict], fixed: dict | None = None, choices: dict | None = None) -> KernelEstimate:
    """The fastest candidate per point (a running best: ties keep the earlier candidate).
    `fixed` pins mapping fields; a pin no candidate has is an error listing `choices`."""
    fixed = fixed or {}
    best: dict | None = None
    for cand in candidates:
        if any(np.any(cand["mapping"][k] != v) for k, v in fixed.items()):
            continue
        if best is None:
            best = {**{k: cand[k] for k in _FIELDS}, "time": cand["time"],
                    "mapping": {k: np.asarray(v, dtype=np.float64) for k, v in cand["mapping"].items()}}
            continue
        better = cand["time"] < best["time"]
        best["time"] = np.where(better, cand["time"], best["time"])
        for k in _FIELDS:
            best[k] = np.where(better, cand[k], best[k])
        for k, v in cand["mapping"].items():
            best["mapping"][k] = np.where(better, v, best["mapping"][k])
    if best is None:
        key, value = next(iter(fixed.items()))
        raise AttnDseError(f"no candidate mapping has {key}={value:g}",
                           fix=f"{key} takes: " + ", ".join(f"{x:g}" for x in (choices or {}).get(key, ())))
    time = np.asarray(best["time"], dtype=np.float64)
    if np.any(np.isinf(time)):
        raise AttnDseError("no tile mapping fits on chip for this shape",
                           fix="a head dimension this large needs more SMEM/VMEM; lower head_dim")

    def full(x, dtype=None):
        return np.broadcast_to(np.asarray(x, dtype=dtype), time.shape).copy()

    return KernelEstimate(time_s=time, hbm_bytes=full(best["hbm"]), cache_bytes=full(best["cache"]),
                          flops=full(best["flops"]), exps=full(best["exps"]),
                          limiter=full(best["limiter"], object),
                          mapping={k: full(v, np.float64) for k, v in best["mapping"].items()},
                          compute_s=full(best["compute"]), memory_s=full(best["memory"]))
