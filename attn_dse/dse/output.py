"""Sweep results on disk: every point streamed to CSV and JSON Lines, a summary JSON."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np


def _plain(v):
    if isinstance(v, (np.floating, float)):
        v = float(v)
        return None if not math.isfinite(v) else v
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


class PointWriter:
    """Streams chunks of columns to points.csv and points.jsonl (bounded memory)."""

    def __init__(self, out_dir: Path):
        out_dir.mkdir(parents=True, exist_ok=True)
        self.csv_path, self.jsonl_path = out_dir / "points.csv", out_dir / "points.jsonl"
        self._csv = self.csv_path.open("w", newline="")
        self._jsonl = self.jsonl_path.open("w")
        self._fields: list[str] | None = None
        self._writer = None

    def __call__(self, cols: dict) -> None:
        if self._fields is None:
            self._fields = list(cols)
            self._writer = csv.writer(self._csv)
            self._writer.writerow(self._fields)
        n = len(cols["latency_s"])
        data = [cols.get(f, np.full(n, None, dtype=object)) for f in self._fields]
        for row in zip(*data):
            row = [_plain(v) for v in row]
            self._writer.writerow(row)
            self._jsonl.write(json.dumps(dict(zip(self._fields, row))) + "\n")

    def close(self) -> None:
        self._csv.close()
        self._jsonl.close()


def rows(cols: dict, index) -> list[dict]:
    return [{k: _plain(v[i]) for k, v in cols.items()} for i in index]


def jsonable(value):
    """numpy scalars/arrays, tuples and NaN/inf -> plain JSON (NaN/inf become null)."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return _plain(value)


def write_summary(path: Path, summary: dict) -> None:
    path.write_text(json.dumps(jsonable(summary), indent=2, allow_nan=False))
