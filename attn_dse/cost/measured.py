"""Reading one measured row (CSV text fields) for the families' `workload_for`."""
from __future__ import annotations

import ast

from attn_dse.errors import AttnDseError


def num(row: dict, key: str, default=None):
    """A numeric field, or `default` where it is empty; text is an error naming the column."""
    value = row.get(key, "")
    if value in ("", None):
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        raise AttnDseError(f"column '{key}': {value!r} is not a number",
                           fix="write a number there, or leave the cell empty") from None


def flag(row: dict, key: str, default: bool = True) -> bool:
    value = str(row.get(key, "") or default).strip().lower()
    return value in ("true", "1", "yes")


def config(row: dict) -> tuple:
    """The kernel configuration our measurements record (empty for other people's kernels)."""
    try:
        cfg = ast.literal_eval(row.get("config") or "")
    except (ValueError, SyntaxError):
        return ()
    return cfg if isinstance(cfg, tuple) else ()
