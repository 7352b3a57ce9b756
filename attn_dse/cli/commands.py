"""Commands beyond `hw` (added to the group in `main.py`). Each parses, calls the library,
and formats."""
from __future__ import annotations

import click

from attn_dse.cli.common import build_workload, make_out_dir, workload_options
from attn_dse.cli.output import echo_json, echo_table
from attn_dse.errors import AttnDseError

POSITIVE = click.IntRange(min=1)  # counts: batch, tokens, splits, samples


@click.command()
@click.argument("hw")
@workload_options
@click.option("--phase", type=click.Choice(["prefill", "decode", "train"]), default="decode", show_default=True)
@click.option("--batch", type=POSITIVE, default=1, show_default=True, help="Sequences in the batch.")
@click.option("--seq", type=POSITIVE, default=None, help="Query tokens: prompt length (prefill/train); new tokens in decode (default 1).")
@click.option("--context", type=POSITIVE, default=None, help="Cached tokens a decode step attends to.")
@click.option("--no-causal", is_flag=True, help="Bidirectional attention (default: causal).")
@click.option("--dtype", type=click.Choice(["bf16", "fp16", "fp8", "fp32"]), default="bf16", show_default=True)
@click.option("--kv-dtype", default=None, metavar="FORMAT",
              help="KV-cache storage: fp8, int8, int4, bf16, or a bit width such as 6 (default: --dtype).")
@click.option("--scope", type=click.Choice(["core", "layer", "model"]), default="core", show_default=True,
              help="core: the attention kernel; layer: with projections; model: all layers.")
@click.option("--unfused", is_flag=True, help="Scores and probabilities through HBM (no FlashAttention).")
@click.option("--datasheet", is_flag=True, help="Use datasheet peaks instead of measured ceilings.")
@click.option("--split", type=POSITIVE, default=None, help="Pin split-KV splits for decode (1 = no split).")
@click.option("--kernel", default="auto", show_default=True,
              help="Whose attention kernel: triton (ours), cudnn, flash, flex, eager, any name calibrated "
                   "with validate --calibrate --write, or auto: the fastest known on HW for the kernel's "
                   "family and shape (named in the output).")
@click.option("--weight-dtype", type=click.Choice(["bf16", "fp16", "fp8", "fp32"]), default=None,
              help="Bytes per weight in the memory plan (default: --dtype).")
@click.option("--kv-block", type=POSITIVE, default=16, show_default=True,
              help="KV-cache page in tokens: each sequence's context is held in whole pages.")
@click.option("--fragmentation", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              help="Share of the usable memory the allocator loses.")
@click.option("--tp", type=POSITIVE, default=1, show_default=True, help="Tensor-parallel devices (heads; TPLA: latent).")
@click.option("--cp", type=POSITIVE, default=1, show_default=True, help="Context-parallel devices (sequence shards).")
@click.option("--nodes", type=POSITIVE, default=1, show_default=True, help="Nodes the tp x cp devices span.")
@click.option("--cp-scheme", type=click.Choice(["ring", "ulysses"]), default="ring", show_default=True,
              help="Context parallelism in prefill: ring attention or Ulysses all-to-all.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def predict(hw, variant, params, model, phase, batch, seq, context, no_causal, dtype, kv_dtype, scope, unfused,
            datasheet, split, kernel, weight_dtype, kv_block, fragmentation, tp, cp, nodes, cp_scheme, as_json):
    """Predict latency, traffic and the bound of one attention workload on HW, and whether it
    fits one device's memory: the KV cache of every layer (one, when the depth is unknown) plus
    the weights of the scope (core: none; layer: one layer's attention weights; model: the
    model's) against 90% of HBM. A warning goes to stderr when it does not fit. At scope model a
    preset with an FFN shape (or a config.json) is the whole step: attention, MLP or experts,
    norms, embeddings and LM head; its memory plan adds activations and reports the largest
    batch that fits at this context, and tokens/s per GPU, TPOT (decode) and TTFT (prefill).

    \b
    Examples:
      attn-dse predict h100 --variant gqa --param n_heads=32 --param n_kv_heads=8 \\
          --phase decode --batch 16 --context 8192
      attn-dse predict h20 --model deepseek-v3 --phase decode --batch 64 --context 4096
      attn-dse predict h100 --model llama-3-70b --phase prefill --seq 8192 --scope model
    """
    from attn_dse.cost.predict import predict as run_predict
    from attn_dse.hardware.loader import load_hardware

    wl = build_workload(variant, params, model)
    spec = load_hardware(hw)
    if tp > 1 or cp > 1 or nodes > 1:
        return _predict_parallel(spec, wl, phase, batch, seq, context, dtype, scope, not no_causal, not unfused,
                                 not datasheet, kernel, tp, cp, nodes, cp_scheme, as_json)
    p = run_predict(spec, wl, phase=phase, batch=batch, seq=seq, context=context, dtype=dtype, scope=scope,
                    causal=not no_causal, fused=not unfused, achievable=not datasheet,
                    mapping={"n_split": float(split)} if split else None, kernel=kernel, kv_dtype=kv_dtype)
    cap = _capacity(spec, wl, p, scope, not no_causal, weight_dtype, p.kv_dtype or None, kv_block, fragmentation)
    if scope == "model" and getattr(wl.model, "ffn", None) is not None:
        from attn_dse.cost.step import serving
        cap.update({k: float(v) for k, v in serving(p, wl).items()})
    if not cap["fits"]:
        from attn_dse.hardware.units import format_si
        click.secho(f"warning: does not fit: {format_si(cap['memory_bytes'], 'B')} needed ({cap['capacity_counts']}), "
                    f"{format_si(cap['usable_bytes'], 'B')} usable on one {spec.name}", fg="yellow", err=True)
    if as_json:
        echo_json({**p.to_dict(), **cap})
        return
    from attn_dse.cli.report import prediction_table
    prediction_table(p, wl, cap)


