"""Predicted vs measured: log-log scatter per kernel family with the error band."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from attn_dse.plots.style import COLORS, drawn, save, subplots


def predicted_vs_measured(measured_s, predicted_s, families, path: str | Path, band: float = 0.10,
                          title: str = "predicted vs measured") -> dict:
    m, p = np.asarray(measured_s, float), np.asarray(predicted_s, float)
    fam = np.asarray(families, dtype=object)
    fig, ax = subplots(figsize=(6, 6))
    lo, hi = np.nanmin([m.min(), p.min()]) / 1.5, np.nanmax([m.max(), p.max()]) * 1.5
    line = np.array([lo, hi])
    ax.plot(line, line, "k-", lw=1)
    ax.fill_between(line, line * (1 - band), line * (1 + band), color="0.85", label=f"±{band:.0%}")
    for k, f in enumerate(sorted(set(fam))):
        sel = fam == f
        err = np.abs(p[sel] - m[sel]) / m[sel]
        ax.scatter(m[sel], p[sel], s=14, color=COLORS[k % len(COLORS)],
                   label=f"{f} (MAPE {100 * err.mean():.1f}%)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured time (s)")
    ax.set_ylabel("predicted time (s)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    return {"measured": m, "predicted": p, "drawn": drawn(ax), "path": str(save(fig, path))}
