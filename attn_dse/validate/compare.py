"""Predictions against measurements: per-family MAPE, worst case, worst shapes.

Measurements are CSV rows with at least: family, variant, phase, batch, seq, context, n_heads,
n_kv_heads, head_dim, causal, dtype, median_s (optional: window, top_k, block, n_split). Rows
from kernels attn-dse did not write work too: give family = prefill | decode | mla_decode |
block_sparse and the shape. No GPU needed.
"""
from __future__ import annotations

import ast
import csv
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from attn_dse.arch_models.hardware import Hardware
from attn_dse.errors import AttnDseError
from attn_dse.prediction import predict
from attn_dse.workloads.registry import attention

REQUIRED = ("family", "batch", "seq", "context", "n_heads", "n_kv_heads", "head_dim", "median_s")


def data_dir() -> Path:
    return Path(str(resources.files("attn_dse") / "validate" / "data"))


def default_measurements(hw_name: str) -> Path:
    path = data_dir() / f"{hw_name}-measurements.csv"
    if not path.is_file():
        raise AttnDseError(f"no stored measurements for '{hw_name}'",
                           fix="pass --measurements CSV, or --measure on a machine with that GPU "
                               f"(stored: {', '.join(p.name for p in data_dir().glob('*-measurements.csv'))})")
    return path


def load_measurements(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise AttnDseError(f"no such measurements file '{path}'", fix="give a CSV written by --measure")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise AttnDseError("no rows", where=str(path), fix="the CSV needs a header and measurements")
    missing = [c for c in REQUIRED if c not in rows[0]]
    if missing:
        raise AttnDseError(f"missing column(s) {', '.join(missing)}", where=str(path),
                           fix="columns: " + ", ".join(REQUIRED) + " (see attn_dse/validate/compare.py)")
    return rows


def _num(row, key, default=None):
    value = row.get(key, "")
    return default if value in ("", None) else float(value)


def _config(row: dict) -> tuple:
    """The kernel configuration our measurements record (empty for other people's kernels)."""
    try:
        cfg = ast.literal_eval(row.get("config") or "")
    except (ValueError, SyntaxError):
        return ()
    return cfg if isinstance(cfg, tuple) else ()


def _pinned_tiles(row: dict) -> dict:
    """The tiles the measured kernel ran with, where the record names them: the model is
    checked on the mapping that ran (its own search picks the best one for predictions).
    Prefill: (block_m, block_n, warps, stages); MLA: (layout, heads per program, block_n, ...)."""
    cfg = _config(row)
    if row["family"] == "prefill" and len(cfg) == 4:
        return {"block_m": float(cfg[0]), "block_n": float(cfg[1])}
    if row["family"] == "mla_decode" and len(cfg) == 5:
        return {"block_m": float(cfg[1])}  # how many programs stream the latent
    return {}


def workload_for(row: dict):
    """The workload and predict() arguments that describe one measured kernel launch."""
    fam, b, sq, ctx = row["family"], _num(row, "batch"), _num(row, "seq"), _num(row, "context")
    hq, hkv, d = int(_num(row, "n_heads")), int(_num(row, "n_kv_heads")), int(_num(row, "head_dim"))
    causal = str(row.get("causal", "True")).lower() in ("true", "1")
    dtype = row.get("dtype") or "bf16"
    n_split = _num(row, "n_split")
    if fam == "mla_decode":
        wl = attention("mla", n_heads=hq, scheme="absorbed")
        mapping = {**({"n_split": n_split} if n_split else {}), **_pinned_tiles(row)}
        return wl, dict(phase="decode", batch=b, seq=sq, context=ctx, dtype=dtype, mapping=mapping or None)
    if fam == "block_sparse":
        wl = attention("block_sparse", n_heads=hq, n_kv_heads=hkv, head_dim=d, block_size=_num(row, "block", 64),
                       top_k=_num(row, "top_k"), gate=False)
    elif _num(row, "window"):
        wl = attention("swa", n_heads=hq, n_kv_heads=hkv, head_dim=d, window=_num(row, "window"))
    else:
        wl = attention("gqa", n_heads=hq, n_kv_heads=hkv, head_dim=d)
    if row.get("phase", "prefill" if fam == "prefill" else "decode") == "decode":
        return wl, dict(phase="decode", batch=b, seq=sq, context=ctx, dtype=dtype, causal=causal,
                        mapping={"n_split": n_split} if n_split else None)
    return wl, dict(phase="prefill", batch=b, seq=sq, dtype=dtype, causal=causal, mapping=_pinned_tiles(row) or None)


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
                 "measured_s": float(self.measured[i]), "predicted_s": float(self.predicted[i]),
                 "error": float(self.errors[i])} for i in order]


def compare(hw: Hardware, rows: list[dict]) -> Comparison:
    measured, predicted, fams = [], [], []
    for row in rows:
        wl, kw = workload_for(row)
        p = predict(hw, wl, scope="core", **kw)
        measured.append(float(row["median_s"]))
        predicted.append(float(p.latency_s))
        fams.append(row["family"])
    return Comparison(hw.name, rows, np.array(measured), np.array(predicted), np.array(fams, dtype=object))


def held_out_mask(n: int, every: int = 4) -> np.ndarray:
    """Deterministic split: every 4th measurement is held out of calibration."""
    return np.arange(n) % every == every - 1
