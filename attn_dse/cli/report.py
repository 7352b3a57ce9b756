"""Human-readable renderings of library results (tables only; no modelling here)."""
from __future__ import annotations

from attn_dse.arch_models.units import format_si
from attn_dse.cli.output import echo_table


def prediction_table(p, wl) -> None:
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
    ]
    if p.mapping:
        rows.append(["mapping", ", ".join(f"{k}={float(v):g}" for k, v in p.mapping.items())])
    for part, t in p.breakdown.items():
        rows.append([f"time: {part}", format_si(float(t), "s")])
    echo_table(f"{wl.name} on {p.hardware}: {p.phase}, batch {p.batch:g}, seq {p.seq:g}, "
               f"context {p.context:g}, {p.dtype}, scope {p.scope}", ["quantity", "value"], rows,
               caption=params)
