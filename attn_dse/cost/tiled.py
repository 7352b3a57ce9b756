"""The tiled dataflow machinery every fused attention family shares.

A candidate mapping (tile sizes, splits, pipeline depth) is timed by `finish`: each resource's
time is the larger of its aggregate rate and one core's rate times the waves of CTAs, the exp
unit runs beside the matmuls, and each wave of CTAs first fills its pipeline (a latency, then
every CTA's first tiles through HBM together). `search` times every candidate for a
pass of points at once, keeps the fastest, and computes the winners' other fields once: memory
is bounded by the pass, not by the number of points. Everything broadcasts.
"""
from __future__ import annotations

import dataclasses

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
           iterations, fill, fits, stages, detail: bool = True, extra_s=0.0, vector_flops=0.0) -> dict:
    """Time of candidates: each resource's time is the larger of its aggregate rate and the
    per-core rate times the waves, i.e. the busiest core's share of the work at one core's rate
    (idle cores only cost where one core is the limit). `extra_s` is added where the tiles fit
    (the split-KV combine). `vector_flops` (KV dequantization) runs on the vector units beside the
    exps, issued by the same warps. Without `detail` only the time is returned (what the search needs)."""
    eff_c, eff_m = fam.compute_efficiency, fam.memory_efficiency
    active, n_waves = waves(ctas, hw.cores)
    per_core = n_waves / ctas  # share of the work the busiest core does: at least 1/cores
    t_mm = flops * per_core * (hw.cores / (c.matmul_flop_per_s * eff_c)) \
        + iterations * per_core * (knobs.tile_overhead_cycles / hw.clock_hz)
    t_sfu = exps * per_core * (hw.cores / c.exp_per_s)
    t_vec = vector_flops * per_core * (hw.cores / c.vector_flop_per_s)
    t_exp = t_sfu + t_vec
    t_compute = np.maximum(t_mm, t_exp) + (1 - knobs.exp_overlap) * np.minimum(t_mm, t_exp)
    t_bw = hbm / (c.hbm_bytes_per_s * eff_m)
    t_core = hbm * per_core / fam.core_bytes_per_s  # one core streams at most this fast
    t_hbm = np.maximum(t_bw, t_core)
    t_smem = (raw_kv + q_o) * per_core * (hw.cores / c.core_memory_bytes_per_s)
    t_l2 = raw_kv / c.cache_bytes_per_s if c.cache_bytes_per_s else 0.0
    overlapped = np.maximum(np.maximum(t_compute, t_hbm), np.maximum(t_smem, t_l2))
    t = np.where(stages == 1, t_compute + t_hbm, overlapped)  # one stage: loads and math take turns
    # each wave fills its pipeline before the math starts: a latency, then the first tiles of all
    # its CTAs come through HBM together (CTAs with few tiles cannot hide it); a mapping whose
    # tiles do not fit gets an infinite fill
    first_tiles = np.where(fits, fill / (c.hbm_bytes_per_s * eff_m), np.inf)
    t = t + (n_waves * knobs.wave_latency_s + knobs.launch_overhead_s + extra_s) + (n_waves * active) * first_tiles
    if not detail:
        return {"time": t}
    times = {"compute": t_compute, "hbm": t_hbm, "smem": t_smem}
    if c.cache_bytes_per_s:
        times["l2"] = t_l2
    _, limiter = bound_time(times)
    limiter = np.where(limiter == "compute", np.where(t_exp > t_mm, np.where(t_vec > t_sfu, "vector", "exp"), "matmul"),
                       limiter)
    limiter = np.where((limiter == "hbm") & (t_core > t_bw), "core_bw", limiter)
    return {"time": t, "hbm": hbm, "cache": raw_kv, "flops": flops, "exps": exps, "limiter": limiter,
            "compute": t_compute, "memory": t_hbm}


MAPPING = ("block_m", "block_n", "n_split", "stages")
POINTS_PER_PASS = 1024  # points timed against every candidate at once (bounds the memory)


NUMERIC_FIELDS = ("batch", "seq", "past", "h_q", "h_kv", "d_qk", "d_v", "pairs", "kv_read_tokens", "window", "skip",
                  "block", "kv_bytes_per_element", "dequant_vector_flops", "tile_pairs", "extra_io_bytes")


