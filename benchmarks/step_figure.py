"""Tokens/s per GPU against time per output token (TPOT) for GQA-8, MLA and a block-sparse
variant (MoBA-style, 4 blocks of 256) inside Llama-3-70B, on H100 and H20: the figure and table
of docs/STEP.md.

    PYTHONPATH=. python3 benchmarks/step_figure.py [-o docs/step-tps-vs-tpot.png]   (from the repository root)

Each point is one decode batch that fits the memory plan (fp8 weights, activations and KV cache),
tensor parallel over the 8 GPUs of a node: attention heads, MLP and vocabulary sharded; GQA-8's
KV heads split one per GPU, MLA's latent cache held whole by every GPU.
"""
from __future__ import annotations

import argparse
import sys

from attn_dse.dse.study import serving_curves
from attn_dse.plots.style import COLORS, save, subplots

HARDWARE = ("h100", "h20")
TICKS_MS = (2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200)
LABELS = ("gqa-8", "mla", "moba-4x256")
CONTEXTS = (8192, 32768)


def curves():
    return [r for hw in HARDWARE for r in serving_curves(hw, LABELS, CONTEXTS)]


def draw(rows, path):
    fig, axes = subplots(1, len(HARDWARE), figsize=(11, 4.2), sharey=True)
    for ax, hw in zip(axes, HARDWARE):
        for ci, label in enumerate(LABELS):
            for ctx, style in zip(CONTEXTS, ("-", "--")):
                pts = [r for r in rows if (r["hardware"], r["label"], r["context"]) == (hw, label, ctx)]
                if pts:
                    ax.plot([r["tpot_s"] * 1e3 for r in pts], [r["tokens_per_s_per_gpu"] for r in pts], style,
                            marker="o", ms=3, color=COLORS[ci], label=f"{label}, {ctx // 1024}k context")
        ax.set_title(f"Llama-3-70B-class decode, TP 8 on {hw.upper()} (fp8)")
        ax.set_xlabel("time per output token (ms)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        lo, hi = ax.get_xlim()
        ax.set_xticks([t for t in TICKS_MS if lo <= t <= hi], [f"{t:g}" for t in TICKS_MS if lo <= t <= hi])
        ax.set_xticks([], minor=True)
    axes[0].set_ylabel("tokens/s per GPU")
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=8)
    return save(fig, path)


def table(rows, targets_ms=(20, 50, 100)) -> str:
    """Markdown: the most tokens/s per GPU each variant reaches under each TPOT target."""
    lines = ["| hardware | context | variant | " + " | ".join(f"TPOT <= {t} ms" for t in targets_ms) + " | max batch |",
             "|---|---|---|" + "---|" * len(targets_ms) + "---|"]
    for hw in HARDWARE:
        for ctx in CONTEXTS:
            for label in LABELS:
                pts = [r for r in rows if (r["hardware"], r["label"], r["context"]) == (hw, label, ctx)]
                cells = []
                for t in targets_ms:
                    ok = [r for r in pts if r["tpot_s"] * 1e3 <= t]
                    best = max(ok, key=lambda r: r["tokens_per_s_per_gpu"]) if ok else None
                    cells.append(f"{best['tokens_per_s_per_gpu']:,.0f} (batch {best['batch']})" if best else "-")
                mb = pts[0]["max_batch"] if pts else 0
                lines.append(f"| {hw} | {ctx // 1024}k | {label} | " + " | ".join(cells) + f" | {mb} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", default="docs/step-tps-vs-tpot.png")
    args = ap.parse_args()
    rows = curves()
    print(f"wrote {draw(rows, args.output)}")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
