"""Evaluate a design space: vectorized over the numeric axes, chunked for bounded memory.

Categorical choices (hardware point, variant entry, string parameters, phase, dtype) form
blocks; inside a block the numeric axes (batch, context, seq, numeric parameters) are a
cartesian grid evaluated in chunks of numpy arrays by one `predict` call each. Rows stream to
the writer; only the Pareto front (and all rows, below `keep_limit`) stay in memory.
Ctrl-C stops between chunks and leaves a valid partial result.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from attn_dse.dse.constraints import apply_constraints, objective_matrix
from attn_dse.dse.pareto import pareto_mask
from attn_dse.dse.space import Space, VariantAxis, hardware_variants
from attn_dse.cost.capacity import capacity
from attn_dse.cost.predict import predict
from attn_dse.workloads import attention
from attn_dse.workloads.registry import Workload

CHUNK = 50_000


@dataclass
class Block:
    hw_label: str
    hw: Any
    entry: VariantAxis
    fixed: dict  # string-valued params of this block
    phase: str
    dtype: str
    axes: dict  # numeric axis name -> values
    kv_dtype: str | None = None  # KV-cache format (None: the dtype)
    parallel: dict | None = None  # {tp, cp, nodes, cp_scheme} of this block, None: one device
    kernel: str = "triton"  # the implementation whose knobs time attention (auto: the fastest known)

    @property
    def size(self) -> int:
        return int(np.prod([len(v) for v in self.axes.values()]))


@dataclass
class Results:
    space: Space
    columns: dict | None = None  # every point, when kept
    front: dict = field(default_factory=dict)  # the Pareto set of feasible points
    n_points: int = 0
    n_feasible: int = 0
    partial: bool = False
    elapsed_s: float = 0.0


def blocks(space: Space, hw_names: tuple[str, ...]) -> list[Block]:
    out = []
    for hw_label, hw in hardware_variants(space, hw_names):
        for entry in space.variants:
            strings = {k: v for k, v in entry.params.items() if any(isinstance(x, str) for x in v)}
            numeric = {k: v for k, v in entry.params.items() if k not in strings}
            for combo in itertools.product(*strings.values()):
                for phase, dtype, kv, par, kernel in itertools.product(space.phase, space.dtype, space.kv_dtype,
                                                                       space.parallel or (None,), space.kernel):
                    axes = {"batch": space.batch, "context": space.context}
                    if phase == "decode":
                        axes["seq"] = space.seq
                    axes.update(numeric)
                    out.append(Block(hw_label, hw, entry, dict(zip(strings, combo)), phase, dtype,
                                     {k: np.asarray(v, dtype=np.float64) for k, v in axes.items()}, kv, par, kernel))
    return out


def build_workload(entry: VariantAxis, params: dict) -> Workload:
    if entry.model:
        return attention.from_model(entry.model, **params)
    return attention(entry.variant, **params)


def evaluate_rows(space: Space, block: Block, flat_index: np.ndarray) -> dict:
    """The columns of the block's points at these flat grid indices."""
    shape = [len(v) for v in block.axes.values()]
    idx = np.unravel_index(flat_index, shape)
    vals = {name: values[i] for (name, values), i in zip(block.axes.items(), idx)}
    params = {k: v for k, v in vals.items() if k not in ("batch", "context", "seq")}
    wl = build_workload(block.entry, {**params, **block.fixed})
    batch, length = vals["batch"], vals["context"]
    if block.phase == "decode":
        kw = dict(seq=vals["seq"], context=length)
    else:
        kw = dict(seq=length)
    if block.parallel:
        return _parallel_rows(space, block, wl, vals, kw, len(flat_index))
    p = predict(block.hw, wl, block.phase, batch, dtype=block.dtype, scope=space.scope,
                causal=space.causal, fused=space.fused, mapping=space.mapping, kv_dtype=block.kv_dtype,
                kernel=block.kernel, **kw)
    n = len(flat_index)
    cols = {"hardware": np.full(n, block.hw_label, dtype=object), "label": np.full(n, block.entry.label, dtype=object),
            "variant": np.full(n, wl.variant.name, dtype=object), "phase": np.full(n, block.phase, dtype=object),
            "dtype": np.full(n, block.dtype, dtype=object),
            "kv_dtype": np.full(n, block.kv_dtype or block.dtype, dtype=object),
            "kernel": np.broadcast_to(np.asarray(p.kernel, dtype=object), (n,)).copy()}
    for k, v in block.fixed.items():
        cols[k] = np.full(n, v, dtype=object)
    for k, v in vals.items():
        cols[k] = np.broadcast_to(v, (n,)).astype(np.float64)
    tokens = p.batch * p.seq
    devices = np.asarray(wl.params.get("tp", 1.0), dtype=np.float64)  # devices one replica spans
    numeric = {"latency_s": p.latency_s, "tokens_per_s": tokens / p.latency_s,
               "time_per_token_s": p.latency_s * devices / tokens,  # device-seconds per token
               "flops": p.flops, "executed_flops": p.executed_flops,
               "hbm_bytes": p.hbm_bytes, "min_hbm_bytes": p.min_hbm_bytes,
               "arithmetic_intensity": p.arithmetic_intensity, "kv_cache_bytes": p.kv_cache_bytes,
               "achieved_flop_per_s": p.flops / p.latency_s, "achieved_bytes_per_s": p.min_hbm_bytes / p.latency_s}
    from attn_dse.cost.step import serving  # tokens/s per GPU, TPOT (decode), TTFT (prefill)
    numeric.update(serving(p, wl))
    for k in ("n_split", "block_m", "block_n"):
        numeric[k] = p.mapping.get(k, np.nan) if p.mapping else np.nan
    numeric.update(_memory(space, block, wl, vals))
    for k, v in numeric.items():
        cols[k] = np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)).copy()
    for k in ("bound", "limiter"):
        cols[k] = np.broadcast_to(np.asarray(getattr(p, k), dtype=object), (n,)).copy()
    cols.update(apply_constraints(space.constraints, cols))
    cols["feasible"] = np.all([cols[k] for k in cols if k.startswith("ok_")], axis=0) if any(
        k.startswith("ok_") for k in cols) else np.ones(n, bool)
    return cols


