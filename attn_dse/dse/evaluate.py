"""Evaluate a design space: vectorized over the numeric axes, chunked for bounded memory.

Categorical choices (hardware point, variant entry, string parameters, phase, dtype) form
blocks; inside a block the numeric axes (batch, context, seq, numeric parameters) are a
cartesian grid evaluated in chunks of numpy arrays by one `predict` call each. Rows stream to
the writer; only the Pareto front (and all rows, below `keep_limit`) stay in memory.
Ctrl-C stops between chunks and leaves a valid partial result.
"""
from __future__ import annotations

import hashlib
import itertools
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from attn_dse.dse.constraints import apply_constraints, objective_matrix
from attn_dse.dse.engine import Serial
from attn_dse.dse.output import write_part
from attn_dse.dse.pareto import pareto_mask
from attn_dse.dse.space import Space, VariantAxis, hardware_variants
from attn_dse.cost.capacity import capacity
from attn_dse.cost.predict import predict
from attn_dse.workloads import attention
from attn_dse.workloads.registry import Workload

CHUNK = 50_000  # points per task (one predict call per block segment)
KEEP_LIMIT = 100_000  # up to here every row is kept in memory; above, every k-th (for figures)
N_BEST = 10  # rows of the summary's 'best' table


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
    columns: dict | None = None  # every point (or every k-th above the keep limit)
    front: dict = field(default_factory=dict)  # the Pareto set of feasible points
    n_points: int = 0
    n_feasible: int = 0
    best: dict = field(default_factory=dict)  # the best feasible rows by the first objective
    partial: bool = False
    sampled: bool = False  # columns hold every k-th row, not all
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


def space_params(space: Space) -> dict[str, bool]:
    """Every variant parameter of the space, in order, and whether it holds labels (strings):
    each chunk carries all of them (an entry without one has it empty), so every chunk of a
    space has the same columns in the same order."""
    out: dict[str, bool] = {}
    for entry in space.variants:
        for k, v in entry.params.items():
            out[k] = out.get(k, False) or any(isinstance(x, str) for x in v)
    return out


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
    n = len(flat_index)
    if block.parallel:
        return _parallel_rows(space, block, wl, vals, kw, n)
    p = predict(block.hw, wl, block.phase, batch, dtype=block.dtype, scope=space.scope,
                causal=space.causal, fused=space.fused, mapping=space.mapping, kv_dtype=block.kv_dtype,
                kernel=block.kernel, **kw)
    cols = _inputs(space, block, wl, vals, kw, n, kv_dtype=block.kv_dtype or block.dtype,
                   kernel=np.broadcast_to(np.asarray(p.kernel, dtype=object), (n,)).copy())
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
    return _outputs(space, cols, numeric, n, bound=p.bound, limiter=p.limiter)


def _inputs(space: Space, block: Block, wl: Workload, vals: dict, kw: dict, n: int, **labels) -> dict:
    """The columns that say which point a row is: its labels, then batch, context, seq (the
    new tokens per sequence; a prefill's whole prompt), then every parameter of the space."""
    cols = {k: np.full(n, v, dtype=object) for k, v in (("hardware", block.hw_label), ("label", block.entry.label),
            ("variant", wl.variant.name), ("phase", block.phase), ("dtype", block.dtype))}
    for k, v in labels.items():
        cols[k] = v if isinstance(v, np.ndarray) else np.full(n, v, dtype=object)
    for k in ("batch", "context"):
        cols[k] = np.broadcast_to(vals[k], (n,)).astype(np.float64)
    cols["seq"] = np.broadcast_to(kw["seq"], (n,)).astype(np.float64)
    for k, is_label in space_params(space).items():
        if k in block.fixed:
            cols[k] = np.full(n, block.fixed[k], dtype=object)
        elif k in vals:
            cols[k] = np.broadcast_to(vals[k], (n,)).astype(np.float64)
        else:  # this entry has no such parameter
            cols[k] = np.full(n, None, dtype=object) if is_label else np.full(n, np.nan)
    return cols


def _outputs(space: Space, cols: dict, numeric: dict, n: int, bound, limiter) -> dict:
    """The model's figures as float columns, what bounds each point, and the constraints' verdicts."""
    for k, v in numeric.items():
        cols[k] = np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)).copy()
    cols["bound"] = np.broadcast_to(np.asarray(bound, dtype=object), (n,)).copy()
    cols["limiter"] = np.broadcast_to(np.asarray(limiter, dtype=object), (n,)).copy()
    cols.update(apply_constraints(space.constraints, cols))
    oks = [cols[k] for k in cols if k.startswith("ok_")]
    cols["feasible"] = np.all(oks, axis=0) if oks else np.ones(n, bool)
    return cols


