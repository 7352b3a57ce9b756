"""One error type for every bad input: it says where, what is wrong, and how to fix it."""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class AttnDseError(ValueError):
    """Bad user input (YAML, parameters, options). The CLI prints it without a traceback."""

    def __init__(self, problem: str, *, where: str | None = None, fix: str | None = None):
        self.where, self.problem, self.fix = where, problem, fix
        text = f"{where}: {problem}" if where else problem
        if fix:
            text += f"; {fix}"
        super().__init__(text)


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """A 'did you mean X?' hint for a misspelt name, else the list of known names."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    return "known: " + ", ".join(known)
