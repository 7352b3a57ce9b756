"""The step model's MLP against measured FFN rows (`gpu/ffn.py`): dense gated FFNs through the
`gemm` knobs, MoE grouped GEMMs through the grouped GEMM's own knobs (`cost/step.py`
GROUPED_GEMM_KNOBS), both predicted by `cost/ffn.py` from the row's shape alone (tokens, widths,
experts, top-k: the routing is the model's, not the row's realised counts). The grouped GEMM's
three knobs (matmul and HBM efficiency, a fixed cost per grouped GEMM) are fitted on three
quarters of the rows and judged on the held-out quarter; `--write` stores them with provenance.

    python3 -m attn_dse.validation.ffn HW CSV [--implementation triton] [--rows] [--write]
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from attn_dse.calibration.knobs import package_dir
from attn_dse.cost.ffn import GemmCosts, dense_ffn, grouped_ffn
from attn_dse.cost.knobs import knobs_for
from attn_dse.cost.roofline import ceilings
from attn_dse.cost.step import GROUPED_GEMM_KNOBS, gemm_costs
from attn_dse.errors import AttnDseError
from attn_dse.hardware.loader import load_hardware
from attn_dse.validation.compare import read_csv
from attn_dse.workloads.shape import DTYPE_BYTES

REQUIRED = ("kind", "tokens", "d_model", "width", "n_experts", "top_k", "dtype", "median_s")
KINDS = ("dense_ffn", "moe_ffn")


@dataclass(frozen=True)
class FfnValidation:
    knobs: GemmCosts  # as used (the grouped GEMM's fitted when fit=True)
    mape: float  # every row
    held_out_mape: float  # the held-out quarter (not fitted on when fit=True)
    by_kind: dict  # kind -> MAPE
    worst: float
    n_rows: int
    n_fitted: int  # rows the fit saw (0 without a fit)
    predicted_s: np.ndarray
    held: np.ndarray  # True for the held-out rows


def load_rows(path) -> list[dict]:
    rows = read_csv(path, REQUIRED, "python3 -m attn_dse.gpu.ffn")
    for i, r in enumerate(rows):
        if r["kind"] not in KINDS:
            raise AttnDseError(f"row {i + 2}: kind '{r['kind']}' is unknown", where=str(path), fix="dense_ffn or moe_ffn")
        if r["dtype"] not in DTYPE_BYTES:
            raise AttnDseError(f"row {i + 2}: dtype '{r['dtype']}' is unknown", where=str(path), fix="e.g. bf16")
        if r["kind"] == "moe_ffn" and not 0 < float(r["top_k"]) <= float(r["n_experts"]):
            raise AttnDseError(f"row {i + 2}: top_k {r['top_k']} of {r['n_experts']} experts", where=str(path),
                               fix="a MoE row needs 0 < top_k <= n_experts")
    return rows


def modelled(rows: list[dict]) -> list[dict]:
    """The rows the step model describes: MoE rows timed one matmul per expert (the fallback,
    a launch per expert) are left out; the model's grouped GEMM is one kernel."""
    return [r for r in rows if not (r["kind"] == "moe_ffn" and r.get("implementation") == "torch_loop")]


def predict_rows(hw, rows: list[dict], g: GemmCosts) -> np.ndarray:
    """Seconds the step model gives each measured row."""
    out = np.empty(len(rows))
    for i, r in enumerate(rows):
        c = ceilings(hw, r["dtype"])
        b = DTYPE_BYTES[r["dtype"]]
        T, E, I = (float(r[k]) for k in ("tokens", "d_model", "width"))
        if r["kind"] == "dense_ffn":
            k = dense_ffn(c, g, T, E, I, 3, np.float64(1.0), b, b, hw.interconnect.link_bytes_per_s)
        else:
            N, top_k = float(r["n_experts"]), float(r["top_k"])
            k = grouped_ffn(c, g, T, top_k / N, N, E, I, 3, b, b)
        out[i] = float(k.time_s)
    return out


