"""Human-readable renderings of library results (tables only; no modelling here)."""
from __future__ import annotations

from attn_dse.hardware.units import format_si
from attn_dse.cli.output import echo_table


def prediction_table(p, wl, cap: dict | None = None) -> None:
    params = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in wl.params.items()
                       if v is not None)
    rows = [
        ["latency", format_si(float(p.latency_s), "s")],
        ["bound (limiter)", f"{p.bound} ({p.limiter})"],
        ["matmul FLOPs", format_si(float(p.flops), "FLOP")],
        ["executed FLOPs (tile waste)", format_si(float(p.executed_flops), "FLOP")],
        ["HBM traffic (modelled)", format_si(float(p.hbm_bytes), "B")],
        ["HBM traffic (minimum)", format_si(float(p.min_hbm_bytes), "B")],
        ["arithmetic intensity", f"{float(p.arithmetic_intensity):.1f} FLOP/B"],
        ["KV cache held", format_si(float(p.kv_cache_bytes), "B")],
        ["achieved", f"{format_si(float(p.flops / p.latency_s), 'FLOP/s')}, "
                     f"{format_si(float(p.min_hbm_bytes / p.latency_s), 'B/s')}"],
        ["throughput", f"{float(p.tokens_per_s):,.0f} tokens/s"],
        ["ceilings", p.ceilings],
        ["kernel", f"{p.kernel} (implementation whose knobs timed it)"],
    ]
    if cap:
        rows.append(["fits one device" if cap["fits"] else "DOES NOT FIT one device",
                     f"{format_si(cap['memory_bytes'], 'B')} needed of {format_si(cap['usable_bytes'], 'B')} usable "
                     f"({cap['capacity_counts']})"])
        rows.append(["max batch at this context", f"{cap['max_batch']:,.0f} sequences"])
        if "tokens_per_s_per_gpu" in cap:
            rows.append(["tokens/s per GPU", f"{cap['tokens_per_s_per_gpu']:,.0f}"])
            for key, name in (("tpot_s", "time per output token"), ("ttft_s", "time to first token")):
                if cap[key] == cap[key]:
                    rows.append([name, format_si(cap[key], "s")])
    if p.mapping:
        rows.append(["mapping", ", ".join(f"{k}={float(v):g}" for k, v in p.mapping.items())])
    for part, t in p.breakdown.items():
        rows.append([f"time: {part}", format_si(float(t), "s")])
    echo_table(f"{wl.name} on {p.hardware}: {p.phase}, batch {p.batch:g}, seq {p.seq:g}, "
               f"context {p.context:g}, {p.dtype}, scope {p.scope}", ["quantity", "value"], rows,
               caption=params)


def sweep_report(summary: dict) -> None:
    """Conclusions first, then the best designs, the Pareto set, capacity, files."""
    import click

    eng = summary.get("engine") or {}
    where = {"serial": " in this process", "processes": f" on {eng.get('workers')} worker processes",
             "dask": f" on a Dask cluster of {eng.get('workers')} threads"}.get(eng.get("name"), "")
    head = (f"{summary['space']}: {summary['points']:,} points, {summary['feasible']:,} feasible, "
            f"{summary['elapsed_s']:.2f} s{where}"
            + (" (PARTIAL: interrupted; rerun with --resume to finish it)" if summary["partial"] else ""))
    click.secho(head, bold=True)
    study = summary.get("study")
    if study:
        click.echo("\nConclusions (cost only; the variants differ in model quality, which this tool does not judge):")
        for line in study["conclusions"]:
            click.echo(f"  - {line}")
        picks = [r for r in study["winners"] if r["context"] in (4096, 32768, 131072) and r["batch"] in (1, 16, 256)]
        echo_table("Fastest variant per token (selected points)",
                   ["class", "phase", "context", "batch", "winner", "time/token", "vs GQA-8", "lead", "bound"],
                   [[r["class"], r["phase"], r["context"], r["batch"], r["winner"],
                     format_si(r["time_per_token_s"], "s", 3), _x(r["speedup_vs_gqa8"]), _x(r["runner_up_ratio"]),
                     r["bound"]] for r in picks])
        caps = [r for r in study["capacity"]]
        names = sorted({(r["class"], r["variant"]) for r in caps})
        echo_table("Largest decode batch per device that fits (weights + KV)",
                   ["class", "variant", "KV/token", "max batch @32k", "max batch @128k"],
                   [[c, v, format_si(next(r["kv_bytes_per_token"] for r in caps if r["variant"] == v and r["class"] == c), "B", 3),
                     next((r["max_batch"] for r in caps if (r["class"], r["variant"], r["context"]) == (c, v, 32768)), "-"),
                     next((r["max_batch"] for r in caps if (r["class"], r["variant"], r["context"]) == (c, v, 131072)), "-")]
                    for c, v in names])
        serve = [r for r in study.get("serving", []) if r["context"] in (8192, 32768, 131072)]
        if serve:
            echo_table("Most tokens/s per GPU under a time-per-output-token target (decode, fits memory)",
                       ["class", "context", "TPOT target", "best variant", "batch", "tokens/s/GPU", "TPOT",
                        "GQA-8 tokens/s/GPU"],
                       [[r["class"], r["context"], f"{r['tpot_target_ms']} ms", r["winner"] or "-", r["batch"] or "-",
                         f"{r['tokens_per_s_per_gpu']:,.0f}", format_si(r["tpot_s"], "s", 3) if r["winner"] else "-",
                         f"{r['gqa8_tokens_per_s_per_gpu']:,.0f}"] for r in serve])
    else:
        _rows_table("Best designs", summary.get("best", [])[:10])
        _rows_table("Pareto set", summary.get("pareto", [])[:15])
    files = summary.get("files", [])
    if files:
        click.echo("\nWrote: " + ", ".join(files))


