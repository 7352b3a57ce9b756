"""Flat views of a Hardware spec for tables and JSON (hw list / hw show)."""
from __future__ import annotations

from attn_dse.hardware.spec import Hardware
from attn_dse.hardware.units import format_si


def summary(hw: Hardware) -> dict:
    return {
        "name": hw.name, "description": hw.description, "kind": hw.kind,
        "bf16_tflop_per_s": hw.peak_flop_per_s["bf16"] / 1e12,
        "hbm_tb_per_s": hw.hbm.bytes_per_s / 1e12,
        "hbm_gb": hw.hbm.capacity_bytes / 1e9,
        "ridge_flop_per_byte": hw.ridge_point("bf16", achievable=False),
    }


def details(hw: Hardware) -> list[dict]:
    """(field, value with unit, SI value, source) for every number in the spec."""
    rows: list[dict] = []

    def add(field: str, value: float, unit: str, source_key: str | None = None) -> None:
        text = format_si(value, unit) if unit else f"{value:g}"
        rows.append({"field": field, "value": text, "si": value,
                     "source": hw.source_of(source_key or field)})

    add("compute.cores", hw.cores, "")
    add("compute.clock", hw.clock_hz, "Hz")
    for dtype, rate in hw.peak_flop_per_s.items():
        add(f"compute.matmul.{dtype}", rate, "FLOP/s")
    add("compute.vector", hw.vector_flop_per_s, "FLOP/s")
    add("compute.exp", hw.exp_per_s, "op/s")
    add("compute.mma_rows", hw.mma_rows, "")
    for lv in hw.memory:
        per = " per core" if lv.per_core else ""
        add(f"memory.{lv.name}.capacity{per}", lv.capacity_bytes, "B", f"memory.{lv.name}")
        add(f"memory.{lv.name}.bandwidth", lv.bytes_per_s, "B/s", f"memory.{lv.name}")
    add("interconnect.link_bandwidth", hw.interconnect.link_bytes_per_s, "B/s")
    add("interconnect.devices_per_node", hw.interconnect.devices_per_node, "")
    ic = hw.interconnect
    rows.append({"field": "interconnect.kind", "value": ic.kind, "si": None, "source": hw.source_of("interconnect.kind")})
    if ic.bus_bytes_per_s:
        add("interconnect.bus_bandwidth", ic.bus_bytes_per_s, "B/s")
    if ic.call_latency_s:
        add("interconnect.call_latency", ic.call_latency_s, "s")
    if ic.scale_out:
        rows.append({"field": "interconnect.scale_out.kind", "value": ic.scale_out.kind, "si": None,
                     "source": hw.source_of("interconnect.scale_out")})
        add("interconnect.scale_out.bandwidth", ic.scale_out.bytes_per_s, "B/s")
    add("launch_overhead", hw.launch_overhead_s, "s")
    for dtype, rate in hw.achievable.matmul_flop_per_s.items():
        rows.append({"field": f"achievable.matmul.{dtype}", "value": format_si(rate, "FLOP/s"),
                     "si": rate, "source": hw.achievable.source})
    if hw.achievable.hbm_bytes_per_s:
        rows.append({"field": "achievable.hbm_bandwidth",
                     "value": format_si(hw.achievable.hbm_bytes_per_s, "B/s"),
                     "si": hw.achievable.hbm_bytes_per_s, "source": hw.achievable.source})
    return rows
