"""Figures the CLI draws after a sweep (the library returns data; drawing is the CLI's job)."""
from __future__ import annotations

from pathlib import Path


def sweep_figures(res, summary: dict, out: Path) -> list[str]:
    """The Pareto front of the first two objectives and the study's winner heatmaps."""
    from attn_dse.plots import heatmap, pareto
    made = []
    objectives = [next(iter(o.values())) for o in res.space.objectives]
    if len(objectives) >= 2:
        path = out / "pareto.png"
        cols = res.columns
        if res.sampled and res.front:  # a sample of the points, and the whole front
            import numpy as np
            cols = {k: np.concatenate([cols[k], res.front[k]]) for k in cols}
        pareto.pareto_plot(cols, objectives[0], objectives[1], path, title=f"{res.space.name}: Pareto front")
        made.append(str(path))
    for key, grid in summary.get("study", {}).get("heatmaps", {}).items():
        path = out / f"winners-{key.replace('/', '-')}.png"
        heatmap.winner_heatmap(grid, path, title=f"{summary['study']['hardware']}: fastest variant, {key}")
        made.append(str(path))
    return made
