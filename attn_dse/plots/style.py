"""Headless matplotlib with one consistent look."""
from __future__ import annotations

from pathlib import Path

import numpy as np


STYLE = {"figure.dpi": 110, "savefig.dpi": 160, "font.size": 10, "axes.grid": True, "grid.alpha": 0.3,
         "axes.spines.top": False, "axes.spines.right": False, "legend.frameon": False}


def subplots(*args, **kwargs):
    """(figure, axes) as pyplot.subplots gives them, in our style, without pyplot: no global
    figure registry to close, nothing to import beyond the Agg canvas (importing pyplot costs
    about 0.2 s of every sweep's figures)."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    matplotlib.rcParams.update(STYLE)  # as pyplot did: every artist drawn later takes the style
    fig = Figure(figsize=kwargs.pop("figsize", None))
    FigureCanvasAgg(fig)
    return fig, fig.subplots(*args, **kwargs)


def save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    return path


COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
          "#bcbd22", "#7f7f7f", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd"]


def drawn(ax) -> dict:
    """What the axes really hold: line and scatter coordinates by label (read back from the
    artists, so tests check the figure, not the inputs)."""
    out = {"lines": [], "scatter": []}
    for line in ax.get_lines():
        out["lines"].append({"label": line.get_label(), "x": list(map(float, line.get_xdata())),
                             "y": list(map(float, line.get_ydata()))})
    from matplotlib.collections import PathCollection
    for coll in ax.collections:
        offsets = coll.get_offsets()
        if isinstance(coll, PathCollection) and len(offsets):
            xy = np.asarray(offsets, dtype=np.float64)  # one conversion, not one per point
            out["scatter"].append({"label": coll.get_label(), "xy": list(map(tuple, xy.tolist()))})
    return out