def _parallel_rows(space: Space, block: Block, wl: Workload, vals: dict, kw: dict, n: int) -> dict:
    """A block spread over devices (cost/parallel.py): its step latency, per-device memory."""
    from attn_dse.cost.parallel import Parallel, predict_parallel, with_params
    par = Parallel(**block.parallel)
    p = predict_parallel(block.hw, wl, block.phase, vals["batch"], scope=space.scope, causal=space.causal,
                         fused=space.fused, dtype=block.dtype, par=par, kernel=block.kernel, **kw)
    cols = {k: np.full(n, v, dtype=object) for k, v in (("hardware", block.hw_label), ("label", block.entry.label),
            ("variant", wl.variant.name), ("phase", block.phase), ("dtype", block.dtype), ("cp_scheme", par.cp_scheme))}
    for k, v in {**block.fixed}.items():
        cols[k] = np.full(n, v, dtype=object)
    for k, v in vals.items():
        cols[k] = np.broadcast_to(v, (n,)).astype(np.float64)
    tokens = p.batch * p.seq
    numeric = {"tp": p.tp, "cp": p.cp, "nodes": p.nodes, "devices": p.devices, "latency_s": p.latency_s,
               "tokens_per_s": tokens / p.latency_s, "time_per_token_s": p.latency_s * p.devices / tokens,
               "flops": p.flops, "comm_s": p.comm_s, "exposed_comm_s": p.exposed_comm_s,
               "kv_cache_bytes": p.kv_cache_bytes}
    shard = {**vals, "context": vals["context"] / (par.cp if block.phase == "decode" else 1)}
    dev = with_params(wl, tp=par.tp) if par.tp > 1 else wl
    numeric.update(_memory(space, block, dev, shard, devices=par.tp))  # weights over the TP group
    for k, v in numeric.items():
        cols[k] = np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)).copy()
    cols["bound"] = np.full(n, "", dtype=object)
    cols["limiter"] = np.broadcast_to(np.asarray(p.limiter, dtype=object), (n,)).copy()
    cols.update(apply_constraints(space.constraints, cols))
    cols["feasible"] = np.all([cols[k] for k in cols if k.startswith("ok_")], axis=0) if any(
        k.startswith("ok_") for k in cols) else np.ones(n, bool)
    return cols


def _memory(space: Space, block: Block, wl: Workload, vals: dict, devices: int | None = None) -> dict:
    """Capacity per device: weights sharded over `devices`, plus this device's KV cache."""
    if devices is None:
        devices = block.hw.interconnect.devices_per_node if space.devices == "node" else (space.devices or 1)
    cap = capacity(block.hw, wl, block.phase, vals["batch"], vals["context"], vals.get("seq", 1), block.dtype,
                   space.causal, devices, space.usable_memory, space.weight_dtype, space.weights_bytes,
                   block.entry.weight_params, block.entry.label, kv_dtype=block.kv_dtype)
    return {"kv_bytes_per_token": cap.kv_bytes_per_token, "weight_bytes": cap.weight_bytes,
            "memory_bytes": cap.memory_bytes, "activation_bytes": cap.activation_bytes, "fits": cap.fits,
            "max_batch": cap.max_batch}


