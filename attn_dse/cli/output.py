"""Printing results: rich tables on screen, JSON with --json."""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click


def echo_json(payload: Any) -> None:
    from attn_dse.dse.output import jsonable
    click.echo(json.dumps(jsonable(payload), indent=2, allow_nan=False))


def fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def echo_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
               caption: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, caption=caption, header_style="bold")
    first = rows[0] if rows else []
    for i, col in enumerate(columns):
        numeric = i < len(first) and isinstance(first[i], (int, float)) and not isinstance(first[i], bool)
        table.add_column(col, justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*(fmt(v) for v in row))
    Console(width=max(140, _terminal_width())).print(table)


def _terminal_width() -> int:
    import shutil
    return shutil.get_terminal_size((120, 40)).columns
