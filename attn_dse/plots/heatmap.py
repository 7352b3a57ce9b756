"""Heatmaps over context x batch: the fastest variant at each point, with its speed-up."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from attn_dse.plots.style import COLORS, drawn, save, subplots


def winner_heatmap(grid: dict, path: str | Path, title: str = "fastest variant") -> dict:
    """grid: {"contexts", "batches", "winner": [[name|None]], "speedup_vs_gqa8": [[x]]}."""
    from matplotlib.colors import ListedColormap
    winners = np.array(grid["winner"], dtype=object)
    names = sorted({w for w in winners.ravel() if w})
    code = np.full(winners.shape, np.nan)
    for i, n in enumerate(names):
        code[winners == n] = i
    fig, ax = subplots(figsize=(8, 4.8))
    cmap = ListedColormap(COLORS[: max(len(names), 1)])
    ax.imshow(np.ma.masked_invalid(code), cmap=cmap, vmin=-0.5, vmax=max(len(names), 1) - 0.5, aspect="auto",
              origin="lower")
    speed = np.array(grid.get("speedup_vs_gqa8", np.full(winners.shape, np.nan)), dtype=float)
    for (r, c), w in np.ndenumerate(winners):
        text = "does not fit" if w is None else (f"{w}\n{speed[r, c]:.2g}x" if np.isfinite(speed[r, c]) else w)
        ax.text(c, r, text, ha="center", va="center", fontsize=5.5, color="white" if w else "0.4")
    ax.set_xticks(range(len(grid["batches"])), [str(b) for b in grid["batches"]])
    ax.set_yticks(range(len(grid["contexts"])), [f"{c // 1024}k" for c in grid["contexts"]])
    ax.set_xlabel("batch")
    ax.set_ylabel("context")
    ax.grid(False)
    ax.set_title(title + " (x: speed-up per token over GQA-8)", fontsize=9)
    image = ax.images[0].get_array()
    texts = [t.get_text() for t in ax.texts]
    return {"codes": code, "names": names, "image": image, "texts": texts, "path": str(save(fig, path))}


def value_heatmap(values: np.ndarray, rows: list, cols: list, path: str | Path, title: str,
                  row_label: str = "context", col_label: str = "batch", fmt: str = "{:.2g}") -> dict:
    """A numeric heatmap (e.g. speed-up of one variant over another), log-coloured."""
    from matplotlib.colors import LogNorm
    fig, ax = subplots(figsize=(7, 4.5))
    v = np.asarray(values, float)
    im = ax.imshow(np.ma.masked_invalid(v), cmap="RdBu", norm=LogNorm(vmin=np.nanmin(v), vmax=np.nanmax(v)),
                   aspect="auto", origin="lower")
    for (r, c), x in np.ndenumerate(v):
        if np.isfinite(x):
            ax.text(c, r, fmt.format(x), ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(cols)), [str(x) for x in cols])
    ax.set_yticks(range(len(rows)), [str(x) for x in rows])
    ax.set_xlabel(col_label)
    ax.set_ylabel(row_label)
    ax.grid(False)
    fig.colorbar(im, ax=ax)
    ax.set_title(title, fontsize=9)
    return {"values": v, "image": ax.images[0].get_array(), "path": str(save(fig, path))}