def _x(v):
    return "-" if v is None or v != v else f"{v:.2g}x"


_SHOW = (("hardware", "hw", None), ("label", "design", None), ("phase", "phase", None), ("batch", "batch", None),
         ("context", "context", None), ("time_per_token_s", "time/token", "s"), ("tokens_per_s", "tokens/s", ""),
         ("kv_bytes_per_token", "KV/token", "B"), ("max_batch", "max batch", None), ("bound", "bound", None))
_PARAMS = ("n_kv_heads", "kv_lora_rank", "window", "top_k", "latent", "share", "tp", "head_dim")


def _rows_table(title: str, rows: list[dict]) -> None:
    if not rows:
        return
    shown = [c for c in _SHOW if c[0] in rows[0]]
    params = [k for k in _PARAMS if any(r.get(k) is not None for r in rows)]
    echo_table(title, [c[1] for c in shown] + params,
               [[_fmt(r.get(k), unit) for k, _, unit in shown] + [_fmt(r.get(k), None) for k in params]
                for r in rows])


def _fmt(v, unit=None):
    if v is None:
        return "-"
    if isinstance(v, float) and unit is not None:
        return format_si(v, unit, 3).strip()
    if isinstance(v, float):
        return f"{v:.4g}"
    return v


def validation_report(r: dict) -> None:
    import click

    click.secho(f"{r['hardware']}: {r['rows']} measured kernels from {r['measurements']} "
                f"({r['device']}, {r['date']})", bold=True)
    click.echo(f"model parameters: {r['model_source']}")
    if "calibration" in r:
        c = r["calibration"]
        click.echo(f"calibrated on {c['n_train']} rows ({c['evaluations']} model evaluations); held out {c['n_test']}")
        if "written_to" in r:
            click.echo(f"wrote the fitted parameters to {r['written_to']}")
    fams = [f for f in r["all"] if f != "all"] + ["all"]
    echo_table("Prediction error by kernel family", ["family", "n", "MAPE", "worst", "held-out MAPE", "held-out worst"],
               [[f, r["all"][f]["n"], f"{100 * r['all'][f]['mape']:.1f}%", f"{100 * r['all'][f]['worst']:.0f}%",
                 f"{100 * r['held_out'][f]['mape']:.1f}%" if f in r["held_out"] else "-",
                 f"{100 * r['held_out'][f]['worst']:.0f}%" if f in r["held_out"] else "-"] for f in fams])
    echo_table("Worst shapes", ["family", "batch", "seq", "context", "heads", "measured", "predicted", "error"],
               [[w["family"], w["batch"], w["seq"], w["context"], f"{w['n_heads']}/{w['n_kv_heads']}",
                 format_si(w["measured_s"], "s", 3), format_si(w["predicted_s"], "s", 3),
                 f"{100 * w['error']:.0f}%"] for w in r["worst"]])
    click.echo(f"figure: {r['figure']}")