def _parallel_rows(space: Space, block: Block, wl: Workload, vals: dict, kw: dict, n: int) -> dict:
    """A block spread over devices (cost/parallel.py): its step latency, per-device memory."""
    from attn_dse.cost.parallel import Parallel, predict_parallel, with_params
    par = Parallel(**block.parallel)
    p = predict_parallel(block.hw, wl, block.phase, vals["batch"], scope=space.scope, causal=space.causal,
                         fused=space.fused, dtype=block.dtype, par=par, kernel=block.kernel, **kw)
    cols = _inputs(space, block, wl, vals, kw, n, cp_scheme=par.cp_scheme)
    tokens = p.batch * p.seq
    numeric = {"tp": p.tp, "cp": p.cp, "nodes": p.nodes, "devices": p.devices, "latency_s": p.latency_s,
               "tokens_per_s": tokens / p.latency_s, "time_per_token_s": p.latency_s * p.devices / tokens,
               "flops": p.flops, "comm_s": p.comm_s, "exposed_comm_s": p.exposed_comm_s,
               "kv_cache_bytes": p.kv_cache_bytes}
    shard = {**vals, "context": vals["context"] / (par.cp if block.phase == "decode" else 1)}
    dev = with_params(wl, tp=par.tp) if par.tp > 1 else wl
    numeric.update(_memory(space, block, dev, shard, devices=par.tp))  # weights over the TP group
    return _outputs(space, cols, numeric, n, bound="", limiter=p.limiter)


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


@dataclass
class Chunk:
    """What one evaluated chunk hands to the reduce: counts, its Pareto set, its best rows by
    the first objective, and its rows for figures (all, or every k-th)."""
    id: int
    n_points: int
    n_feasible: int
    front: dict
    best: dict
    sample: dict | None


def summarize(space: Space, task_id: int, cols: dict, sample_every: int = 1, n_best: int = N_BEST) -> Chunk:
    feas = np.flatnonzero(cols["feasible"])
    sub = {k: v[feas] for k, v in cols.items()}
    on_front = pareto_mask(objective_matrix(space.objectives, sub))
    front = {k: v[on_front] for k, v in sub.items()}
    order = np.argsort(objective_matrix(space.objectives[:1], sub)[:, 0], kind="stable")[:n_best]
    sample = (None if not sample_every else cols if sample_every == 1
              else {k: v[::sample_every].copy() for k, v in cols.items()})  # copies: a view keeps the chunk alive
    return Chunk(task_id, len(cols["latency_s"]), len(feas), front, {k: v[order] for k, v in sub.items()}, sample)


class Reduce:
    """Folds chunks, in chunk order, into the sweep's result: the same chunks in the same order
    give the same result, whichever engine evaluated them."""

    def __init__(self, space: Space, n_best: int = N_BEST):
        self.space, self.n_best = space, n_best
        self.n_points = self.n_feasible = 0
        self.front: dict = {}
        self.best: dict = {}
        self.samples: list[dict] = []

    def add(self, c: Chunk) -> None:
        self.n_points += c.n_points
        self.n_feasible += c.n_feasible
        if c.n_feasible:
            merged = _concat([self.front, c.front]) if self.front else c.front
            keep = pareto_mask(objective_matrix(self.space.objectives, merged))
            self.front = {k: v[keep] for k, v in merged.items()}
            merged = _concat([self.best, c.best]) if self.best else c.best
            order = np.argsort(objective_matrix(self.space.objectives[:1], merged)[:, 0], kind="stable")
            self.best = {k: v[order[:self.n_best]] for k, v in merged.items()}
        if c.sample is not None:
            self.samples.append(c.sample)


def _concat(parts: list[dict]) -> dict:
    """Stack chunks column-wise (every chunk of a space has the same columns)."""
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


@dataclass(frozen=True)
class Task:
    """A chunk of work: segments (block index, the block's flat indices as a range or an array)
    of at most CHUNK points together, so many small blocks make one task."""
    id: int
    segments: tuple


