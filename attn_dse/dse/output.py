"""Sweep results on disk: every point streamed to Parquet (default), CSV or JSON Lines, a summary JSON."""
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


FORMATS = ("parquet", "csv", "jsonl")


class PointWriter:
    """Streams chunks of columns to points.parquet (one row group per chunk, labels
    dictionary-encoded), points.csv and/or points.jsonl, in bounded memory. Each file is written
    as NAME.part and renamed when closed: a file under its final name is whole. The columns are
    the first chunk's; a later chunk's missing column is empty."""

    def __init__(self, out_dir: Path, formats: tuple[str, ...] = ("parquet",)):
        out_dir.mkdir(parents=True, exist_ok=True)
        self.formats = tuple(formats)
        self.paths = {f: out_dir / f"points.{f}" for f in self.formats}
        self._part = {f: p.with_name(p.name + ".part") for f, p in self.paths.items()}
        self._csv = self._part["csv"].open("w", newline="") if "csv" in self.formats else None
        self._jsonl = self._part["jsonl"].open("w") if "jsonl" in self.formats else None
        self._parquet = None
        self._fields: list[str] | None = None
        self._schema = None
        self._writer = None

    def __call__(self, cols: dict) -> None:
        if self._fields is None:
            self._fields = list(cols)
            if self._csv:
                self._writer = csv.writer(self._csv)
                self._writer.writerow(self._fields)
        n = len(cols["latency_s"])
        data = [cols.get(f, np.full(n, None, dtype=object)) for f in self._fields]
        if "parquet" in self.formats:
            self._write_parquet(data)
        if self._csv or self._jsonl:
            for row in zip(*data):
                row = [_plain(v) for v in row]
                if self._csv:
                    self._writer.writerow(row)
                if self._jsonl:
                    self._jsonl.write(json.dumps(dict(zip(self._fields, row))) + "\n")

    def _write_parquet(self, data: list) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq
        if self._schema is None:  # types from the first chunk: numbers, flags, or labels
            fields = []
            for name, col in zip(self._fields, data):
                kind = np.asarray(col).dtype.kind
                typ = pa.float64() if kind in "fiu" else pa.bool_() if kind == "b" else pa.dictionary(pa.int32(), pa.string())
                fields.append(pa.field(name, typ))
            self._schema = pa.schema(fields)
            self._parquet = pq.ParquetWriter(self._part["parquet"], self._schema)
        arrays = []
        for field, col in zip(self._schema, data):
            if pa.types.is_dictionary(field.type):
                text = [None if v is None else str(_plain(v)) for v in np.asarray(col, dtype=object)]
                arrays.append(pa.array(text, type=pa.string()).dictionary_encode())
            elif pa.types.is_boolean(field.type):
                arrays.append(pa.array(np.asarray(col, dtype=object), type=pa.bool_(), from_pandas=True))
            else:
                values = np.array([np.nan if v is None else v for v in np.asarray(col, dtype=object)], dtype=np.float64)
                arrays.append(pa.array(values, type=pa.float64()))
        self._parquet.write_table(pa.Table.from_arrays(arrays, schema=self._schema))

    def close(self) -> None:
        for f in (self._csv, self._jsonl, self._parquet):
            if f is not None:
                f.close()
        if "parquet" in self.formats and self._parquet is None:
            self._part["parquet"].touch()  # no chunk came: an empty file says so
        for fmt, part in self._part.items():
            if part.exists():
                part.replace(self.paths[fmt])


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
