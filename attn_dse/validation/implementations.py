"""Every implementation measured on one GPU, side by side: error per (implementation, family)
with the stored knobs, and how often `--kernel auto` picks the implementation that measured
fastest on shapes more than one implementation ran.

    python3 -m attn_dse.validation.implementations h200 [--markdown]
"""
from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

from attn_dse.hardware.loader import load_hardware
from attn_dse.validation.compare import compare, data_dir, fastest_kernels, held_out_mask, load_measurements, shape_key

KERNEL_FILES = ("measurements", "vendor-measurements", "decode-fp8-2026-12-04-measurements", "mla-decode-fp8-measurements",
                "mla-decode-fp8-gluon-measurements", "mla-seesaw-measurements", "prefill-ws-measurements",
                "prefill-gluon-measurements", "backward-measurements", "backward-gluon-measurements")


def measured_rows(hw_name: str) -> list[dict]:
    """Our kernels' (bf16 and fp8-KV, forward and training steps) and the vendor kernels' stored
    rows for this GPU, each naming its implementation and whether a fit of its file holds it out
    (every 4th row of the file: `held_out`), one per kernel study (compare.fastest_kernels)."""
    rows = []
    for name in KERNEL_FILES:
        path = data_dir() / f"{hw_name}-{name}.csv"
        if path.is_file():
            mine = load_measurements(path)
            rows += [{**r, "implementation": r.get("implementation") or "triton", "held_out": bool(h)}
                     for r, h in zip(mine, held_out_mask(len(mine)))]
    return fastest_kernels(rows)


def by_implementation(hw, rows: list[dict]) -> tuple[list[dict], dict]:
    """Per (implementation, family): rows, MAPE, worst, held-out MAPE (the rows a fit of their
    file holds out: every 4th of the file, whatever the family); and each row's prediction, keyed
    by row index."""
    groups = defaultdict(list)
    for i, r in enumerate(rows):
        groups[r["implementation"]].append(i)
    table, predicted = [], {}
    for impl, index in sorted(groups.items()):
        mine = [rows[i] for i in index]
        c = compare(hw, mine, impl)
        test = np.array([r["held_out"] for r in mine])
        predicted.update({i: float(p) for i, p in zip(index, c.predicted)})
        for fam, s in c.summary().items():
            if fam == "all":
                continue
            held = c.summary(test).get(fam)
            table.append({"implementation": impl, "family": fam, "rows": s["n"], "mape": s["mape"],
                          "worst": s["worst"], "held_out_mape": held["mape"] if held else float("nan"),
                          "held_out_rows": held["n"] if held else 0})
    return table, predicted


def auto_picks(rows: list[dict], predicted: dict) -> dict:
    """Shapes more than one implementation measured: how often the fastest predicted is the fastest measured."""
    shapes = defaultdict(dict)
    for i, r in enumerate(rows):
        shapes[shape_key(r)][r["implementation"]] = i
    contested = [impls for impls in shapes.values() if len(impls) > 1]
    right = []
    for impls in contested:
        names = list(impls)
        measured = [float(rows[impls[n]]["median_s"]) for n in names]
        model = [predicted[impls[n]] for n in names]
        right.append(int(np.argmin(measured)) == int(np.argmin(model)))
    return {"shapes": len(contested), "right": int(sum(right)), "share": float(np.mean(right)) if right else float("nan")}


def markdown(hw_name: str, table: list[dict], picks: dict) -> str:
    lines = [f"| implementation | family | GPU | rows | MAPE | worst | held-out MAPE (rows) |", "|---|---|---|---|---|---|---|"]
    for t in table:
        lines.append(f"| {t['implementation']} | {t['family']} | {hw_name} | {t['rows']} | {100 * t['mape']:.1f}% | "
                     f"{100 * t['worst']:.0f}% | {100 * t['held_out_mape']:.1f}% ({t['held_out_rows']}) |")
    lines.append("")
    lines.append(f"`--kernel auto` picks the measured-fastest implementation on {picks['right']} of "
                 f"{picks['shapes']} shapes that more than one implementation ran ({100 * picks['share']:.0f}%).")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("hw", help="a preset with stored measurements, e.g. h200")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = ap.parse_args(argv)
    hw = load_hardware(args.hw)
    rows = measured_rows(hw.name)
    table, predicted = by_implementation(hw, rows)
    picks = auto_picks(rows, predicted)
    if args.markdown:
        print(markdown(hw.name, table, picks))
        return
    for t in table:
        print(f"{t['implementation']:8s} {t['family']:13s} rows {t['rows']:3d}  MAPE {100 * t['mape']:5.1f}%  "
              f"worst {100 * t['worst']:4.0f}%  held-out {100 * t['held_out_mape']:5.1f}% ({t['held_out_rows']})")
    print(f"auto picks the measured-fastest on {picks['right']}/{picks['shapes']} contested shapes "
          f"({100 * picks['share']:.0f}%)")


if __name__ == "__main__":
    main()
