"""A progress bar on stderr for long library work (the library reports through a callback)."""
from __future__ import annotations

import contextlib


@contextlib.contextmanager
def progress_bar(description: str, enabled: bool = True, min_total: int = 50_000):
    """Yields on_progress(done, total); draws a bar once the work is known to be large."""
    if not enabled:
        yield None
        return
    state: dict = {}

    def on_progress(done: int, total):
        if "bar" not in state:
            if total is not None and total < min_total:
                return
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
            bar = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                           TimeRemainingColumn(), transient=True)
            bar.start()
            state["bar"], state["task"] = bar, bar.add_task(description, total=total)
        state["bar"].update(state["task"], completed=done)

    try:
        yield on_progress
    finally:
        if "bar" in state:
            state["bar"].stop()
