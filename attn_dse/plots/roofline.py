"""Arithmetic-intensity rooflines: ceilings of every memory level and compute unit, ridge
points, and workloads placed at (FLOP/byte, attained FLOP/s), several presets overlaid."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from attn_dse.hardware.spec import Hardware
from attn_dse.plots.style import COLORS, drawn, save, subplots

EXP_HEAD_DIM = 128  # the exp ceiling is drawn for attention with d_qk = d_v = 128


def ceiling_lines(hw: Hardware, dtypes=("bf16",)) -> dict:
    """Every ceiling of one preset, in FLOP/s and bytes/s (datasheet values)."""
    compute = {f"matmul {d}": hw.peak_flop_per_s[d] for d in dtypes if d in hw.peak_flop_per_s}
    compute["vector fp32"] = hw.vector_flop_per_s
    # attention does 2*(d_qk + d_v) matmul FLOPs per exp: the exp unit caps it here
    compute[f"exp-limited attention (d={EXP_HEAD_DIM})"] = hw.exp_per_s * 4 * EXP_HEAD_DIM
    memory = {lv.name: lv.bytes_per_s for lv in hw.memory}
    return {"compute": compute, "memory": memory,
            "ridge": {name: hw.peak_flop_per_s["bf16"] / bw for name, bw in memory.items()}}


def roofline_plot(hws: list[Hardware], points: list[dict], path: str | Path, title: str | None = None) -> dict:
    fig, ax = subplots(figsize=(8.5, 5.8))
    ai = np.logspace(-1, 5, 400)
    data = {"ceilings": {}, "points": points}
    styles = ["-", "--", ":", "-."]
    for h, hw in enumerate(hws):
        lines = ceiling_lines(hw)
        data["ceilings"][hw.name] = lines
        peak = hw.peak_flop_per_s["bf16"]
        for m, (name, bw) in enumerate(lines["memory"].items()):
            y = np.minimum(peak, ai * bw)
            ax.plot(ai, y, styles[h % 4], color=COLORS[m % len(COLORS)], lw=1.6 if name == "hbm" else 1.0,
                    label=f"{hw.name}: {name} {bw / 1e12:.3g} TB/s")
            ax.plot([peak / bw], [peak], "o", color=COLORS[m % len(COLORS)], ms=4)
        for c, (name, rate) in enumerate(lines["compute"].items()):
            ax.axhline(rate, ls=styles[h % 4], color="0.35", lw=0.8)
            ax.annotate(f"{hw.name} {name}: {rate / 1e12:.3g} TFLOP/s", (ai[-1], rate), ha="right",
                        va="bottom", fontsize=7, color="0.3")
        ridge = lines["ridge"]["hbm"]
        ax.annotate(f"ridge {ridge:.0f}", (ridge, peak), textcoords="offset points", xytext=(4, -12), fontsize=7)
    labels = sorted({(p["label"], p["phase"]) for p in points})
    markers = {"decode": "o", "prefill": "s", "train": "^"}
    for k, (label, phase) in enumerate(labels):
        for hw in hws:
            pts = [p for p in points if p["label"] == label and p["phase"] == phase and p["hardware"] == hw.name]
            xs, ys = [p["intensity"] for p in pts], [p["flop_per_s"] for p in pts]
            color = COLORS[(k + 3) % len(COLORS)]
            ax.plot(xs, ys, marker=markers.get(phase, "o"), color=color, lw=0.8, ms=5,
                    label=f"{label} {phase}" if hw is hws[0] else None)
            if pts and hw is hws[0]:
                ax.annotate(f"{label} {phase} ({pts[-1]['context'] // 1024}k)", (xs[-1], ys[-1]), fontsize=7,
                            textcoords="offset points", xytext=(4, 3), color=color)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / HBM byte)")
    ax.set_ylabel("attainable FLOP/s")
    ax.set_ylim(1e11, 2 * max(max(c["compute"].values()) for c in data["ceilings"].values()))
    ax.set_title(title or "Attention on the roofline: " + ", ".join(h.name for h in hws))
    ax.legend(fontsize=7, loc="lower right", ncol=2)
    data["drawn"] = drawn(ax)
    data["path"] = str(save(fig, path))
    return data
