"""Commands beyond `hw`: registered on the group by import. Each parses, calls the library,
and formats."""
from __future__ import annotations

import click

from attn_dse.cli.common import build_workload, workload_options
from attn_dse.cli.main import cli
from attn_dse.cli.output import echo_json, echo_table


@cli.command()
@click.argument("hw")
@workload_options
@click.option("--phase", type=click.Choice(["prefill", "decode", "train"]), default="decode", show_default=True)
@click.option("--batch", type=int, default=1, show_default=True, help="Sequences in the batch.")
@click.option("--seq", type=int, default=None, help="Query tokens: prompt length (prefill/train); new tokens in decode (default 1).")
@click.option("--context", type=int, default=None, help="Cached tokens a decode step attends to.")
@click.option("--no-causal", is_flag=True, help="Bidirectional attention (default: causal).")
@click.option("--dtype", type=click.Choice(["bf16", "fp16", "fp8", "fp32"]), default="bf16", show_default=True)
@click.option("--scope", type=click.Choice(["core", "layer", "model"]), default="core", show_default=True,
              help="core: the attention kernel; layer: with projections; model: all layers.")
@click.option("--unfused", is_flag=True, help="Scores and probabilities through HBM (no FlashAttention).")
@click.option("--datasheet", is_flag=True, help="Use datasheet peaks instead of measured ceilings.")
@click.option("--split", type=int, default=None, help="Pin split-KV splits for decode (1 = no split).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def predict(hw, variant, params, model, phase, batch, seq, context, no_causal, dtype, scope, unfused,
            datasheet, split, as_json):
    """Predict latency, traffic and the bound of one attention workload on HW.

    \b
    Examples:
      attn-dse predict h100 --variant gqa --param n_heads=32 --param n_kv_heads=8 \\
          --phase decode --batch 16 --context 8192
      attn-dse predict h20 --model deepseek-v3 --phase decode --batch 64 --context 4096
      attn-dse predict h100 --model llama-3-70b --phase prefill --seq 8192 --scope model
    """
    from attn_dse.prediction import predict as run_predict

    wl = build_workload(variant, params, model)
    p = run_predict(hw, wl, phase=phase, batch=batch, seq=seq, context=context, dtype=dtype, scope=scope,
                    causal=not no_causal, fused=not unfused, achievable=not datasheet,
                    mapping={"n_split": float(split)} if split else None)
    if as_json:
        echo_json(p.to_dict())
        return
    from attn_dse.cli.report import prediction_table
    prediction_table(p, wl)


@cli.command("variants")
@click.option("--json", "as_json", is_flag=True)
def list_variants(as_json):
    """The registered attention variants and their parameters."""
    from attn_dse.workloads.registry import REQUIRED, variants

    rows = []
    for name, cls in sorted(variants().items()):
        v = cls()
        params = ", ".join(f"{p.name}" + ("" if p.default is REQUIRED else f"={p.default}")
                           for p in v.params)
        rows.append({"name": name, "summary": v.summary, "params": params})
    if as_json:
        echo_json(rows)
        return
    echo_table("Attention variants", ["name", "what", "parameters (default)"],
               [[r["name"], r["summary"], r["params"]] for r in rows])


@cli.command("models")
@click.option("--json", "as_json", is_flag=True)
def list_models(as_json):
    """The model presets (attention shape, width, depth, parameters, source)."""
    from attn_dse.workloads.models import from_model, model_names

    rows = []
    for name in model_names():
        wl = from_model(name)
        rows.append({"name": name, "variant": wl.variant.name, "d_model": wl.model.d_model,
                     "n_layers": wl.model.n_layers, "params_b": wl.model.params / 1e9, "source": wl.model.source})
    if as_json:
        echo_json(rows)
        return
    echo_table("Model presets", ["name", "variant", "d_model", "layers", "params (B)", "source"],
               [[r["name"], r["variant"], r["d_model"], r["n_layers"], r["params_b"], r["source"]] for r in rows])
