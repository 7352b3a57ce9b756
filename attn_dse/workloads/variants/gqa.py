"""Grouped-query attention and its two ends, MHA (n_kv_heads = n_heads) and MQA (one KV head).

Core FLOPs 2*h_q*pairs*(d_qk + d_v); KV per token 2*h_kv*d elements; decode intensity ~ g
FLOP/byte in bf16 (variants.md section 1). With tp > 1 heads are sharded: each device holds
n_heads/tp query heads and max(n_kv_heads/tp, 1) KV heads (KV replicated past tp = n_kv_heads).
"""
from __future__ import annotations

import numpy as np

from attn_dse.workloads import pairs as P
from attn_dse.workloads.builders import all_reduce, qkv_out_projections, softmax_attention
from attn_dse.workloads.kernel_spec import KernelSpec, kv_fields
from attn_dse.workloads.registry import REQUIRED, Param, Variant, register, require, show

SKIP = Param("skip_fraction", float, 0.0, "BLASST threshold skipping: fraction of KV tiles skipped (0-1)", minimum=0)
TP = Param("tp", int, 1, "tensor-parallel degree (heads sharded across devices)")


@register
class GQA(Variant):
    name = "gqa"
    summary = "grouped-query attention: n_heads query heads share n_kv_heads K/V heads"
    params = (Param("n_heads", int, REQUIRED, "query heads"),
              Param("n_kv_heads", int, REQUIRED, "K/V heads; must divide n_heads"),
              Param("head_dim", int, 128, "per-head width"), SKIP, TP)

    def resolve(self, p):
        if p["d_model"] is None:
            p["d_model"] = p["n_heads"] * p["head_dim"]
        return p

    def check(self, p):
        require(np.mod(p["n_heads"], p["n_kv_heads"]) == 0,
                f"{self.name}: n_heads={show(p['n_heads'])} is not divisible by n_kv_heads={show(p['n_kv_heads'])}",
                "choose n_kv_heads among the divisors of n_heads")
        require(p["skip_fraction"] < 1, f"{self.name}: skip_fraction must be below 1", "e.g. 0.5")
        require(np.mod(p["n_heads"], p["tp"]) == 0,
                f"{self.name}: n_heads={show(p['n_heads'])} is not divisible by tp={show(p['tp'])}",
                "choose tp among the divisors of n_heads")

    def heads(self, p):
        """(query heads, KV heads) held by one device."""
        return p["n_heads"] / p["tp"], np.maximum(p["n_kv_heads"] / p["tp"], 1.0)

    def dims(self, p):
        return p["head_dim"], p["head_dim"]

    def pairs(self, p, s):
        return P.dense(s.seq, s.past, s.causal)

    def window(self, p):
        return np.inf

    def cache_read_tokens(self, p, s):
        return s.past

    def layer_ops(self, p, s):
        h_q, h_kv = self.heads(p)
        d_qk, d_v = self.dims(p)
        pre, post = qkv_out_projections(s, p["d_model"], h_q, h_kv, d_qk, d_v)
        comm = [all_reduce(s, "y", p["d_model"], p["tp"])] if np.any(p["tp"] > 1) else []
        return pre + self._core(p, s) + post + comm

    def core_ops(self, p, s):
        # without the projections it would build only to drop; a subclass with layer ops of
        # its own takes its core from them
        return self._core(p, s) if type(self).layer_ops is GQA.layer_ops else super().core_ops(p, s)

    def _core(self, p, s):
        h_q, h_kv = self.heads(p)
        d_qk, d_v = self.dims(p)
        return softmax_attention(s, h_q=h_q, h_kv=h_kv, d_qk=d_qk, d_v=d_v, pairs=self.pairs(p, s),
                                 cache_tokens=self.cache_read_tokens(p, s), skip=p["skip_fraction"])

    def kv_bytes_per_token(self, p, s):
        h_kv = self.heads(p)[1]
        d_qk, d_v = self.dims(p)
        return h_kv * (d_qk + d_v) * s.kv_bytes_per_element

    def kernel_spec(self, p, s):
        h_q, h_kv = self.heads(p)
        d_qk, d_v = self.dims(p)
        return KernelSpec(s.batch, s.seq, s.past, h_q, h_kv,
                    d_qk, d_v, self.pairs(p, s), self.cache_read_tokens(p, s), s.causal,
                    s.bytes_per_element, skip=p["skip_fraction"], window=self.window(p), **kv_fields(s))


@register
class MHA(GQA):
    name = "mha"
    summary = "multi-head attention: one K/V head per query head"
    params = (Param("n_heads", int, REQUIRED, "heads"), Param("head_dim", int, 128, "per-head width"), SKIP, TP)

    def resolve(self, p):
        p["n_kv_heads"] = p["n_heads"]
        return super().resolve(p)


@register
class MQA(GQA):
    name = "mqa"
    summary = "multi-query attention: all query heads share one K/V head"
    params = MHA.params

    def resolve(self, p):
        p["n_kv_heads"] = 1.0
        return super().resolve(p)
