"""The validation job behind `attn-dse validate`: compare, optionally calibrate, plot."""
from __future__ import annotations

from pathlib import Path

from attn_dse.arch_models.hardware import Hardware
from attn_dse.validate import calibrate as cal
from attn_dse.validate.compare import compare, default_measurements, held_out_mask, load_measurements


def run_validation(hw: Hardware, measurements: str | None, out: Path, calibrate: bool = False,
                   write: bool = False) -> dict:
    path = Path(measurements) if measurements else default_measurements(hw.name)
    rows = load_measurements(path)
    result = {"hardware": hw.name, "measurements": str(path), "rows": len(rows),
              "model_source": hw.model.source, "device": rows[0].get("device", "unknown"),
              "date": rows[0].get("date", "unknown")}
    if calibrate:
        hw, report = cal.calibrate(hw, rows)
        result["calibration"] = report
        if write:
            note = cal.provenance_note(str(path), report)
            cal.write_to_preset(Path(hw.path), report["values"], note)
            result["written_to"] = hw.path
    comparison = compare(hw, rows)
    test = held_out_mask(len(rows))
    result["all"] = comparison.summary()
    result["held_out"] = comparison.summary(test)
    result["worst"] = comparison.worst(10)
    out.mkdir(parents=True, exist_ok=True)
    from attn_dse.plots.validation import predicted_vs_measured
    fig = predicted_vs_measured(comparison.measured, comparison.predicted, comparison.families,
                                out / f"predicted-vs-measured-{hw.name}.png",
                                title=f"{hw.name}: model vs {result['device']} ({result['date']})")
    result["figure"] = fig["path"]
    return result
