"""Predictions against measurements: per-family MAPE, worst case, worst shapes.

Measurements are CSV rows with at least: family, batch, seq, context, n_heads, n_kv_heads,
head_dim, median_s (optional: variant, phase, causal, dtype, window, top_k, block, n_split,
config, implementation). Rows from kernels attn-dse did not write work too: give a measured
family (`attn-dse validate --help` lists them) and the shape. Each family's file in
`cost/families/` says how its rows map to a workload. No GPU needed.
"""
from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from attn_dse.calibration.knobs import Knobs
from attn_dse.cost.family import get_family, tiled_families
from attn_dse.cost.measured import num
from attn_dse.cost.predict import predict
from attn_dse.errors import AttnDseError
from attn_dse.hardware.spec import Hardware

REQUIRED = ("family", "batch", "seq", "context", "n_heads", "n_kv_heads", "head_dim", "median_s")


def data_dir() -> Path:
    return Path(str(resources.files("attn_dse") / "validation" / "data"))


def default_measurements(hw_name: str) -> Path:
    path = data_dir() / f"{hw_name}-measurements.csv"
    if not path.is_file():
        raise AttnDseError(f"no stored measurements for '{hw_name}'",
                           fix="pass --measurements CSV, or --measure on a machine with that GPU "
                               f"(stored: {', '.join(p.name for p in data_dir().glob('*-measurements.csv'))})")
    return path


def read_csv(path: str | Path, required: tuple[str, ...], written_by: str) -> list[dict]:
    """The rows of a measurements CSV that exists, has rows and the required columns."""
    path = Path(path)
    if not path.is_file():
        raise AttnDseError(f"no such measurements file '{path}'", fix=f"give a CSV written by {written_by}")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise AttnDseError("no rows", where=str(path), fix="the CSV needs a header and measurements")
    missing = [c for c in required if c not in rows[0]]
    if missing:
        raise AttnDseError(f"missing column(s) {', '.join(missing)}", where=str(path),
                           fix="columns: " + ", ".join(required) + f" (written by {written_by})")
    return rows


def load_measurements(path: str | Path) -> list[dict]:
    rows = read_csv(path, REQUIRED, "--measure")
    for i, row in enumerate(rows):
        _check_row(row, i + 2, str(path))
    return rows


OPTIONAL_NUMBERS = ("window", "top_k", "block", "n_split")  # shape fields a family may read


def _check_row(row: dict, line: int, where: str) -> None:
    """A complete row of a measured family with positive, finite numbers where the model reads them."""
    if None in row or None in row.values():
        n = len([v for v in row.values() if v is not None]) + len(row.get(None) or [])
        raise AttnDseError(f"row {line}: {n} fields, the header has {len([k for k in row if k is not None])}",
                           where=where, fix="give every row one value per column (empty cells are allowed)")
    known = measured_families()
    if row["family"] not in known:
        raise AttnDseError(f"row {line}, column family: {row['family']!r} is not a measured kernel family",
                           where=where, fix="use one of " + ", ".join(known))
    for col in REQUIRED[1:] + OPTIONAL_NUMBERS:
        text = row.get(col, "").strip()
        if not text and col not in REQUIRED:
            continue
        try:
            value = float(text)
        except ValueError:
            value = None
        if value is None or not 0 < value < float("inf"):
            what = "the measured median in seconds, e.g. 0.0007" if col == "median_s" else "e.g. 16"
            raise AttnDseError(f"row {line}, column {col}: {text!r} is not a positive number", where=where,
                               fix=f"write {what}")


def workload_for(row: dict):
    """The workload and predict() arguments that describe one measured kernel launch."""
    return get_family(row["family"]).workload_for(row)


def kernel_of(row: dict) -> str:
    """The family whose kernel (and knobs) timed a measured row: what errors are reported and
    knobs fitted by."""
    return get_family(row["family"]).kernel_of(row)


