"""The sweep job: evaluate a space (or the built-in study), write every point, summarize.

`run_sweep` is what `attn-dse sweep` calls; it returns the summary and the results, from which
the CLI prints tables and draws figures."""
from __future__ import annotations

import dataclasses
import hashlib
import math
import pickle
from pathlib import Path

import numpy as np

from attn_dse.dse import study
from attn_dse.dse.constraints import objective_matrix
from attn_dse.dse.engine import make_engine
from attn_dse.dse.evaluate import CHUNK, evaluate
from attn_dse.dse.output import POINTS, Journal, finish, rows, write_summary
from attn_dse.errors import AttnDseError
from attn_dse.hardware.loader import load_hardware
from attn_dse.dse.space import MAX_POINTS, Space, check_grid, load_space


def run_sweep(hw: str | None, space_path: str | None, out_dir: str | Path, *, strategy: str | None = None,
              samples: int | None = None, on_progress=None, write_points: bool = True,
              max_points: int | None = None, formats: tuple[str, ...] = ("parquet",),
              workers: int | None = None, scheduler: str | None = None, resume: bool = False,
              chunk: int | None = None):
    """Evaluate the space (or the built-in study) on `workers` local processes or the Dask
    cluster at `scheduler` (engine.make_engine), write the points and summary.json into
    `out_dir`; `resume` continues an interrupted sweep into the same directory."""
    limit = max_points or MAX_POINTS
    space = load_space(space_path) if space_path else study.builtin_space()
    if strategy or samples:
        space = dataclasses.replace(space, strategy=strategy or space.strategy, samples=samples or space.samples)
    hw_names = (hw,) if hw else ()
    n_hardware = max(len(hw_names or space.hardware), 1) * math.prod(len(v) for v in space.hardware_axes.values())
    try:
        points = check_grid(space, max_points=limit, n_hardware=n_hardware)
    except AttnDseError as e:
        raise AttnDseError(e.problem, where=e.where,
                           fix=f"raise the limit with --max-points N, or {e.fix}") from None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chunk = chunk or CHUNK
    fingerprint = hashlib.sha256(pickle.dumps((space, hw_names, write_points, chunk))).hexdigest()
    journal = Journal(out, fingerprint, resume)
    engine = make_engine(workers, scheduler, points if space.strategy == "grid" else space.samples)
    res = evaluate(space, hw_names, on_progress=on_progress, engine=engine, journal=journal, chunk=chunk,
                   points_dir=(out / POINTS) if write_points else None)
    if write_points:
        finish(out, formats, journal.recorded)
    if not res.partial:
        journal.close()
    summary = _summary(space, res, hw)
    summary["engine"] = {"name": engine.name, "workers": engine.workers, "chunks": len(journal.recorded)}
    write_summary(out / "summary.json", summary)
    return summary, res


def _summary(space: Space, res, hw: str | None) -> dict:
    s = {"space": space.name, "description": space.description, "strategy": space.strategy,
         "points": res.n_points, "feasible": res.n_feasible, "partial": res.partial,
         "elapsed_s": res.elapsed_s, "objectives": list(space.objectives),
         "constraints": list(space.constraints)}
    front = res.front
    if front:
        order = np.argsort(objective_matrix(space.objectives[:1], front)[:, 0])
        s["pareto"] = rows(front, order)
    if res.best:
        s["best"] = rows(res.best, range(len(res.best["latency_s"])))
    if space.name == "builtin-study" and res.columns and not res.sampled:
        s["study"] = study.analyze(res.columns, load_hardware(hw or space.hardware[0]))
    return s
