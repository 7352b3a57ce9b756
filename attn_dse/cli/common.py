"""Options shared by commands that take a workload: --variant/--param or --model."""
from __future__ import annotations

import click
import yaml

from attn_dse.errors import AttnDseError


def parse_params(items: tuple[str, ...]) -> dict:
    """--param k=v (repeatable); values parsed as YAML scalars (8, 0.5, absorbed, true)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise AttnDseError(f"--param {item!r} is not KEY=VALUE", fix="write e.g. --param n_kv_heads=8")
        out[key.strip()] = yaml.safe_load(value)
    return out


def build_workload(variant: str | None, params: tuple[str, ...], model: str | None):
    from attn_dse.workloads.registry import attention
    if model and variant:
        raise AttnDseError("give --variant or --model, not both", fix="--model uses the preset's variant")
    if model:
        return attention.from_model(model, **parse_params(params))
    if not variant:
        raise AttnDseError("no workload given", fix="pass --variant gqa --param n_heads=32 ... or --model llama-3-70b")
    return attention(variant, **parse_params(params))


def workload_options(f):
    f = click.option("--model", help="A model preset (attn-dse models lists them), e.g. llama-3-70b.")(f)
    f = click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
                     help="Variant parameter, repeatable: --param n_heads=32 --param n_kv_heads=8.")(f)
    f = click.option("--variant", help="Attention variant (attn-dse variants lists them), e.g. gqa.")(f)
    return f
