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
import functools
import math

import numpy as np

from attn_dse.calibration.knobs import FamilyKnobs, Knobs
from attn_dse.cost.family import Family, KernelEstimate
from attn_dse.cost.roofline import Ceilings
from attn_dse.errors import AttnDseError
from attn_dse.hardware.spec import Hardware
from attn_dse.workloads.kernel_spec import KernelSpec

GPU_REGISTER_BYTES = 256 * 1024  # register file per SM (Hopper/Ampere/Blackwell)
ACCUMULATOR_SHARE = 0.75  # of the registers, what accumulators and the score tile may use
STAGES = (2, 1)  # K/V pipeline depths: 2 overlaps loads with math; 1 fits where 2 does not
PLAIN = Family()  # a kernel whose one program a core fills it, with the implementation's overlap


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
           iterations, fill, fits, stages, detail: bool = True, extra_s=0.0, vector_flops=0.0,
           kernel: Family = PLAIN) -> dict:
    """Time of candidates: each resource's time is the larger of its aggregate rate and the
    per-core rate times the waves, i.e. the busiest core's share of the work at one core's rate
    (idle cores only cost where one core is the limit). `extra_s` is added where the tiles fit
    (the split-KV combine). `vector_flops` (KV dequantization) runs on the vector units beside the
    exps, issued by the same warps. Without `detail` only the time is returned (what the search
    needs). How the `kernel` (a family) uses a core is its own:
    - `resident`: a kernel of small programs reaches one core's rates only with that many on it
      at once; with fewer CTAs a core, the per-core rates scale down in proportion;
    - `core_raw`: a core streams every byte its programs load (`raw_kv`, L2 hits included), not
      only `hbm`'s;
    - `exp_overlap`: its own share of the exps hidden under the matmuls (else the
      implementation's knob);
    - `persistent`: its programs (one a core) fill their pipelines once, the waves' latency and
      first tiles paid once;
    - `slots`: its cores hold that many programs at once, which fill their pipelines together."""
    resident, slots, persistent = kernel.resident, kernel.slots, kernel.persistent
    eff_c, eff_m = fam.compute_efficiency, fam.memory_efficiency
    active, n_waves = waves(ctas, hw.cores)
    # share of the work the busiest core does (at least 1/cores), over the share of its rates its
    # programs reach (1 for a kernel whose one program fills a core)
    per_core = n_waves / ctas if resident == 1 else n_waves / ctas / np.minimum(1.0, n_waves / resident)
    # each per-core term is per_core x (its work at one core's rate): the work depends on few
    # mapping axes (the tiles, not the splits), so it is computed at their size and scaled once
    # (a positive scale commutes exactly with max and min)
    step = knobs.tile_overhead_cycles if fam.tile_overhead_cycles is None else fam.tile_overhead_cycles
    mm = flops * (hw.cores / (c.matmul_flop_per_s * eff_c)) + iterations * (step / hw.clock_hz)
    sfu = exps * (hw.cores / c.exp_per_s)
    vec = vector_flops * (hw.cores / c.vector_flop_per_s)
    exp = sfu + vec
    hidden = knobs.exp_overlap if kernel.exp_overlap is None else kernel.exp_overlap
    compute = np.maximum(mm, exp) + (1 - hidden) * np.minimum(mm, exp)
    core = (raw_kv + q_o if kernel.core_raw else hbm) / fam.core_bytes_per_s  # one core streams at most this fast
    smem = (raw_kv + q_o) * (hw.cores / c.core_memory_bytes_per_s)
    t_bw = hbm / (c.hbm_bytes_per_s * eff_m)
    t_l2 = raw_kv / c.cache_bytes_per_s if c.cache_bytes_per_s else 0.0
    t_compute, t_core = per_core * compute, per_core * core
    t_hbm = np.maximum(t_bw, t_core)
    overlapped = np.maximum(per_core * np.maximum(np.maximum(compute, core), smem), np.maximum(t_bw, t_l2))
    t = np.where(stages == 1, t_compute + t_hbm, overlapped)  # one stage: loads and math take turns
    # each wave fills its pipeline before the math starts: a latency, then the first tiles of all
    # its CTAs come through HBM together (CTAs with few tiles cannot hide it); a mapping whose
    # tiles do not fit gets an infinite fill
    first_tiles = np.where(fits, fill / (c.hbm_bytes_per_s * eff_m), np.inf)
    fills = 1.0 if persistent else np.ceil(n_waves / slots)  # programs held at once fill together
    t = t + (fills * knobs.wave_latency_s + knobs.launch_overhead_s + extra_s) + (fills * active) * first_tiles
    if not detail:
        return {"time": t}
    out = {"time": t, "hbm": hbm, "cache": raw_kv, "flops": flops, "exps": exps, "compute": t_compute,
           "memory": t_hbm, "t_mm": per_core * mm, "t_sfu": per_core * sfu, "t_vec": per_core * vec, "t_core": t_core,
           "t_bw": t_bw, "t_smem": per_core * smem}
    if c.cache_bytes_per_s:
        out["t_l2"] = t_l2
    return out


