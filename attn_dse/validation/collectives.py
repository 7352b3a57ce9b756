"""Calibrate the collective model on measured rows: per interconnect the host's call latency
(alpha_0), a scale on NCCL's per-step latencies (alpha per step) and the bus bandwidth (beta).

Rows (gpu/multi.py's collectives CSV): op, bytes, gpus_per_node, nodes, median_s. Every 4th row
is held out; the fit minimises relative error on the rest (scipy least squares on log time) and
reports the held-out MAPE. With one device count only, the per-step scale and the call latency
cannot be told apart: the scale stays at 1 and only alpha_0 and beta are fitted.
"""
from __future__ import annotations

import csv
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attn_dse.cost.collectives import OPS, Fabric, Topology, collective
from attn_dse.errors import AttnDseError

REQUIRED = ("op", "bytes", "gpus_per_node", "nodes", "median_s")


@dataclass(frozen=True)
class CollectiveFit:
    fabric: Fabric
    n_fit: int
    n_held_out: int
    fit_mape: float
    held_out_mape: float
    fitted: tuple[str, ...]


def read_rows(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise AttnDseError(f"no such measurements file '{path}'", fix="give the collectives CSV gpu/multi.py wrote")
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("kind", "collective") == "collective"]
    if not rows or any(k not in rows[0] for k in REQUIRED):
        raise AttnDseError(f"{path}: needs the columns {', '.join(REQUIRED)}", fix="use gpu/multi.py's collectives.csv")
    for i, r in enumerate(rows):
        if r["op"] not in OPS:
            raise AttnDseError(f"{path}: row {i + 2}: op {r['op']!r} is unknown", fix="one of " + ", ".join(OPS))
    return rows


def predict_rows(rows: list[dict], fab: Fabric) -> np.ndarray:
    return np.array([collective(r["op"], float(r["bytes"]), Topology(int(r["gpus_per_node"]), int(r["nodes"])), fab).time_s
                     for r in rows])


def _mape(pred, meas) -> float:
    return float(np.mean(np.abs(pred / meas - 1)) * 100)


def fit_collectives(rows: list[dict], start: Fabric) -> CollectiveFit:
    """Fit alpha_0, the per-step scale (when several device counts are present) and the bus
    bandwidths inside and (with multi-node rows) between nodes, starting from `start`."""
    from scipy.optimize import least_squares

    held = rows[3::4]
    fit = [r for i, r in enumerate(rows) if i % 4 != 3]
    meas = np.array([float(r["median_s"]) for r in fit])
    counts = {int(r["gpus_per_node"]) * int(r["nodes"]) for r in fit}
    multi = any(int(r["nodes"]) > 1 for r in fit)
    names = ["call_latency_s", "intra_bytes_per_s"] + (["hop_scale"] if len(counts) > 1 else []) + \
        (["inter_bytes_per_s"] if multi else [])
    scale = {"call_latency_s": 1e-6, "intra_bytes_per_s": 1e11, "hop_scale": 1.0, "inter_bytes_per_s": 1e10}

    def fab_of(x) -> Fabric:
        return dataclasses.replace(start, **{n: float(v) * scale[n] for n, v in zip(names, x)})

    def residual(x):
        return np.log(predict_rows(fit, fab_of(x))) - np.log(meas)

    x0 = [max(getattr(start, n) or scale[n], 1e-3 * scale[n]) / scale[n] for n in names]
    x0[0] = max(x0[0], 1.0)
    lower = [0.0 if n == "call_latency_s" else 1e-3 for n in names]
    sol = least_squares(residual, x0, bounds=(lower, np.inf), x_scale="jac")
    fab = fab_of(sol.x)
    held_mape = _mape(predict_rows(held, fab), np.array([float(r["median_s"]) for r in held])) if held else float("nan")
    return CollectiveFit(fab, len(fit), len(held), _mape(predict_rows(fit, fab), meas), held_mape, tuple(names))


def main(argv=None) -> None:
    """python -m attn_dse.validation.collectives HW COLLECTIVES.csv: the fit and its held-out error."""
    import argparse

    from attn_dse.cost.collectives import fabric
    from attn_dse.hardware.loader import load_hardware
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("hw")
    ap.add_argument("csv")
    a = ap.parse_args(argv)
    start = fabric(load_hardware(a.hw))
    fit = fit_collectives(read_rows(a.csv), start)
    f = fit.fabric
    print(f"{a.hw}: fitted {', '.join(fit.fitted)} on {fit.n_fit} rows, held out {fit.n_held_out}")
    print(f"  call_latency {f.call_latency_s * 1e6:.2f} us, hop_scale {f.hop_scale:.3f}, "
          f"bus bandwidth {f.intra_bytes_per_s / 1e9:.1f} GB/s (preset {start.intra_bytes_per_s / 1e9:.1f})"
          + (f", between nodes {f.inter_bytes_per_s / 1e9:.1f} GB/s" if "inter_bytes_per_s" in fit.fitted else ""))
    print(f"  MAPE fit {fit.fit_mape:.1f}%, held out {fit.held_out_mape:.1f}%")


if __name__ == "__main__":
    main()
