"""The step model's MLP against measured FFN rows (`gpu/ffn.py`): dense gated FFNs and MoE
grouped GEMMs, predicted by `cost/ffn.py` with the `gemm` knobs, and the same three knobs
(matmul and HBM efficiency, launch cost) fitted on three quarters of the rows and judged on the
held-out quarter.

    python3 -m attn_dse.validation.ffn HW CSV [--implementation triton]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attn_dse.cost.ffn import GemmCosts, dense_ffn, grouped_ffn
from attn_dse.cost.knobs import knobs_for
from attn_dse.cost.roofline import ceilings
from attn_dse.cost.step import gemm_costs
from attn_dse.errors import AttnDseError
from attn_dse.hardware.loader import load_hardware
from attn_dse.validation.compare import read_csv
from attn_dse.workloads.shape import DTYPE_BYTES

REQUIRED = ("kind", "tokens", "d_model", "width", "pairs", "active_experts", "dtype", "median_s")
KINDS = ("dense_ffn", "moe_ffn")


@dataclass(frozen=True)
class FfnValidation:
    knobs: GemmCosts  # as used (fitted when fit=True)
    mape: float  # every row
    held_out_mape: float  # the quarter not fitted on (nan without a fit)
    by_kind: dict  # kind -> MAPE
    worst: float
    n_rows: int


def load_rows(path) -> list[dict]:
    rows = read_csv(path, REQUIRED, "python3 -m attn_dse.gpu.ffn")
    for i, r in enumerate(rows):
        if r["kind"] not in KINDS:
            raise AttnDseError(f"row {i + 2}: kind '{r['kind']}' is unknown", where=str(path), fix="dense_ffn or moe_ffn")
        if r["dtype"] not in DTYPE_BYTES:
            raise AttnDseError(f"row {i + 2}: dtype '{r['dtype']}' is unknown", where=str(path), fix="e.g. bf16")
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
            k = grouped_ffn(c, g, float(r["pairs"]), float(r["active_experts"]), E, I, 3, b, b)
        out[i] = float(k.time_s)
    return out


def held_out_split(n: int, seed: int = 0) -> np.ndarray:
    """True for the quarter of the rows held out (a seeded permutation)."""
    held = np.zeros(n, bool)
    held[np.random.default_rng(seed).permutation(n)[: max(1, n // 4)]] = True
    return held


def validate(hw_name: str, rows: list[dict], implementation: str = "triton", fit: bool = True,
             seed: int = 0) -> FfnValidation:
    hw = load_hardware(hw_name)
    g = gemm_costs(hw, knobs_for(hw, implementation))
    measured = np.array([float(r["median_s"]) for r in rows])
    held = held_out_split(len(rows), seed) if fit else np.zeros(len(rows), bool)
    if fit:
        g = _fit(hw, [r for r, h in zip(rows, held) if not h], measured[~held], g)
    pred = predict_rows(hw, rows, g)
    err = np.abs(pred / measured - 1)
    kinds = np.array([r["kind"] for r in rows])
    return FfnValidation(g, float(np.mean(err)), float(np.mean(err[held])) if fit else float("nan"),
                         {k: float(np.mean(err[kinds == k])) for k in KINDS if np.any(kinds == k)},
                         float(np.max(err)), len(rows))


def _fit(hw, rows, measured, g: GemmCosts) -> GemmCosts:
    """Least squares on log(predicted / measured) over the efficiencies and the launch cost."""
    from scipy.optimize import least_squares

    def resid(x):
        trial = dataclasses.replace(g, compute_efficiency=x[0], memory_efficiency=x[1], launch_s=x[2] * 1e-6)
        return np.log(predict_rows(hw, rows, trial) / measured)
    x0 = [g.compute_efficiency, g.memory_efficiency, g.launch_s * 1e6]
    res = least_squares(resid, x0, bounds=([0.05, 0.05, 0.0], [1.0, 1.0, 100.0]))
    return dataclasses.replace(g, compute_efficiency=float(res.x[0]), memory_efficiency=float(res.x[1]),
                               launch_s=float(res.x[2]) * 1e-6)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("hw")
    ap.add_argument("csv")
    ap.add_argument("--implementation", default="triton")
    args = ap.parse_args()
    try:
        rows = load_rows(args.csv)
        kept = modelled(rows)
        if len(kept) < len(rows):
            print(f"{len(rows) - len(kept)} MoE rows timed one matmul per expert left out (not the modelled grouped GEMM)")
        rows = kept or rows
        before = validate(args.hw, rows, args.implementation, fit=False)
        after = validate(args.hw, rows, args.implementation, fit=True)
    except AttnDseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(rows)} rows; stored gemm knobs: MAPE {before.mape:.1%} (worst {before.worst:.0%}), "
          + ", ".join(f"{k} {v:.1%}" for k, v in before.by_kind.items()))
    k = after.knobs
    print(f"fitted on 3/4 (matmul eff {k.compute_efficiency:.3f}, HBM eff {k.memory_efficiency:.3f}, "
          f"launch {k.launch_s * 1e6:.2f} us): held-out MAPE {after.held_out_mape:.1%}, all {after.mape:.1%} "
          f"(worst {after.worst:.0%}), " + ", ".join(f"{k} {v:.1%}" for k, v in after.by_kind.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
