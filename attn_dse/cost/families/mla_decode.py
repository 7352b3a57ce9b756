"""Absorbed MLA decode (FlashMLA-style): all query heads of a sequence attend one shared latent
(K = the 576-wide latent, V = its first 512 columns, read once). The decode model with its own
knobs: its programs fill a core's shared memory, so one core streams less than in GQA decode."""
from __future__ import annotations

from attn_dse.cost.families.decode import decode_args, estimate_decode
from attn_dse.cost.family import Family, register_family
from attn_dse.cost.measured import config, num


@register_family
class MlaDecode(Family):
    name = "mla_decode"
    order = 20
    compute_efficiency, memory_efficiency = 0.7, 0.88

    def claims(self, spec):
        return spec.phase == "decode" and spec.kv_shared

    def estimate(self, spec, hw, c, knobs, fixed=None):
        return estimate_decode(self.name, spec, hw, c, knobs, fixed)

    def workload_for(self, row):
        """Absorbed MLA at the row's head count; a recorded (layout, heads per program, ...)
        configuration pins block_m (how many programs stream the latent)."""
        from attn_dse.workloads import attention
        wl = attention("mla", n_heads=int(num(row, "n_heads")), scheme="absorbed")
        kw = decode_args(row)
        kw.pop("causal")
        cfg = config(row)
        mapping = {**(kw["mapping"] or {}), **({"block_m": float(cfg[1])} if len(cfg) == 5 else {})}
        return wl, {**kw, "mapping": mapping or None}
