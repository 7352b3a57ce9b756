"""`attn-dse hw list` and `attn-dse hw show NAME`."""
from __future__ import annotations

import click

from attn_dse.cli.output import echo_json, echo_table


@click.group("hw")
def hw_group() -> None:
    """Hardware presets: list them, or show one with the source of every number."""


@hw_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def hw_list(as_json: bool) -> None:
    """One line per preset: dense bf16 peak, HBM bandwidth and capacity, ridge point."""
    from attn_dse.hardware.loader import load_hardware, preset_names
    from attn_dse.hardware.summary import summary

    rows = [summary(load_hardware(name)) for name in preset_names()]
    if as_json:
        echo_json(rows)
        return
    echo_table("Hardware presets (dense datasheet peaks)",
               ["name", "bf16 TFLOP/s", "HBM TB/s", "HBM GB", "ridge FLOP/B", "description"],
               [[r["name"], r["bf16_tflop_per_s"], r["hbm_tb_per_s"], r["hbm_gb"],
                 round(r["ridge_flop_per_byte"], 1), r["description"]] for r in rows],
               caption="attn-dse hw show NAME prints every field with its source")


@hw_group.command("show")
@click.argument("hw")
@click.option("--kernel", default="triton", show_default=True,
              help="Implementation whose calibration knobs are listed after the spec.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def hw_show(hw: str, kernel: str, as_json: bool) -> None:
    """Every field of one preset (name or YAML path), in SI units, with its source, then the
    time model's knobs for one kernel implementation (calibrated, inherited or default)."""
    from attn_dse.hardware.loader import load_hardware
    from attn_dse.hardware.summary import details

    from attn_dse.cost.knobs import knobs_for

    spec = load_hardware(hw)
    rows = details(spec) + knobs_for(spec, kernel).rows()
    if as_json:
        echo_json({"name": spec.name, "description": spec.description, "kind": spec.kind,
                   "fields": rows, "achievable_source": spec.achievable.source})
        return
    echo_table(f"{spec.name}: {spec.description}", ["field", "value", "source"],
               [[r["field"], r["value"], r["source"]] for r in rows],
               caption=spec.path)
