"""Fit the model's explicit parameters to measurements (scipy least squares on log time).

Fitted (robust soft-L1 loss): per-family compute and memory efficiencies (prefill, decode, mla_decode,
block_sparse), one core's streaming bandwidth, the per-tile overhead in cycles, the launch
overhead, the exp/matmul overlap and the L2 reuse share: 13 physically meaningful numbers,
no per-shape factors. Every 4th measurement is held out and reported separately.
"""
from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path

import numpy as np

from attn_dse.arch_models.hardware import Hardware
from attn_dse.validate.compare import Comparison, compare, held_out_mask

FAMILIES = ("prefill", "decode", "mla_decode", "block_sparse")
# name, lower, upper, log-scale
PARAMS = ([(f"compute_efficiency.{f}", 0.05, 1.0, False) for f in FAMILIES]
          + [(f"memory_efficiency.{f}", 0.05, 1.0, False) for f in FAMILIES]
          + [("core_bandwidth", 5e9, 1e12, True), ("tile_overhead_cycles", 0.0, 5000.0, False),
             ("launch_overhead", 1e-6, 1e-4, True), ("exp_overlap", 0.0, 1.0, False), ("l2_reuse", 0.0, 1.0, False)])


def current(hw: Hardware) -> dict:
    m = hw.model
    out = {f"compute_efficiency.{f}": m.compute_efficiency[f] for f in FAMILIES}
    out.update({f"memory_efficiency.{f}": m.memory_efficiency[f] for f in FAMILIES})
    out.update(core_bandwidth=m.core_bytes_per_s, tile_overhead_cycles=m.tile_overhead_cycles,
               launch_overhead=hw.launch_overhead_s, exp_overlap=m.exp_overlap, l2_reuse=m.l2_reuse)
    return out


def with_params(hw: Hardware, values: dict, source: str = "") -> Hardware:
    m = hw.model
    model = dataclasses.replace(
        m, compute_efficiency={**m.compute_efficiency, **{f: values[f"compute_efficiency.{f}"] for f in FAMILIES}},
        memory_efficiency={**m.memory_efficiency, **{f: values[f"memory_efficiency.{f}"] for f in FAMILIES}},
        core_bytes_per_s=values["core_bandwidth"], tile_overhead_cycles=values["tile_overhead_cycles"],
        exp_overlap=values["exp_overlap"], l2_reuse=values["l2_reuse"], source=source or m.source)
    return dataclasses.replace(hw, model=model, launch_overhead_s=values["launch_overhead"])


def _to_x(values: dict) -> np.ndarray:
    return np.array([np.log(values[n]) if log else values[n] for n, _, _, log in PARAMS])


def _from_x(x: np.ndarray) -> dict:
    return {n: float(np.exp(v) if log else v) for (n, _, _, log), v in zip(PARAMS, x)}


def calibrate(hw: Hardware, rows: list[dict], max_evals: int = 400) -> tuple[Hardware, dict]:
    """Fit on the training split; returns the calibrated preset and the report."""
    from scipy.optimize import least_squares
    test = held_out_mask(len(rows))
    train_rows = [r for r, t in zip(rows, test) if not t]
    measured = np.array([float(r["median_s"]) for r in train_rows])

    def residuals(x):
        c = compare(with_params(hw, _from_x(x)), train_rows)
        return np.log(c.predicted / measured)

    lo = [np.log(a) if log else a for _, a, _, log in PARAMS]
    hi = [np.log(b) if log else b for _, _, b, log in PARAMS]
    x0 = np.clip(_to_x(current(hw)), lo, hi)
    # soft-L1: kernels of a few microseconds vary 2-4x between runs on one machine (measured
    # 2026-11-22: the same block-sparse decode shape took 11.7 us in one run and 46.7 us in
    # another), so a few such rows must not drag the fit of the rest
    common = dict(bounds=(lo, hi), max_nfev=max_evals, x_scale="jac", diff_step=1e-3, ftol=1e-10, xtol=1e-10)
    first = least_squares(residuals, x0, **common)  # plain least squares from the defaults ...
    fit = least_squares(residuals, first.x, loss="soft_l1", f_scale=0.1, **common)  # ... then robust
    fit.nfev += first.nfev
    values = _from_x(fit.x)
    calibrated = with_params(hw, values)
    full = compare(calibrated, rows)
    report = {"values": values, "train": full.summary(~test), "held_out": full.summary(test),
              "evaluations": int(fit.nfev), "n_train": int((~test).sum()), "n_test": int(test.sum())}
    return calibrated, report


MARKER = "# --- calibrated model parameters (attn-dse validate --calibrate); do not edit by hand ---"


def write_to_preset(path: Path, values: dict, provenance: str) -> None:
    """Replace the calibrated `model:` block at the end of a preset YAML file."""
    text = Path(path).read_text()
    text = text.split(MARKER)[0].rstrip() + "\n"
    lines = [MARKER, "model:",
             "  compute_efficiency: {" + ", ".join(f"{f}: {values[f'compute_efficiency.{f}']:.4f}" for f in FAMILIES) + "}",
             "  memory_efficiency: {" + ", ".join(f"{f}: {values[f'memory_efficiency.{f}']:.4f}" for f in FAMILIES) + "}",
             f"  core_bandwidth: {values['core_bandwidth'] / 1e9:.2f} GB/s",
             f"  l2_reuse: {max(values['l2_reuse'], 1e-3):.4f}",
             f"  exp_overlap: {max(values['exp_overlap'], 1e-3):.4f}",
             f"  tile_overhead_cycles: {values['tile_overhead_cycles']:.1f}",
             f"  source: \"{provenance}\"",
             f"launch_overhead: {values['launch_overhead'] * 1e6:.3f} us", ""]
    Path(path).write_text(text + "\n".join(lines))


def provenance_note(measurements: str, report: dict) -> str:
    ho = report["held_out"]["all"]
    return (f"calibrated {datetime.date.today().isoformat()} on {report['n_train']} measurements of "
            f"{Path(measurements).name}; held-out ({report['n_test']}) MAPE {100 * ho['mape']:.1f}%, "
            f"worst {100 * ho['worst']:.0f}%")
