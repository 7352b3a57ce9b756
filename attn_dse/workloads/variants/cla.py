"""Cross-layer attention (CLA-k): adjacent groups of k layers share one layer's K/V.

Only 1 in k layers computes K/V projections and holds a cache, so the model's KV footprint is
base/k, while per-layer decode traffic is unchanged: "even shared KV cache layers must be
separately re-read from main memory in each attention layer" (CLA paper section 2.3). Layer
scope reports the average layer (K/V projections and cache / k); model scope = n_layers of it.
"""
from __future__ import annotations

from attn_dse.workloads.ops import scaled
from attn_dse.workloads.registry import Param, Variant, get_variant, register


@register
class CLA(Variant):
    name = "cla"
    summary = "cross-layer KV sharing over any base variant (share = k layers per KV)"
    params = (Param("base", str, "gqa", "the variant whose K/V is shared"),
              Param("share", int, 2, "layers sharing one K/V (CLA2 = 2)"))

    def schema_for(self, given):
        base = get_variant(str(given.get("base", "gqa")))
        return {**base.schema_for(given), **{p.name: p for p in self.params}}

    def _base(self, p):
        return get_variant(p["base"])

    def _base_params(self, p):
        return {k: v for k, v in p.items() if k not in ("base", "share")}

    def resolve(self, p):
        base = self._base(p)
        return {**base.resolve(self._base_params(p)), "base": p["base"], "share": p["share"]}

    def check(self, p):
        self._base(p).check(self._base_params(p))

    def layer_ops(self, p, s):
        # the average layer: 1/k of a K/V projection, whose outputs the other layers re-read
        ops = self._base(p).layer_ops(self._base_params(p), s)
        return [o for op in ops
                for o in (scaled([op], 1.0 / p["share"], prefix="shared_") if op.group == "kv_proj" else [op])]

    def kv_bytes_per_token(self, p, s):
        return self._base(p).kv_bytes_per_token(self._base_params(p), s) / p["share"]

    def kv_cache_tokens(self, p, s):
        return self._base(p).kv_cache_tokens(self._base_params(p), s)

    def kernel_spec(self, p, s):
        return self._base(p).kernel_spec(self._base_params(p), s)
