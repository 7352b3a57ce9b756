"""Named workloads for figures: variants at the 70B-class settings of the built-in study,
or model presets."""
from __future__ import annotations

from attn_dse.errors import AttnDseError
from attn_dse.workloads.registry import Workload, attention


def named_workloads(variants: str | None, models: tuple[str, ...]) -> dict[str, Workload]:
    from attn_dse.dse.study import builtin_space
    out: dict[str, Workload] = {}
    for m in models:
        out[m] = attention.from_model(m)
    if variants:
        entries = {e.variant: e for e in builtin_space().variants if e.label.startswith("70b/")}
        for name in (v.strip() for v in variants.split(",") if v.strip()):
            if name not in entries:
                raise AttnDseError(f"unknown variant '{name}' for --variants",
                                   fix="choose from: " + ", ".join(sorted(entries)))
            e = entries[name]
            out[e.label.split("/", 1)[1]] = attention(name, **{k: v[0] for k, v in e.params.items()})
    if not out:
        raise AttnDseError("nothing to plot", fix="pass --variants gqa,mla or --model llama-3-70b")
    return out
