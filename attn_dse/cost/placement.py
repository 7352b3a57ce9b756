"""Workloads placed on the roofline: intensity = FLOPs / minimum bytes, attained = FLOPs /
predicted latency (the points `attn-dse roofline` draws)."""
from __future__ import annotations

import numpy as np

from attn_dse.cost.predict import predict
from attn_dse.hardware.spec import Hardware


def roofline_points(hw: Hardware, workloads: dict, phases=("decode",), contexts=(4096,), batch=16,
                    dtype="bf16", scope="core") -> list[dict]:
    """Each (workload, phase, context) placed by the model: intensity = FLOPs / min bytes,
    attained = FLOPs / predicted latency."""
    pts = []
    for label, wl in workloads.items():
        for phase in phases:
            ctx = np.asarray(contexts, dtype=float)
            kw = dict(context=ctx) if phase == "decode" else dict(seq=ctx)
            p = predict(hw, wl, phase, batch, dtype=dtype, scope=scope, **kw)
            for i, c in enumerate(ctx):
                pts.append({"hardware": hw.name, "label": label, "phase": phase, "context": int(c),
                            "intensity": float(np.broadcast_to(p.arithmetic_intensity, ctx.shape)[i]),
                            "flop_per_s": float(np.broadcast_to(p.flops / p.latency_s, ctx.shape)[i]),
                            "bound": str(np.broadcast_to(np.asarray(p.bound, dtype=object), ctx.shape)[i])})
    return pts