def held_out_split(n: int, seed: int = 0) -> np.ndarray:
    """True for the quarter of the rows held out (a seeded permutation)."""
    held = np.zeros(n, bool)
    held[np.random.default_rng(seed).permutation(n)[: max(1, n // 4)]] = True
    return held


def validate(hw_name: str, rows: list[dict], implementation: str = "triton", fit: bool = True,
             seed: int = 0) -> FfnValidation:
    """Stored knobs (fit=False) or the grouped GEMM's knobs fitted on 3/4 of the rows, starting
    from the dense GEMM's (fit=True); either way judged on every row and on the held-out quarter."""
    hw = load_hardware(hw_name)
    g = gemm_costs(hw, knobs_for(hw, implementation))
    measured = np.array([float(r["median_s"]) for r in rows])
    held = held_out_split(len(rows), seed)
    n_fitted = 0
    if fit:
        dense = dataclasses.replace(g, grouped=None)
        start = dataclasses.replace(dense, grouped=dense)
        g = _fit(hw, [r for r, h in zip(rows, held) if not h], measured[~held], start)
        n_fitted = int((~held).sum())
    pred = predict_rows(hw, rows, g)
    err = np.abs(pred / measured - 1)
    kinds = np.array([r["kind"] for r in rows])
    return FfnValidation(g, float(np.mean(err)), float(np.mean(err[held])),
                         {k: float(np.mean(err[kinds == k])) for k in KINDS if np.any(kinds == k)},
                         float(np.max(err)), len(rows), n_fitted, pred, held)


def _fit(hw, rows, measured, g: GemmCosts) -> GemmCosts:
    """Least squares on log(predicted / measured) over the grouped GEMM's efficiencies and fixed
    cost (the dense rows do not depend on them)."""
    from scipy.optimize import least_squares
    gg = g.grouped_costs

    def trial(x):
        return dataclasses.replace(g, grouped=dataclasses.replace(gg, compute_efficiency=x[0], memory_efficiency=x[1],
                                                                  launch_s=x[2] * 1e-6))

    def resid(x):
        return np.log(predict_rows(hw, rows, trial(x)) / measured)
    x0 = [gg.compute_efficiency, gg.memory_efficiency, gg.launch_s * 1e6]
    res = least_squares(resid, x0, bounds=([0.05, 0.05, 0.0], [1.0, 1.0, 100.0]))
    return trial([float(v) for v in res.x])


def write_grouped_knobs(hw_name: str, v: FfnValidation, csv_path: str, directory: Path | None = None) -> Path:
    """Store the fitted grouped GEMM knobs as `HW/gemm/grouped.yaml`, where `cost/step.py` reads them."""
    gg = v.knobs.grouped_costs
    path = (directory or package_dir()) / hw_name / f"{GROUPED_GEMM_KNOBS}.yaml"
    data = {"hardware": hw_name, "implementation": "torch_grouped_mm",
            "source": f"fitted {datetime.date.today().isoformat()} by python3 -m attn_dse.validation.ffn on "
                      f"{v.n_fitted} of {v.n_rows} rows of {Path(csv_path).name} (the MoE rows among them set it); "
                      f"held-out ({int(v.held.sum())}) MAPE {v.held_out_mape:.1%}, worst of all rows {v.worst:.0%}",
            "fitted_on": f"{csv_path} (a seeded permutation holds out a quarter of the rows)",
            "launch_overhead_s": gg.launch_s,
            "families": {"gemm": {"compute_efficiency": gg.compute_efficiency,
                                  "memory_efficiency": gg.memory_efficiency}}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# The grouped GEMM (MoE experts) of the step model; SI units. Written by\n"
                    "# python3 -m attn_dse.validation.ffn HW CSV --write (launch_overhead_s: the fixed cost of\n"
                    "# one grouped GEMM call).\n" + yaml.safe_dump(data, sort_keys=False, width=1000))
    return path


def _summary(v: FfnValidation) -> str:
    return (f"MAPE {v.mape:.1%} (worst {v.worst:.0%}), held-out quarter {v.held_out_mape:.1%}, "
            + ", ".join(f"{k} {x:.1%}" for k, x in v.by_kind.items()))


def _knobs(g: GemmCosts) -> str:
    return f"matmul eff {g.compute_efficiency:.3f}, HBM eff {g.memory_efficiency:.3f}, launch {g.launch_s * 1e6:.2f} us"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("hw")
    ap.add_argument("csv")
    ap.add_argument("--implementation", default="triton")
    ap.add_argument("--rows", action="store_true", help="print each row's predicted / measured")
    ap.add_argument("--write", action="store_true", help="store the fitted grouped GEMM knobs")
    args = ap.parse_args()
    try:
        rows = load_rows(args.csv)
        kept = modelled(rows)
        if len(kept) < len(rows):
            print(f"{len(rows) - len(kept)} MoE rows timed one matmul per expert left out (not the modelled grouped GEMM)")
        rows = kept or rows
        stored = validate(args.hw, rows, args.implementation, fit=False)
        fitted = validate(args.hw, rows, args.implementation, fit=True)
    except AttnDseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(rows)} rows. dense gemm knobs ({args.implementation}): {_knobs(stored.knobs)}")
    print(f"stored grouped gemm knobs ({_knobs(stored.knobs.grouped_costs)}): {_summary(stored)}")
    print(f"grouped gemm knobs fitted on {fitted.n_fitted} rows ({_knobs(fitted.knobs.grouped_costs)}): "
          f"{_summary(fitted)}")
    if args.rows:
        print("kind       tokens d_model  width experts top_k  measured_us  predicted/measured  held_out")
        measured = [float(r["median_s"]) for r in rows]
        for r, p, m, h in zip(rows, fitted.predicted_s, measured, fitted.held):
            print(f"{r['kind']:9s} {r['tokens']:>7} {r['d_model']:>7} {r['width']:>6} {r['n_experts']:>7} "
                  f"{r['top_k']:>5} {m * 1e6:12.1f} {p / m:19.2f}  {'yes' if h else ''}")
    if args.write:
        print(f"wrote {write_grouped_knobs(load_hardware(args.hw).name, fitted, args.csv)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
