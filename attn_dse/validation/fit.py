"""Fit the time model's knobs to measurements (scipy least squares on log time).

Fitted (robust soft-L1 loss): per tiled kernel family the compute and memory efficiencies and
one core's streaming rate; the per-tile overhead in cycles, the launch overhead, the latency of
a wave of CTAs, the exp/matmul overlap and the L2 reuse share: physically meaningful numbers,
no per-shape factors. A weak pull to the defaults (PRIOR_WEIGHT) keeps the knobs no row
determines where the defaults start them. Every 4th measurement is held out and reported separately.
"""
from __future__ import annotations

import dataclasses
import datetime
import re
from pathlib import Path

import numpy as np

from attn_dse.calibration import knobs as store
from attn_dse.calibration.knobs import Knobs
from attn_dse.cost.family import get_family
from attn_dse.cost.knobs import default_knobs, knobs_for
from attn_dse.errors import AttnDseError
from attn_dse.hardware.spec import Hardware
from attn_dse.validation.compare import compare, held_out_mask, kernel_of, measured_families


PRIOR_WEIGHT = 0.01  # of a knob's pull to its default, against a row's log-time error (calibrate)


def parameters(families: tuple[str, ...]) -> list[tuple[str, float, float, bool]]:
    """(knob, lower, upper, log-scale). The L2 serves at least 90% of K/V re-reads: concurrent
    query tiles of one head share their key tiles, whose working set is a few MB against 50 MB of
    L2; left free, the fit lowered it to 0.38 to slow the few short windowed prefills, and a fused
    prefill then moved 40 times its K/V through HBM."""
    return ([(f"compute_efficiency.{f}", 0.05, 1.0, False) for f in families]
            + [(f"memory_efficiency.{f}", 0.05, 1.0, False) for f in families]
            + [(f"core_bytes_per_s.{f}", 5e9, 1e12, True) for f in families]
            + [(f"tile_overhead_cycles.{f}", 0.0, 5000.0, False) for f in families if get_family(f).own_tile_overhead]
            + [("tile_overhead_cycles", 0.0, 5000.0, False), ("launch_overhead_s", 1e-6, 1e-4, True),
               ("exp_overlap", 0.0, 1.0, False), ("l2_reuse", 0.9, 1.0, False), ("wave_latency_s", 1e-8, 2e-5, True)])