def limiter(won: dict):
    """The limiter of timed candidates (finish's fields, after the search picked the winners):
    the largest of compute, HBM, SMEM (and L2), the first on ties; compute is named by its
    unit, HBM as one core's streaming rate where that is the cap."""
    # the first of the largest, by comparisons (one rule for numpy scalars and arrays alike)
    c, m, s, l2 = won["compute"], won["memory"], won["t_smem"], won.get("t_l2", -np.inf)
    first_c = (c >= m) & (c >= s) & (c >= l2)
    first_m = (m > c) & (m >= s) & (m >= l2)
    first_s = (s > c) & (s > m) & (s >= l2)
    first_l2 = (l2 > c) & (l2 > m) & (l2 > s)
    unit = (won["t_sfu"] + won["t_vec"] > won["t_mm"]) * (1 + (won["t_vec"] > won["t_sfu"]))  # matmul, exp, vector
    code = first_c * unit + first_m * (3 + (won["t_core"] > won["t_bw"])) + first_s * 5 + first_l2 * 6
    return LIMITERS[code]


LIMITERS = np.array(["matmul", "exp", "vector", "hbm", "core_bw", "smem", "l2"], dtype=object)  # finish's codes
MAPPING = ("block_m", "block_n", "n_split", "stages")
POINTS_PER_PASS = 2048  # points timed against every candidate at once (bounds the memory; fastest of 512-4096 on a 2-core EPYC)


NUMERIC_FIELDS = ("batch", "seq", "past", "h_q", "h_kv", "d_qk", "d_v", "pairs", "kv_read_tokens", "window", "skip",
                  "block", "kv_bytes_per_element", "dequant_vector_flops", "tile_pairs", "extra_io_bytes")


def _flat_spec(spec: KernelSpec) -> tuple[KernelSpec, tuple]:
    """The spec with every numeric field broadcast to one shape and flattened, and that shape.
    A spec of one point keeps Python floats: its terms that no mapping changes cost no array ops."""
    names = [f for f in NUMERIC_FIELDS if getattr(spec, f) is not None]
    raw = [getattr(spec, f) for f in names]
    if all(isinstance(v, (int, float)) or (isinstance(v, np.ndarray | np.generic) and v.ndim == 0) for v in raw):
        return dataclasses.replace(spec, **{f: float(v) for f, v in zip(names, raw)}), ()
    values = np.broadcast_arrays(*[np.asarray(getattr(spec, f), dtype=np.float64) for f in names])
    shape = values[0].shape
    flat = [float(v) for v in values] if shape == () else [v.reshape(-1) for v in values]
    return dataclasses.replace(spec, **dict(zip(names, flat))), shape


