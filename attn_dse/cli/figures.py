"""Figures the CLI draws after a sweep (the library returns data; drawing is the CLI's job)."""
from __future__ import annotations

from pathlib import Path

FIGURE_POINTS = 20_000  # points a scatter draws (every k-th of the sample; the whole front besides):
# 100 000 took 0.6 s to render, 20 000 0.3 s, and look the same at the figure's resolution


def sweep_figures(res, summary: dict, out: Path) -> list[str]:
    """The Pareto front of the first two objectives and the study's winner heatmaps."""
    from attn_dse.plots import heatmap, pareto
    made = []
    objectives = [next(iter(o.values())) for o in res.space.objectives]
    if len(objectives) >= 2:
        path = out / "pareto.png"
        import numpy as np
        cols = res.columns
        step = -(-len(cols.get("latency_s", ())) // FIGURE_POINTS) if cols else 1
        if step > 1:
            cols = {k: v[::step] for k, v in cols.items()}
        if (res.sampled or step > 1) and res.front:  # a sample of the points, and the whole front
            cols = {k: np.concatenate([cols[k], res.front[k]]) for k in cols}
        pareto.pareto_plot(cols, objectives[0], objectives[1], path, title=f"{res.space.name}: Pareto front")
        made.append(str(path))
    for key, grid in summary.get("study", {}).get("heatmaps", {}).items():
        path = out / f"winners-{key.replace('/', '-')}.png"
        heatmap.winner_heatmap(grid, path, title=f"{summary['study']['hardware']}: fastest variant, {key}")
        made.append(str(path))
    return made