def _flat_spec(spec: KernelSpec) -> tuple[KernelSpec, tuple]:
    """The spec with every numeric field broadcast to one shape and flattened, and that shape."""
    names = [f for f in NUMERIC_FIELDS if getattr(spec, f) is not None]
    values = np.broadcast_arrays(*[np.asarray(getattr(spec, f), dtype=np.float64) for f in names])
    shape = values[0].shape
    return dataclasses.replace(spec, **{f: v.reshape(-1) for f, v in zip(names, values)}), shape


def _rows(spec: KernelSpec, lo: int, hi: int) -> KernelSpec:
    fields = {f: getattr(spec, f)[lo:hi] for f in NUMERIC_FIELDS if getattr(spec, f) is not None}
    return dataclasses.replace(spec, **fields)


def no_mapping(key: str, value, choices: dict | None):
    raise AttnDseError(f"no candidate mapping has {key}={value:g}",
                       fix=f"{key} takes: " + ", ".join(f"{x:g}" for x in (choices or {}).get(key, ())))


def search(time_of, spec: KernelSpec, axes: dict, fixed: dict | None = None,
           choices: dict | None = None, fields=None) -> KernelEstimate:
    """The fastest mapping per point. The candidates are the product of `axes` (mapping field ->
    its values, in the family's search order); `time_of(spec, detail=..., **mapping)` times them,
    each axis on a leading dimension of its own, so a term that depends on few of them is
    computed at their size only. Ties keep the earlier candidate. Points are timed in passes of
    POINTS_PER_PASS, then the winners once more with every field. `fixed` pins mapping fields;
    a pin no candidate has is an error listing `choices`. `fields(chosen)` turns the chosen axis
    values into mapping fields where an axis is not one (prefill's tile index)."""
    axes = {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in axes.items()}
    for key, value in (fixed or {}).items():
        if key not in axes or not np.any(axes[key] == value):
            no_mapping(key, value, choices)
        axes[key] = np.asarray([value], dtype=np.float64)
    names, k = list(axes), len(axes)
    sizes = tuple(len(axes[n]) for n in names)
    shaped = {n: axes[n].reshape(tuple(-1 if i == j else 1 for j in range(k)) + (1,)) for i, n in enumerate(names)}
    flat, shape = _flat_spec(spec)
    n = int(np.prod(shape, dtype=np.int64))
    chosen = {name: np.empty(n) for name in names}
    won = None
    for lo in range(0, n, POINTS_PER_PASS):
        hi = min(n, lo + POINTS_PER_PASS)
        one_pass = hi - lo == n  # few points: the pass computes every field, no second call
        cands = time_of(_rows(flat, lo, hi) if not one_pass else flat, detail=one_pass, **shaped)
        times = np.broadcast_to(cands["time"], sizes + (hi - lo,)).reshape(-1, hi - lo)
        best = np.argmin(times, axis=0)
        if np.any(np.isinf(times[best, np.arange(hi - lo)])):
            raise AttnDseError("no tile mapping fits on chip for this shape",
                               fix="a head dimension this large needs more SMEM/VMEM; lower head_dim")
        for name, index in zip(names, np.unravel_index(best, sizes)):
            chosen[name][lo:hi] = axes[name][index]
        if one_pass:
            won = {k: np.broadcast_to(np.asarray(v), sizes + (n,)).reshape(-1, n)[best, np.arange(n)]
                   for k, v in cands.items()}
    if won is None:
        won = time_of(flat, detail=True, **chosen)

    def full(x, dtype=None):
        return np.broadcast_to(np.asarray(x, dtype=dtype), (n,)).reshape(shape).copy()

    return KernelEstimate(time_s=full(won["time"]), hbm_bytes=full(won["hbm"]), cache_bytes=full(won["cache"]),
                          flops=full(won["flops"]), exps=full(won["exps"]), limiter=full(won["limiter"], object),
                          mapping={k: full(v, np.float64) for k, v in (fields or dict)(chosen).items()},
                          compute_s=full(won["compute"]), memory_s=full(won["memory"]))