def _rows(spec: KernelSpec, lo: int, hi: int) -> KernelSpec:
    fields = {f: getattr(spec, f)[lo:hi] for f in NUMERIC_FIELDS if getattr(spec, f) is not None}
    return dataclasses.replace(spec, **fields)


def _first_min(times: np.ndarray) -> np.ndarray:
    """Per column of `times` (candidates x points): the row of the smallest, the earliest on
    ties; np.argmin along axis 0 without the transposed copy it makes."""
    k = len(times)
    if k > 255 or times.shape[1] == 1:
        return np.argmin(times, axis=0)
    rank = np.arange(k, 0, -1, dtype=np.uint8)[:, None]  # the earlier row, the higher rank
    first = k - ((times == times.min(axis=0)) * rank).max(axis=0)
    return first if first.max() < k else np.argmin(times, axis=0)  # a NaN matches nothing


def _points(x, n: int, shape: tuple, dtype=None) -> np.ndarray:
    """A field as one value per point, in the spec's shape (a fresh array)."""
    x = np.asarray(x, dtype=dtype)
    if x.shape == (n,) and x.flags.owndata:
        return x.reshape(shape)
    if x.ndim == 0:
        return np.full(shape, x, dtype=x.dtype)
    return np.broadcast_to(x, (n,)).reshape(shape).copy()


def _winner(x, index: tuple, n: int):
    """The value of candidate field `x` (axes first, points last, broadcastable) at each
    point's chosen candidate (`index`: one index array per axis)."""
    x = np.asarray(x)
    if x.ndim == 0:
        return x
    x = x.reshape((1,) * (len(index) + 1 - x.ndim) + x.shape)
    return x[tuple(i if size > 1 else 0 for i, size in zip(index + (np.arange(n),), x.shape))]


@functools.lru_cache(maxsize=256)
def _product(values: tuple) -> tuple:
    """Every combination of the axis values, one flat array per axis (the last varies fastest)."""
    out = tuple(g.reshape(-1) for g in np.meshgrid(*(np.asarray(v, dtype=np.float64) for v in values), indexing="ij"))
    for g in out:
        g.flags.writeable = False
    return out


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
    flat, shape = _flat_spec(spec)
    if shape == ():
        return _search_one(time_of, flat, axes, fixed, choices, fields)
    axes = {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in axes.items()}
    for key, value in (fixed or {}).items():
        if key not in axes or not np.any(axes[key] == value):
            no_mapping(key, value, choices)
        axes[key] = np.asarray([value], dtype=np.float64)
    names, k = list(axes), len(axes)
    n = math.prod(shape)
    sizes = tuple(len(axes[name]) for name in names)
    shaped = {name: axes[name].reshape(tuple(-1 if i == j else 1 for j in range(k)) + (1,))
              for i, name in enumerate(names)}
    chosen = {name: np.empty(n) for name in names}
    won = None
    for lo in range(0, n, POINTS_PER_PASS):
        hi = min(n, lo + POINTS_PER_PASS)
        one_pass = hi - lo == n  # few points: the pass computes every field, no second call
        cands = time_of(_rows(flat, lo, hi) if not one_pass else flat, detail=one_pass, **shaped)
        times = np.broadcast_to(cands["time"], sizes + (hi - lo,)).reshape(-1, hi - lo)
        best = _first_min(times)
        if np.any(np.isinf(times[best, np.arange(hi - lo)])):
            raise AttnDseError("no tile mapping fits on chip for this shape",
                               fix="a head dimension this large needs more SMEM/VMEM; lower head_dim")
        index = np.unravel_index(best, sizes)
        for name, i in zip(names, index):
            chosen[name][lo:hi] = axes[name][i]
        if one_pass:
            won = {k: _winner(v, index, n) for k, v in cands.items()}
    if won is None:
        won = time_of(flat, detail=True, **chosen)

    return _estimate(won, (fields or dict)(chosen), lambda x, dtype=None: _points(x, n, shape, dtype))