def tasks(plan, chunk: int = CHUNK):
    """Pack the plan's (block index, indices) into tasks of at most `chunk` points, lazily."""
    segs, size, n = [], 0, 0
    for b, idx in plan:
        for lo in range(0, len(idx), chunk):
            piece = idx[lo:lo + chunk]
            if segs and size + len(piece) > chunk:
                yield Task(n, tuple(segs))
                segs, size, n = [], 0, n + 1
            segs.append((b, piece))
            size += len(piece)
    if segs:
        yield Task(n, tuple(segs))


def task_rows(space: Space, bl: list[Block], task: Task) -> dict:
    """Evaluate a task's segments; one set of columns."""
    parts = [evaluate_rows(space, bl[b], np.arange(p.start, p.stop) if isinstance(p, range) else p)
             for b, p in task.segments]
    return parts[0] if len(parts) == 1 else _concat(parts)


@dataclass(frozen=True)
class Job:
    """What every worker needs to evaluate any chunk of one sweep."""
    space: Space
    hw_names: tuple
    points_dir: str | None  # where chunks write their Parquet parts (None: no point files)
    sample_every: int  # rows kept for figures: every k-th (1: all, 0: none)
    key: str = field(default="", compare=False)

    def __post_init__(self):
        digest = hashlib.sha256(pickle.dumps((self.space, self.hw_names))).hexdigest()
        object.__setattr__(self, "key", digest)


_BLOCKS: dict = {}  # per worker process: the blocks of the job it last saw


def run_task(job: Job, task: Task) -> Chunk:
    """Evaluate one chunk, write its part, summarize it (what an engine runs in a worker)."""
    if job.key not in _BLOCKS:
        _BLOCKS.clear()
        _BLOCKS[job.key] = blocks(job.space, job.hw_names)
    cols = task_rows(job.space, _BLOCKS[job.key], task)
    if job.points_dir:
        write_part(Path(job.points_dir), task.id, cols)
    return summarize(job.space, task.id, cols, job.sample_every)


def evaluate(space: Space, hw_names: tuple[str, ...] = (), *, on_progress: Callable | None = None,
             keep_limit: int = KEEP_LIMIT, seed: int = 0, engine=None, points_dir=None, journal=None,
             chunk: int = CHUNK) -> Results:
    """Run the space's strategy as a map over chunks (`engine`: this process by default) and a
    reduce of their summaries. With `points_dir` every chunk writes its rows there as a Parquet
    part; with a `journal`, finished chunks are recorded, and those an earlier run recorded are
    read back instead of evaluated. Up to `keep_limit` points every row stays in
    `Results.columns`; above, every k-th. on_progress(done, total) follows the evaluation
    (total is None for evolve). Ctrl-C stops between chunks and leaves a valid partial result."""
    start = time.perf_counter()
    bl = blocks(space, hw_names)
    evolve = space.strategy == "evolve"
    plan = _evolve_plan(space, bl, seed) if evolve else _plan(space, bl, seed)
    total = None if evolve else sum(len(ix) for _, ix in plan)
    sample_every = 0 if not keep_limit else 1 if total is None else max(1, -(-total // keep_limit))
    job = Job(space, tuple(hw_names), str(points_dir) if points_dir else None, sample_every)
    engine = engine or Serial()
    red, res = Reduce(space), Results(space)
    earlier = journal.finished() if journal else {}
    if evolve:  # the plan is a generator: walk it once, every chunk evaluated here
        plan = list(plan)
    all_tasks = list(tasks(_indexed(plan, bl), chunk))
    finished = engine.map(run_task, job, (t for t in all_tasks if t.id not in earlier))
    try:
        for t in all_tasks:
            c = earlier.get(t.id) or next(finished)
            if journal and t.id not in earlier:
                journal.record(c)
            red.add(c)
            if on_progress:
                on_progress(red.n_points, total)
    except KeyboardInterrupt:
        res.partial = True
    finally:
        finished.close()
    res.n_points, res.n_feasible, res.front, res.best = red.n_points, red.n_feasible, red.front, red.best
    res.columns = (_concat(red.samples) if red.samples else {}) if sample_every else None
    res.sampled = sample_every > 1
    res.elapsed_s = time.perf_counter() - start
    return res


def _indexed(plan, bl: list[Block]):
    index = {id(b): i for i, b in enumerate(bl)}
    return [(index[id(b)], ix) for b, ix in plan]


def _plan(space: Space, bl: list[Block], seed: int):
    if space.strategy == "grid":
        return [(b, range(b.size)) for b in bl]
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