@dataclass
class Comparison:
    hardware: str
    rows: list[dict]
    measured: np.ndarray
    predicted: np.ndarray
    families: np.ndarray

    @property
    def errors(self) -> np.ndarray:
        return np.abs(self.predicted - self.measured) / self.measured

    def summary(self, mask: np.ndarray | None = None) -> dict:
        """Per family and overall: count, MAPE and worst absolute percentage error."""
        mask = np.ones(len(self.measured), bool) if mask is None else mask
        out = {}
        for fam in sorted(set(self.families[mask])) + ["all"]:
            sel = mask & ((self.families == fam) if fam != "all" else True)
            if not np.any(sel):
                continue
            e = self.errors[sel]
            out[fam] = {"n": int(sel.sum()), "mape": float(e.mean()), "worst": float(e.max()),
                        "bias": float(np.mean(np.log(self.predicted[sel] / self.measured[sel])))}
        return out

    def worst(self, n: int = 10) -> list[dict]:
        order = np.argsort(-self.errors)[:n]
        return [{**{k: self.rows[i].get(k) for k in ("family", "variant", "phase", "batch", "seq", "context",
                                                       "n_heads", "n_kv_heads", "head_dim", "causal", "window",
                                                       "top_k", "n_split")},
                 "family": str(self.families[i]),  # the kernel's family that timed it
                 "measured_s": float(self.measured[i]), "predicted_s": float(self.predicted[i]),
                 "error": float(self.errors[i])} for i in order]


def compare(hw: Hardware, rows: list[dict], knobs: Knobs | str = "triton") -> Comparison:
    """Each row predicted with the knobs of one implementation (a name, or trial knobs)."""
    measured, predicted, fams = [], [], []
    for i, row in enumerate(rows):
        try:
            wl, kw = workload_for(row)
            time = num(row, "median_s")
        except AttnDseError as exc:
            raise AttnDseError(f"row {i + 2}: {exc.problem}", fix=exc.fix) from None
        p = predict(hw, wl, scope="core", kernel=knobs, **kw)
        measured.append(time)
        predicted.append(float(p.latency_s))
        fams.append(kernel_of(row))
    return Comparison(hw.name, rows, np.array(measured), np.array(predicted), np.array(fams, dtype=object))


def measured_families() -> tuple[str, ...]:
    """The families a measured row may name, dense before sparse (the fit's parameter order)."""
    return tuple(sorted(tiled_families(), key=lambda f: -get_family(f).order))


SHAPE = ("family", "phase", "batch", "seq", "context", "n_heads", "n_kv_heads", "head_dim", "causal", "window",
         "top_k", "block", "dtype")


def shape_key(row: dict) -> tuple:
    """What makes two rows the same workload: the shape and the KV-cache format (the dtype's
    where the row names none)."""
    return (*(row.get(k) or "" for k in SHAPE), row.get("kv_dtype") or row.get("dtype") or "")


def fastest_kernels(rows: list[dict]) -> list[dict]:
    """One row per (implementation, kernel, shape, configuration-study): where one kernel was
    timed in several tile configurations at one shape, its time there is the fastest (what its
    tuning picks, and what the model's mapping search predicts); rows of one configuration at
    several pinned split counts are a mapping study and all stay, and so do the rows of each
    kernel a family tells apart (`kernel_of`: the model times each with its own knobs). Order kept."""
    studies: dict = defaultdict(lambda: defaultdict(list))  # shape -> configuration -> row indices
    for i, r in enumerate(rows):
        studies[(r.get("implementation") or "", kernel_of(r), *shape_key(r))][r.get("config") or ""].append(i)
    fastest = lambda runs: min(float(rows[j]["median_s"]) for j in runs)  # noqa: E731
    keep = sorted(i for configs in studies.values() for i in min(configs.values(), key=fastest))
    return [rows[i] for i in keep]


def held_out_mask(n: int, every: int = 4) -> np.ndarray:
    """Deterministic split: every 4th measurement is held out of calibration."""
    return np.arange(n) % every == every - 1
