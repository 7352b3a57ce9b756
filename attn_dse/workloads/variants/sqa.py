"""Sparse Query Attention (SQA): fewer query heads than the baseline's H.

Core FLOPs scale with H_q: 4*H_q*d*S^2*rho, a speed-up of H/H_q (SQA section 3.2.1, Eq. 9);
Q and O projections shrink by H_q/H. Symmetric sSQA: H_q = H_kv = H/2; extreme xSQA:
H_q = H_kv = H/4.
"""
from __future__ import annotations

import numpy as np

from attn_dse.workloads.registry import REQUIRED, Param, register, require
from attn_dse.workloads.variants.gqa import GQA, SKIP, TP


@register
class SQA(GQA):
    name = "sqa"
    summary = "sparse query attention: n_query_heads < n_heads of the baseline"
    params = (Param("n_heads", int, REQUIRED, "heads of the MHA baseline (H); sets d_model"),
              Param("n_query_heads", int, None, "query heads H_q < H"),
              Param("n_kv_heads", int, None, "K/V heads H_kv <= H_q"),
              Param("form", str, "custom", "symmetric: H_q = H_kv = H/2; extreme: H/4",
                    choices=("custom", "symmetric", "extreme")),
              Param("head_dim", int, 128, "per-head width"), SKIP, TP)

    def resolve(self, p):
        H = p["n_heads"]
        if p["form"] != "custom":
            p["n_query_heads"] = p["n_kv_heads"] = H / (2 if p["form"] == "symmetric" else 4)
        require(p["n_query_heads"] is not None and p["n_kv_heads"] is not None,
                "sqa: give n_query_heads and n_kv_heads, or form=symmetric|extreme",
                "e.g. n_query_heads=16 n_kv_heads=8")
        if p["d_model"] is None:
            p["d_model"] = H * p["head_dim"]
        return p

    def check(self, p):
        require(p["n_query_heads"] <= p["n_heads"], "sqa: n_query_heads must be <= n_heads", "lower n_query_heads")
        require(p["n_kv_heads"] <= p["n_query_heads"], "sqa: n_kv_heads must be <= n_query_heads", "lower n_kv_heads")
        require(np.mod(p["n_query_heads"], p["n_kv_heads"]) == 0,
                "sqa: n_query_heads must be divisible by n_kv_heads", "pick a divisor")
        require(np.mod(p["n_query_heads"], p["tp"]) == 0, "sqa: n_query_heads not divisible by tp", "pick a divisor")

    def heads(self, p):
        return p["n_query_heads"] / p["tp"], np.maximum(p["n_kv_heads"] / p["tp"], 1.0)