class _Front:
    """The running Pareto set of feasible rows (bounded: only the front is kept)."""

    def __init__(self, objectives):
        self.objectives, self.rows = objectives, None

    def add(self, cols: dict) -> None:
        feas = cols["feasible"]
        if not np.any(feas):
            return
        sub = {k: v[feas] for k, v in cols.items()}
        merged = sub if self.rows is None else _concat([self.rows, sub])
        keep = pareto_mask(objective_matrix(self.objectives, merged))
        self.rows = {k: v[keep] for k, v in merged.items()}


def _concat(parts: list[dict]) -> dict:
    """Stack chunks column-wise; a parameter one variant lacks (n_kv_heads for MLA) is None there."""
    keys = list(dict.fromkeys(k for p in parts for k in p))
    sizes = [len(p["latency_s"]) for p in parts]
    return {k: np.concatenate([p[k] if k in p else np.full(n, None, dtype=object) for p, n in zip(parts, sizes)])
            for k in keys}


def evaluate(space: Space, hw_names: tuple[str, ...] = (), *, on_chunk: Callable | None = None,
             on_progress: Callable | None = None, keep_limit: int = 2_000_000, seed: int = 0) -> Results:
    """Run the space's strategy. on_chunk(cols) receives every evaluated chunk (for writers);
    on_progress(done, total) follows the evaluation (total is None for evolve)."""
    start = time.perf_counter()
    bl = blocks(space, hw_names)
    plan = _plan(space, bl, seed)
    total = sum(len(ix) for _, ix in plan) if space.strategy != "evolve" else None
    res = Results(space)
    front = _Front(space.objectives)
    kept: list[dict] = []
    keep = total is None or total <= keep_limit
    done = 0
    try:
        for block, indices in (plan if space.strategy != "evolve" else _evolve_plan(space, bl, seed)):
            for lo in range(0, len(indices), CHUNK):
                cols = evaluate_rows(space, block, indices[lo:lo + CHUNK])
                _record(res, front, kept if keep else None, cols, on_chunk)
                done += len(cols["latency_s"])
                if on_progress:
                    on_progress(done, total)
    except KeyboardInterrupt:
        res.partial = True
    res.front = front.rows or {}
    res.columns = _concat(kept) if keep and kept else ({} if keep else None)
    res.elapsed_s = time.perf_counter() - start
    return res


def _record(res, front, kept, cols, on_chunk):
    # write first: an interrupt inside the writer leaves the chunk uncounted, so the summary
    # never counts more points than were written
    if on_chunk:
        on_chunk(cols)
    res.n_points += len(cols["latency_s"])
    res.n_feasible += int(np.sum(cols["feasible"]))
    front.add(cols)
    if kept is not None:
        kept.append(cols)


def _plan(space: Space, bl: list[Block], seed: int):
    if space.strategy == "grid":
        return [(b, np.arange(b.size)) for b in bl]
    if space.strategy == "random":
        rng = np.random.default_rng(seed)
        sizes = np.array([b.size for b in bl], dtype=float)
        counts = np.maximum(1, np.round(space.samples * sizes / sizes.sum())).astype(int)
        return [(b, np.unique(rng.integers(0, b.size, n))) for b, n in zip(bl, counts)]
    return []


def _evolve_plan(space: Space, bl: list[Block], seed: int):
    """Differential evolution over each block's numeric axes (as integer grid indices),
    minimizing the first objective with infeasible points penalized; every evaluated point is
    yielded so it lands in the results like a grid point."""
    from scipy.optimize import differential_evolution
    from attn_dse.dse.constraints import objective_matrix as om
    for block in bl:
        lens = [len(v) for v in block.axes.values()]
        evaluated: list[np.ndarray] = []

        def cost(x, block=block, lens=lens, evaluated=evaluated):
            idx = np.clip(np.rint(np.atleast_2d(x.T if x.ndim == 2 else x[None])), 0, np.array(lens) - 1).astype(int)
            flat = np.ravel_multi_index(idx.T, lens)
            evaluated.append(flat)
            cols = evaluate_rows(space, block, flat)
            c = om(space.objectives[:1], cols)[:, 0]
            return np.where(cols["feasible"], c, np.inf if not np.isfinite(c).any() else np.nanmax(np.abs(c)) * 1e6)

        budget = max(space.samples // max(len(bl), 1), 20)
        popsize = max(5, min(15, budget // 20))
        maxiter = max(1, budget // (popsize * len(lens)) - 1)
        differential_evolution(cost, [(0, n - 1) for n in lens], integrality=[True] * len(lens), seed=seed,
                               popsize=popsize, maxiter=maxiter, polish=False, vectorized=True,
                               updating="deferred", tol=0)
        yield block, np.unique(np.concatenate(evaluated))