def _predict_parallel(hw, wl, phase, batch, seq, context, dtype, scope, causal, fused, achievable, kernel,
                      tp, cp, nodes, cp_scheme, as_json):
    """predict --tp/--cp/--nodes: one step spread over the devices, with its collectives."""
    from attn_dse.cost.parallel import Parallel, predict_parallel
    r = predict_parallel(hw, wl, phase, batch, seq, context, dtype, scope, causal, fused, achievable, kernel,
                         Parallel(tp, cp, nodes, cp_scheme))
    d = r.to_dict()
    if as_json:
        echo_json(d)
        return
    rows = [[k, d[k]] for k in ("hardware", "variant", "phase", "tp", "cp", "nodes", "cp_scheme", "latency_s",
                                 "compute_s", "comm_s", "exposed_comm_s", "flops", "kv_cache_bytes", "limiter")]
    rows += [[f"  {k}", v] for k, v in d["breakdown_s"].items()]
    echo_table(f"{r.variant} on {r.devices} x {r.hardware}", ["field", "value"], rows)


def _capacity(hw, wl, p, scope: str, causal: bool, weight_dtype=None, kv_dtype=None, kv_block=1,
              fragmentation=0.0) -> dict:
    """One device's memory at this point: the KV cache of every layer (one when the workload has
    no depth) plus the scope's weights (core: none; layer: one layer's attention weights; model:
    the model's), against the usable 90% of HBM (the rest: activations, runtime)."""
    import dataclasses

    from attn_dse.cost.capacity import capacity
    deep = bool(wl.layer_groups) or wl.params.get("n_layers") is not None
    held = wl if deep else dataclasses.replace(wl, params={**wl.params, "n_layers": 1})
    weights = {"core": 0.0, "layer": float(p.weight_bytes)}.get(scope)  # None: the model's
    c = capacity(hw, held, p.phase, p.batch, p.context, p.seq, p.dtype, causal, weights_bytes=weights,
                 weight_dtype=weight_dtype, kv_dtype=kv_dtype, kv_block=kv_block, fragmentation=fragmentation)
    depth = wl.params.get("n_layers") or sum(count for count, _ in wl.layer_groups)
    layers = f"all {depth:g} layers" if deep else "one layer (no n_layers given)"
    counted = f"KV cache of {layers}" + {"core": ", no weights (scope core)",
                                          "layer": " + one layer's attention weights (scope layer)",
                                          "model": " + the model's weights (scope model)"}[scope]
    if scope == "model" and getattr(wl.model, "ffn", None) is not None:
        counted += " (attention, MLP or experts, embeddings and LM head) + activations"
    return {"fits": bool(c.fits), "memory_bytes": float(c.memory_bytes), "usable_bytes": float(c.usable_bytes),
            "capacity_counts": counted, "max_batch": float(c.max_batch), "kv_bytes": float(c.kv_bytes),
            "activation_bytes": float(c.activation_bytes), "fragmentation_bytes": float(c.fragmentation_bytes),
            "memory_weight_bytes": float(c.weight_bytes)}


@click.command("variants")
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


@click.command("models")
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


@click.command()
@click.argument("hw", required=False)
@click.argument("space", required=False, type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", default="sweep-out", show_default=True, type=click.Path(file_okay=False),
              help="Directory for points.parquet (or .csv/.jsonl), summary.json and figures.")
@click.option("--strategy", type=click.Choice(["grid", "random", "evolve"]), default=None,
              help="Override the space's strategy: exhaustive grid, random samples, or differential evolution.")
