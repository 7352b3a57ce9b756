"""The sweep job: evaluate a space (or the built-in study), write every point, summarize.

`run_sweep` is what `attn-dse sweep` calls; it returns the summary and the results, from which
the CLI prints tables and draws figures."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from attn_dse.hardware.loader import load_hardware
from attn_dse.dse import study
from attn_dse.dse.constraints import objective_matrix
from attn_dse.dse.evaluate import evaluate
from attn_dse.dse.output import PointWriter, rows, write_summary
import math

from attn_dse.errors import AttnDseError
from attn_dse.dse.space import MAX_POINTS, Space, check_grid, load_space


def run_sweep(hw: str | None, space_path: str | None, out_dir: str | Path, *, strategy: str | None = None,
              samples: int | None = None, on_progress=None, write_points: bool = True,
              max_points: int | None = None, formats: tuple[str, ...] = ("parquet",)):
    limit = max_points or MAX_POINTS
    space = load_space(space_path) if space_path else study.builtin_space()
    if strategy or samples:
        import dataclasses
        space = dataclasses.replace(space, strategy=strategy or space.strategy, samples=samples or space.samples)
    hw_names = (hw,) if hw else ()
    n_hardware = max(len(hw_names or space.hardware), 1) * math.prod(len(v) for v in space.hardware_axes.values())
    try:
        check_grid(space, max_points=limit, n_hardware=n_hardware)
    except AttnDseError as e:
        raise AttnDseError(e.problem, where=e.where,
                           fix=f"raise the limit with --max-points N, or {e.fix}") from None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    writer = PointWriter(out, formats) if write_points else None
    try:
        res = evaluate(space, hw_names, on_chunk=writer, on_progress=on_progress)
    finally:
        if writer:
            writer.close()
    summary = _summary(space, res, hw)
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
    if res.columns:
        cols = res.columns
        feas = np.flatnonzero(cols["feasible"])
        order = feas[np.argsort(objective_matrix(space.objectives[:1], {k: v[feas] for k, v in cols.items()})[:, 0])]
        s["best"] = rows(cols, order[:10])
        if space.name == "builtin-study":
            s["study"] = study.analyze(cols, load_hardware(hw or space.hardware[0]))
    return s
