"""Pareto plot of any two objectives, front highlighted."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from attn_dse.dse.pareto import pareto_mask
from attn_dse.plots.style import COLORS, drawn, save, subplots


def pareto_plot(cols: dict, x: str, y: str, path: str | Path, title: str | None = None,
                maximize: tuple[str, ...] = ("tokens_per_s", "max_batch")) -> dict:
    """Feasible points coloured by label, infeasible ones faint, the (x, y) front as a line."""
    xs, ys = np.asarray(cols[x], float), np.asarray(cols[y], float)
    feas = np.asarray(cols.get("feasible", np.ones(len(xs), bool)), bool)
    sign = np.array([-1 if x in maximize else 1, -1 if y in maximize else 1])
    front = np.zeros(len(xs), bool)
    idx = np.flatnonzero(feas)
    front[idx[pareto_mask(np.stack([xs[idx], ys[idx]], 1) * sign)]] = True
    fig, ax = subplots(figsize=(7.5, 5))
    ax.scatter(xs[~feas], ys[~feas], s=6, color="0.85", label="infeasible")
    labels = np.asarray(cols.get("label", np.full(len(xs), "points")), dtype=object)
    for k, lab in enumerate(sorted(set(labels[feas]))):
        m = feas & (labels == lab)
        ax.scatter(xs[m], ys[m], s=10, color=COLORS[k % len(COLORS)], alpha=0.7, label=str(lab))
    order = np.flatnonzero(front)[np.argsort(xs[front])]
    ax.plot(xs[order], ys[order], "k-", lw=1.5, marker="D", ms=4, label="Pareto front", zorder=5)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(title or f"Pareto front: {x} vs {y}")
    ax.legend(fontsize=6, ncol=1 + len(set(labels[feas])) // 16, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return {"x": xs, "y": ys, "front": front, "drawn": drawn(ax), "path": str(save(fig, path))}