@click.option("--samples", type=POSITIVE, default=None, help="Points for random / evaluations for evolve.")
@click.option("--no-points", is_flag=True, help="Skip writing every point (summary and figures only).")
@click.option("--format", "formats", default="parquet", show_default=True, metavar="LIST",
              help="Point files, comma-separated: parquet (columnar, pyarrow), csv, jsonl.")
@click.option("--max-points", type=POSITIVE, default=None,
              help="Refuse a grid above this many points (default 100,000,000).")
@click.option("--workers", type=POSITIVE, default=None,
              help="Local worker processes (default: one per core; sweeps of at most 200,000 points "
                   "run in this process unless --workers is given).")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Run on an existing Dask cluster, e.g. tcp://10.0.0.1:8786 (its workers write the "
                   "parts, so --out must be on a filesystem they share).")
@click.option("--resume", is_flag=True,
              help="Continue an interrupted sweep into the same --out: finished chunks are read back, "
                   "not evaluated again.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def sweep(hw, space, out_dir, strategy, samples, no_points, formats, max_points, workers, scheduler, resume,
          as_json):
    """Explore a design space on HW and report the best designs and the Pareto set.

    With no SPACE it runs the built-in study: every registered variant at iso-model
    settings (70B-class and DeepSeek-V3-class), prefill and decode, context 1k-128k,
    batch 1-256, under the device's memory capacity: which variant wins where, by how
    much, what bounds it, and the largest batch each supports.

    \b
    Examples:
      attn-dse sweep hw/h20.yaml
      attn-dse sweep h100 spaces/gqa-vs-mla.yaml --out results/
      attn-dse sweep spaces/hardware-what-if.yaml --strategy random --samples 5000
      attn-dse sweep h100 big.yaml --workers 8 --out big/       (Ctrl-C, then add --resume)
      attn-dse sweep h100 big.yaml --scheduler tcp://head:8786  (a Dask cluster)

    Points go to OUT/points.parquet/, a Parquet dataset with one part per chunk of 50,000
    points: pyarrow.parquet.read_table, pandas.read_parquet or DuckDB read it as one table.
    The result is the same whatever runs it: this process, --workers N or --scheduler.
    SPACE files: see spaces/*.yaml. Ctrl-C stops early and still writes a valid partial result,
    which --resume continues.
    """
    import sys
    from pathlib import Path

    from attn_dse.dse.sweep import run_sweep

    make_out_dir(out_dir)
    if hw and space is None and Path(hw).suffix in (".yaml", ".yml") and _is_space(hw):
        hw, space = None, hw
    from attn_dse.cli.figures import sweep_figures
    from attn_dse.cli.progress import progress_bar

    with progress_bar("evaluating design points", enabled=sys.stderr.isatty()) as on_progress:
        summary, res = run_sweep(hw, space, out_dir, strategy=strategy, samples=samples,
                                 on_progress=on_progress, write_points=not no_points,
                                 max_points=max_points, formats=parse_formats(formats), workers=workers,
                                 scheduler=scheduler, resume=resume)
    if res.columns:
        summary["figures"] = sweep_figures(res, summary, Path(out_dir))
    summary["files"] = [str(p) for p in sorted(Path(out_dir).iterdir())]
    if as_json:
        echo_json(summary)
    else:
        from attn_dse.cli.report import sweep_report
        sweep_report(summary)
    if summary.get("partial"):
        sys.exit(130)  # interrupted (Ctrl-C): what was written is consistent, but incomplete


def parse_formats(text: str) -> tuple[str, ...]:
    from attn_dse.dse.output import FORMATS
    names = tuple(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    bad = [n for n in names if n not in FORMATS]
    if bad or not names:
        raise AttnDseError(f"--format {text!r}: {', '.join(bad) or 'nothing'} is not a point format",
                           fix="give parquet, csv or jsonl, comma-separated (e.g. --format parquet,csv)")
    return names


def _is_space(path: str) -> bool:
    import yaml
    try:
        data = yaml.safe_load(open(path))
    except Exception:
        return False
    return isinstance(data, dict) and "variants" in data


@click.command()
@click.argument("hws", nargs=-1, required=True)
@click.option("--variants", default=None, help="Comma list of variants at 70B-class settings, e.g. gqa,mla,mha.")
@click.option("--model", "models", multiple=True, help="Model preset, repeatable (instead of --variants).")
@click.option("--phase", default="decode,prefill", show_default=True, help="Comma list of phases.")
@click.option("--context", default="1024,8192,65536", show_default=True,
              help="Comma list of context lengths in tokens, k = 1024 (1k,8k,64k): points of one workload "
                   "form a trajectory.")
@click.option("--batch", type=POSITIVE, default=16, show_default=True)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="FILE.png, .svg or .pdf")
@click.option("--json", "as_json", is_flag=True, help="Also print the plotted points as JSON.")
def roofline(hws, variants, models, phase, context, batch, output, as_json):
    """Plot attention workloads on the roofline of one or more presets (overlaid).

    \b
    Examples:
      attn-dse roofline h100 h20 --variants gqa,mla,mha -o roofline.png
      attn-dse roofline h200 --model deepseek-v3 --model llama-3-70b --phase decode -o r.svg
    """
    from attn_dse.cli.common import figure_path, parse_counts, parse_names
    from attn_dse.hardware.loader import load_hardware
    from attn_dse.cost.placement import roofline_points
    from attn_dse.plots.roofline import roofline_plot
    from attn_dse.workloads.shape import PHASES
    from attn_dse.workloads.study import named_workloads

    figure_path(output)
    phases = parse_names(phase, "--phase", PHASES)
    contexts = parse_counts(context, "--context")
    workloads = named_workloads(variants, models)
    specs = [load_hardware(h) for h in hws]
    points = [pt for hw in specs for pt in roofline_points(hw, workloads, phases, contexts, batch)]
    data = roofline_plot(specs, points, output)
    if as_json:
        echo_json({"path": data["path"], "points": points, "ceilings": data["ceilings"]})
    else:
        click.echo(f"wrote {data['path']} ({len(points)} points on {', '.join(h.name for h in specs)})")