def _search_one(time_of, spec: KernelSpec, axes: dict, fixed, choices, fields) -> KernelEstimate:
    """search() for a spec of one point: its candidates on one flat axis (same-shape arrays,
    numpy's fast path), the winner's fields as Python floats (the limiter by Python
    comparisons), each result a 0-d array as for arrays of points."""
    values = {k: tuple(np.ravel(v).tolist()) for k, v in axes.items()}
    for key, value in (fixed or {}).items():
        if key not in values or value not in values[key]:
            no_mapping(key, value, choices)
        values[key] = (float(value),)
    grid = _product(tuple(values.values()))
    cands = time_of(spec, detail=True, **{name: g.reshape(-1, 1) for name, g in zip(values, grid)})
    times = np.broadcast_to(cands["time"], (len(grid[0]), 1)).reshape(-1)
    i = int(np.argmin(times))
    if times[i] == np.inf:
        raise AttnDseError("no tile mapping fits on chip for this shape",
                           fix="a head dimension this large needs more SMEM/VMEM; lower head_dim")
    won = {k: v if type(v) is float else v.item(i if v.size > 1 else 0) for k, v in cands.items()}
    chosen = {name: np.asarray([g[i]]) for name, g in zip(values, grid)}
    return _estimate(won, (fields or dict)(chosen), lambda x, dtype=None: np.array(x, dtype=dtype).reshape(()))


def _estimate(won: dict, mapping: dict, full) -> KernelEstimate:
    return KernelEstimate(time_s=full(won["time"]), hbm_bytes=full(won["hbm"]), cache_bytes=full(won["cache"]),
                          flops=full(won["flops"]), exps=full(won["exps"]), limiter=full(limiter(won), object),
                          mapping={k: full(v, np.float64) for k, v in mapping.items()},
                          compute_s=full(won["compute"]), memory_s=full(won["memory"]))


def pick(where, a: KernelEstimate, b: KernelEstimate) -> KernelEstimate:
    """Per point, `a` where `where` holds, else `b` (two kernels' estimates of the same points)."""
    if where.ndim == 0:
        return a if bool(where) else b
    choose = lambda x, y: np.where(where, x, y)  # noqa: E731
    fields = {f.name: choose(getattr(a, f.name), getattr(b, f.name))
              for f in dataclasses.fields(KernelEstimate) if f.name != "mapping"}
    return KernelEstimate(**fields, mapping={k: choose(a.mapping[k], b.mapping[k]) for k in a.mapping})


def split(where, spec: KernelSpec, a, b) -> KernelEstimate:
    """Per point, kernel `a`'s estimate where `where` holds, else `b`'s (`a(spec)`, `b(spec)`
    time a spec): each times its own points only, so a kernel is never asked for a shape it
    cannot run."""
    flat, shape = _flat_spec(spec)
    where = np.broadcast_to(np.asarray(where, dtype=bool), shape).reshape(-1)
    if where.all() or not where.any():
        return a(spec) if where.all() else b(spec)
    parts = [(where, a(_subset(flat, where))), (~where, b(_subset(flat, ~where)))]

    def merged(get, dtype=None):
        out = np.empty(where.shape, dtype=dtype or np.result_type(*(np.asarray(get(e)).dtype for _, e in parts)))
        for mask, e in parts:
            out[mask] = np.ravel(get(e))
        return out.reshape(shape)

    fields = {f.name: merged(lambda e, n=f.name: getattr(e, n), object if f.name == "limiter" else None)
              for f in dataclasses.fields(KernelEstimate) if f.name != "mapping"}
    return KernelEstimate(**fields, mapping={k: merged(lambda e, k=k: e.mapping[k]) for k in parts[0][1].mapping})


def _subset(spec: KernelSpec, mask: np.ndarray) -> KernelSpec:
    """The points of a flattened spec where `mask` holds."""
    return dataclasses.replace(spec, **{f: getattr(spec, f)[mask] for f in NUMERIC_FIELDS
                                        if isinstance(getattr(spec, f), np.ndarray)})
