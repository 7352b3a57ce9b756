"""Quantities with units, parsed once at the YAML boundary into SI floats.

Decimal prefixes (k, M, G, T, P) are powers of 1000 and binary ones (Ki, Mi, Gi, Ti) powers
of 1024, exactly as written: "80 GB" is 80e9 bytes, "80 GiB" is 80 * 2**30.
"""
from __future__ import annotations

import re

_DECIMAL = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}
_BINARY = {"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50}
_TIME = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}

# kind -> (base units accepted, whether binary prefixes make sense, example for messages)
KINDS = {
    "bytes": (("B",), True, "80 GB"),
    "bandwidth": (("B/s",), True, "3.35 TB/s"),
    "flop_rate": (("FLOP/s", "FLOPS"), False, "989 TFLOP/s"),
    "op_rate": (("op/s", "OP/s", "ops/s"), False, "3.9 Top/s"),
    "frequency": (("Hz",), False, "1.98 GHz"),
    "time": (("s",), False, "4 us"),
}

_NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_QUANTITY = re.compile(rf"^\s*{_NUMBER}\s*([A-Za-zµ/]*)\s*$")


class UnitError(ValueError):
    """The text is not a quantity of the expected kind; the message holds the fix."""


def parse_quantity(text: object, kind: str) -> float:
    """Parse '3.35 TB/s' (kind 'bandwidth') into 3.35e12; raise UnitError with an example."""
    bases, binary_ok, example = KINDS[kind]
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise UnitError(f"{text!r} is not a {kind.replace('_', ' ')}; write e.g. \"{example}\"")
    if isinstance(text, (int, float)):
        raise UnitError(f"{text!r} has no unit; write e.g. \"{example}\"")
    match = _QUANTITY.match(text)
    if not match:
        raise UnitError(f"\"{text}\" is not a {kind.replace('_', ' ')}; write e.g. \"{example}\"")
    value, unit = float(match.group(1)), match.group(2)
    scale = _unit_scale(unit, kind, bases, binary_ok)
    if scale is None:
        raise UnitError(f"\"{text}\" is not a {kind.replace('_', ' ')}; write e.g. \"{example}\"")
    return value * scale


def _unit_scale(unit: str, kind: str, bases: tuple[str, ...], binary_ok: bool) -> float | None:
    if kind == "time":
        return _TIME.get(unit)
    for base in bases:
        if not unit.endswith(base):
            continue
        prefix = unit[: -len(base)]
        if prefix in _DECIMAL:
            return _DECIMAL[prefix]
        if binary_ok and prefix in _BINARY:
            return _BINARY[prefix]
    return None


def format_si(value: float, unit: str, digits: int = 4) -> str:
    """3.35e12, 'B/s' -> '3.35 TB/s'; 9.6e-5, 's' -> '96 us' (decimal prefixes)."""
    for prefix, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3), ("", 1.0),
                          ("m", 1e-3), ("u", 1e-6), ("n", 1e-9)):
        if abs(value) >= scale:
            return f"{value / scale:.{digits}g} {prefix}{unit}"
    return f"{value:.{digits}g} {unit}"