@click.command()
@click.argument("hw")
@click.option("--measure", is_flag=True, help="Run the kernels on this machine's GPU first (needs the gpu extra).")
@click.option("--measurements", type=click.Path(dir_okay=False), multiple=True, metavar="FILE",
              help="CSV of measured kernels (default: the stored measurements for HW); repeatable: the rows "
                   "of each file in turn. Any attention kernel's timings work: columns family, batch, seq, "
                   "context, n_heads, n_kv_heads, head_dim, median_s.")
@click.option("--calibrate", is_flag=True, help="Fit the model's parameters on 3/4 of the rows; report the held-out 1/4.")
@click.option("--write", is_flag=True, help="With --calibrate: store the fitted knobs as calibration/knobs/HW/IMPLEMENTATION.yaml.")
@click.option("--implementation", default="triton", show_default=True,
              help="Whose kernels the measurements time: the knobs compared, fitted and stored are this implementation's.")
@click.option("--family", "families", multiple=True, metavar="FAMILY",
              help="With --calibrate: fit only this kernel family's knobs (repeatable); the implementation's "
                   "shared knobs and other families keep their stored values. For a new kernel of one family.")
@click.option("--out", "out_dir", default="validate-out", show_default=True, type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True)
def validate(hw, measure, measurements, calibrate, write, implementation, families, out_dir, as_json):
    """Compare predictions with measured kernels: MAPE per kernel family, worst shapes, figure.

    \b
    Examples:
      attn-dse validate h100                       # stored H100 measurements, no GPU needed
      attn-dse validate h200 --measurements attn_dse/validation/data/h200-measurements.csv
      attn-dse validate h100 --calibrate --write   # refit the knobs into calibration/knobs/h100/triton.yaml
      attn-dse validate h100 --measurements mine.csv --implementation flashinfer --calibrate --write
      # fit one kernel's knobs alone (the other families keep theirs):
      attn-dse validate h200 --measurements attn_dse/validation/data/h200-decode-fp8-measurements.csv --calibrate --family decode_regs
      # one kernel's rows from two runs (the second on shapes the first never had):
      attn-dse validate h200 --measurements a.csv --measurements b.csv --calibrate --family decode_widen
      attn-dse validate h100 --measure             # on a GPU: check + time the kernels, then compare
    """
    from pathlib import Path

    from attn_dse.errors import AttnDseError
    from attn_dse.hardware.loader import load_hardware
    from attn_dse.validation.report import run_validation

    if write and not calibrate:
        raise AttnDseError("--write stores fitted knobs, and only --calibrate fits them",
                           fix="pass --calibrate --write (or drop --write)")
    if families and not calibrate:
        raise AttnDseError("--family picks the knobs --calibrate fits", fix="pass --calibrate --family NAME")
    make_out_dir(out_dir)
    if measure:
        from attn_dse.gpu.measure import main as run_measure
        run_measure(Path(out_dir))
        measurements = (str(Path(out_dir) / "measurements.csv"),)
    spec = load_hardware(hw)
    result, comparison = run_validation(spec, measurements, calibrate=calibrate, write=write,
                                        implementation=implementation, only=families)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from attn_dse.plots.validation import predicted_vs_measured
    fig = predicted_vs_measured(comparison.measured, comparison.predicted, comparison.families,
                                out / f"predicted-vs-measured-{spec.name}.png",
                                title=f"{spec.name}: model vs {result['device']} ({result['date']})")
    result["figure"] = fig["path"]
    if as_json:
        echo_json(result)
        return
    from attn_dse.cli.report import validation_report
    validation_report(result)
