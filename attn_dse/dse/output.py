"""Sweep results on disk: every point as Parquet (default), CSV or JSON Lines, a summary JSON,
and the journal that lets an interrupted sweep resume.

Points land in `points.parquet/`, a Parquet dataset: one part per chunk, written by whichever
worker evaluated it (labels dictionary-encoded, figures byte-stream-split and zstd-compressed:
about 50-60 bytes per point). `pyarrow.parquet.read_table("points.parquet")`, pandas, Polars
and DuckDB read it as one table, in chunk order. CSV and JSON Lines are made from the parts
at the end, on request. Every file is written under a temporary name and renamed when whole.
"""
from __future__ import annotations

import json
import math
import pickle
import shutil
from pathlib import Path

import numpy as np

FORMATS = ("parquet", "csv", "jsonl")
POINTS = "points.parquet"


def _plain(v):
    if isinstance(v, (np.floating, float)):
        v = float(v)
        return None if not math.isfinite(v) else v
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def to_table(cols: dict):
    """Columns -> an Arrow table: numbers as float64, flags as bool, anything else as
    dictionary-encoded text (None stays null)."""
    import pyarrow as pa
    arrays = []
    for col in cols.values():
        col = np.asarray(col)
        if col.dtype.kind in "fiu":
            arrays.append(pa.array(col.astype(np.float64, copy=False)))
        elif col.dtype.kind == "b":
            arrays.append(pa.array(col))
        elif len(col) and isinstance(col[0], str) and (col == col[0]).all():  # one label (most columns)
            arrays.append(pa.DictionaryArray.from_arrays(pa.array(np.zeros(len(col), np.int32)), pa.array([col[0]])))
        else:
            missing = np.equal(col, None)
            text = np.where(missing, "", col).astype(str)
            values, codes = np.unique(text, return_inverse=True)
            arrays.append(pa.DictionaryArray.from_arrays(
                pa.array(codes.astype(np.int32), mask=missing if missing.any() else None), pa.array(values)))
    return pa.Table.from_arrays(arrays, names=list(cols))


def part_path(points_dir: Path, task_id: int) -> Path:
    return points_dir / f"part-{task_id:07d}.parquet"


def write_part(points_dir: Path, task_id: int, cols: dict) -> None:
    import pyarrow.parquet as pq
    table = to_table(cols)
    floats = [f.name for f in table.schema if f.type == "double"]
    points_dir.mkdir(parents=True, exist_ok=True)
    path = part_path(points_dir, task_id)
    tmp = path.with_name(f".{path.name}.tmp")  # hidden: readers of the dataset skip it
    pq.write_table(table, tmp, compression="zstd", use_dictionary=[f.name for f in table.schema
                                                                    if f.name not in floats],
                   use_byte_stream_split=floats)
    tmp.replace(path)


def reset(out: Path) -> None:
    """Remove the point files and journal of an earlier sweep into `out`."""
    for name in (POINTS, "points.csv", "points.jsonl", Journal.DIR):
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def finish(out: Path, formats: tuple[str, ...], recorded: set[int]) -> None:
    """After the evaluation: drop parts no chunk summary counts (an interrupt leaves some
    in flight), make the CSV / JSON Lines files from the parts, and drop the parts if Parquet
    was not asked for."""
    points = out / POINTS
    points.mkdir(exist_ok=True)
    for p in points.glob(".*.tmp"):
        p.unlink()
    parts = sorted(points.glob("part-*.parquet"))
    for p in parts:
        if int(p.stem.split("-")[1]) not in recorded:
            p.unlink()
    parts = [p for p in parts if p.exists()]
    if "csv" in formats:
        _write_csv(parts, out / "points.csv")
    if "jsonl" in formats:
        _write_jsonl(parts, out / "points.jsonl")
    if "parquet" not in formats:
        shutil.rmtree(points)


def _tables(parts: list[Path]):
    import pyarrow.parquet as pq
    for p in parts:
        yield pq.read_table(p)


def _plain_table(table):
    """Labels as text, NaN as null: the form CSV and JSON readers expect."""
    import pyarrow as pa
    import pyarrow.compute as pc
    cols = []
    for col in table.columns:
        if pa.types.is_dictionary(col.type):
            col = col.cast(pa.string())
        elif pa.types.is_floating(col.type):
            col = pc.if_else(pc.is_nan(col), pa.scalar(None, col.type), col)
        cols.append(col)
    return pa.Table.from_arrays(cols, names=table.column_names)


def _write_csv(parts: list[Path], path: Path) -> None:
    import pyarrow.csv as pcsv
    tmp = path.with_name(path.name + ".part")
    writer = None
    with tmp.open("wb") as f:
        for table in _tables(parts):
            table = _plain_table(table)
            if writer is None:
                writer = pcsv.CSVWriter(f, table.schema, write_options=pcsv.WriteOptions(quoting_style="needed"))
            writer.write_table(table)
        if writer is not None:
            writer.close()
    tmp.replace(path)


def _write_jsonl(parts: list[Path], path: Path) -> None:
    tmp = path.with_name(path.name + ".part")
    with tmp.open("w") as f:
        for table in _tables(parts):
            for row in _plain_table(table).to_pylist():
                f.write(json.dumps(row) + "\n")
    tmp.replace(path)


class Journal:
    """The chunks a sweep has finished, kept in OUT/chunks/ until the sweep completes: a fingerprint of
    the sweep (space, hardware, chunking) and one summary file per chunk. A resumed sweep
    reads them back instead of evaluating those chunks again."""
    DIR = "chunks"

    def __init__(self, out: Path, fingerprint: str, resume: bool):
        from attn_dse.errors import AttnDseError
        self.dir = out / self.DIR
        stamp = self.dir / "sweep.json"
        if resume:
            if not stamp.exists():
                raise AttnDseError(f"--resume: {out} holds no interrupted sweep (no {self.DIR}/sweep.json)",
                                   fix="run without --resume to start it")
            if json.loads(stamp.read_text()).get("fingerprint") != fingerprint:
                raise AttnDseError(f"--resume: the sweep in {out} was started with another space, hardware "
                                   "or options", fix="rerun it with the same arguments, or drop --resume "
                                                     "to start over")
        else:
            reset(out)
        self.dir.mkdir(parents=True, exist_ok=True)
        stamp.write_text(json.dumps({"fingerprint": fingerprint}))
        self.recorded: set[int] = set()

    def finished(self) -> dict:
        out = {}
        for p in sorted(self.dir.glob("*.pkl")):
            with p.open("rb") as f:
                c = pickle.load(f)
            out[c.id] = c
        self.recorded |= set(out)
        return out

    def record(self, chunk) -> None:
        path = self.dir / f"{chunk.id:07d}.pkl"
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as f:
            pickle.dump(chunk, f, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(path)
        self.recorded.add(chunk.id)

    def close(self) -> None:
        """The sweep completed: nothing to resume."""
        shutil.rmtree(self.dir, ignore_errors=True)


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