def calibrate(hw: Hardware, rows: list[dict], implementation: str = "triton",
              max_evals: int = 400, only: tuple[str, ...] = ()) -> tuple[Knobs, dict]:
    """Fit on the training split; returns the calibrated knobs and the report. With `only`,
    just those families' knobs move (the implementation's shared knobs and its other families
    keep their stored values): a new kernel of one family joins a calibrated implementation."""
    from scipy.optimize import least_squares
    present = {kernel_of(r) for r in rows}
    fams = tuple(f for f in measured_families() if f in present)
    backward = tuple(sorted({kernel_of(r) for r in rows if r.get("phase") == "train"}))
    fams = fams + backward  # training steps time their backward kernel too
    base = knobs_for(hw, implementation)
    if not base.fused:  # separate kernels (roofline.eager_passes): the GEMMs' two efficiencies, the
        # element-wise and the strided passes' shares of HBM (they run no matmul), the launches
        fams = ("gemm", "unfused", "strided")
    params = parameters(fams)
    if all(r.get("phase") == "train" for r in rows) and base.source and not only:
        # training steps of an implementation whose forward is calibrated already: the forward's
        # knobs stay, so the fit is the backward kernels' alone
        only = backward
    if only:
        unknown = [f for f in only if f not in fams]
        if unknown:
            raise AttnDseError(f"--family {', '.join(unknown)}: no rows of that family to fit",
                               fix="the rows' families: " + ", ".join(fams))
        params = [p for p in params if p[0].partition(".")[2] in only]
    if not base.fused:
        params = [p for p in params if p[0] in ("compute_efficiency.gemm", "memory_efficiency.gemm",
                                                "memory_efficiency.unfused", "memory_efficiency.strided",
                                                "launch_overhead_s")]
    test = held_out_mask(len(rows))
    train_rows = [r for r, t in zip(rows, test) if not t]
    measured = np.array([float(r["median_s"]) for r in train_rows])

    def to_x(values: dict) -> np.ndarray:
        return np.array([np.log(values[n]) if log else values[n] for n, _, _, log in params])

    def from_x(x: np.ndarray) -> dict:
        return {n: float(np.exp(v) if log else v) for (n, _, _, log), v in zip(params, x)}

    lo = [np.log(a) if log else a for _, a, _, log in params]
    hi = [np.log(b) if log else b for _, _, b, log in params]

    # one core's streaming rate starts at its fair share of HBM (the least that lets all cores
    # together reach it) and rises only where rows with few busy cores show more: rows with many
    # cores busy cannot tell the rates above that share apart
    fair = (hw.achievable.hbm_bytes_per_s or hw.hbm.bytes_per_s) / hw.cores

    def x0(start: dict) -> np.ndarray:
        return np.clip(to_x({**start, **{f"core_bytes_per_s.{f}": fair for f in fams}}), lo, hi)

    # a knob the rows do not determine (the memory efficiency of a kernel measured only where it
    # is compute-bound) stays where the defaults start it: a pull that costs as much as a 1% error
    # on one row for a knob moved across its whole range
    prior, width = x0(default_knobs(hw, implementation).flat()), np.asarray(hi) - np.asarray(lo)

    def residuals(x):
        errors = np.log(compare(hw, train_rows, base.with_values(from_x(x))).predicted / measured)
        return np.concatenate([errors, PRIOR_WEIGHT * (x - prior) / width])

    # soft-L1: a few rows the model's structure misses must not drag the fit of the rest
    common = dict(bounds=(lo, hi), max_nfev=max_evals, x_scale="jac", diff_step=1e-3, ftol=1e-10, xtol=1e-10)
    # plain least squares from the stored knobs and from the families' defaults (a time model that
    # changed since the last fit may leave the stored values where one bound hides another: a
    # compute-bound shape fitted as memory-bound has no gradient in the compute efficiency) ...
    starts = [base.flat(), default_knobs(hw, implementation).flat()]
    first = min((least_squares(residuals, x0(s), **common) for s in starts), key=lambda r: r.cost)
    fit = least_squares(residuals, first.x, loss="soft_l1", f_scale=0.1, **common)  # ... then robust
    values = from_x(fit.x)
    calibrated = dataclasses.replace(base.with_values(values), measured=base.measured | set(only or fams))
    full = compare(hw, rows, calibrated)
    report = {"values": values, "train": full.summary(~test), "held_out": full.summary(test),
              "evaluations": int(fit.nfev + first.nfev), "n_train": int((~test).sum()), "n_test": int(test.sum())}
    return calibrated, report


def file_names(measurements: str | list[str]) -> str:
    """The measurement files' names, as a note cites them."""
    return " + ".join(Path(m).name for m in ([measurements] if isinstance(measurements, str) else measurements))


def provenance_note(measurements: str | list[str], report: dict) -> str:
    ho = report["held_out"]["all"]
    return (f"calibrated {datetime.date.today().isoformat()} on {report['n_train']} measurements of "
            f"{file_names(measurements)}; held-out ({report['n_test']}) MAPE {100 * ho['mape']:.1f}%, "
            f"worst {100 * ho['worst']:.0f}%")


def write_knobs(hw: Hardware, knobs: Knobs, measurements: str | list[str], report: dict) -> Path:
    """Store fitted knobs as calibration/knobs/HW/IMPLEMENTATION.yaml (the first knob directory).
    Knobs fitted for some families alone add their note to the stored source, replacing the
    earlier notes on those families or on some of them (a refit that covers a note's families
    supersedes it)."""
    note = provenance_note(measurements, report)
    moved = {k.partition(".")[2] for k in report["values"]}
    if "" not in moved and knobs.source and "calibrated" in knobs.source:  # some families' knobs alone
        kept = re.sub(r"(^|; )([a-z_]+(?:, [a-z_]+)*): calibrated [^;]*; held-out [^;]*?worst \d+%",
                      lambda m: "" if set(m[2].split(", ")) <= moved else m[0], knobs.source)
        note = "; ".join(filter(None, (kept.strip("; "), f"{', '.join(sorted(moved))}: {note}")))
    path = store.knob_dirs()[0] / hw.name / f"{knobs.implementation}.yaml"
    return store.write(path, dataclasses.replace(knobs, source=note), hw.name,
                       f"{file_names(measurements)} (every 4th row held out)", default_knobs(hw, knobs.implementation))
