"""The validation job behind `attn-dse validate`: compare, optionally calibrate and store."""
from __future__ import annotations

from pathlib import Path

from attn_dse.errors import AttnDseError
from attn_dse.cost.knobs import DEFAULT_IMPLEMENTATION, knobs_for
from attn_dse.hardware.spec import Hardware
from attn_dse.validation import fit
from attn_dse.validation.compare import Comparison, compare, default_measurements, fastest_kernels, held_out_mask, load_measurements


def rows_of(rows: list[dict], implementation: str, where: str) -> list[dict]:
    """The rows that time `implementation`'s kernels (all rows where the CSV names none)."""
    if "implementation" not in rows[0]:
        return rows
    named = {r["implementation"] or DEFAULT_IMPLEMENTATION for r in rows}
    mine = [r for r in rows if (r["implementation"] or DEFAULT_IMPLEMENTATION) == implementation]
    if not mine:
        raise AttnDseError(f"no rows of implementation '{implementation}'", where=where,
                           fix="--implementation takes one of the file's: " + ", ".join(sorted(named)))
    return mine


def run_validation(hw: Hardware, measurements: str | list[str] | tuple[str, ...] | None, calibrate: bool = False,
                   write: bool = False, implementation: str = DEFAULT_IMPLEMENTATION,
                   only: tuple[str, ...] = ()) -> tuple[dict, Comparison]:
    """The error report (per family, held-out, worst shapes) and the comparison behind it, over
    the rows of one or several measurement files in turn; where the rows time several kernels at
    one shape, the fastest stands for it (`fastest_kernels`)."""
    paths = [Path(m) for m in ([measurements] if isinstance(measurements, str) else measurements or ())] \
        or [default_measurements(hw.name)]
    mine = [r for path in paths for r in rows_of(load_measurements(path), implementation, str(path))]
    rows = fastest_kernels(mine)
    names = " + ".join(str(path) for path in paths)
    knobs = knobs_for(hw, implementation)
    result = {"hardware": hw.name, "implementation": implementation, "measurements": names, "rows": len(rows), "slower_kernels_dropped": len(mine) - len(rows),
              "model_source": knobs.source, "device": rows[0].get("device", "unknown"),
              "date": rows[0].get("date", "unknown")}
    if calibrate:
        knobs, report = fit.calibrate(hw, rows, implementation, only=tuple(only))
        result["calibration"] = report
        if write:
            result["written_to"] = str(fit.write_knobs(hw, knobs, [str(path) for path in paths], report))
    comparison = compare(hw, rows, knobs)
    test = held_out_mask(len(rows))
    result["all"] = comparison.summary()
    result["held_out"] = comparison.summary(test)
    result["worst"] = comparison.worst(10)
    return result, comparison
