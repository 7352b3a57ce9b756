"""Sliding-window attention: each query sees the last `window` keys (Mistral-7B: 4096).

Causal prefill pairs: W(W+1)/2 + (S-W)W for S >= W (variants.md 2.4). Decode reads at most
window-1 cached tokens from a rolling buffer of `window` tokens.
"""
from __future__ import annotations

import numpy as np

from attn_dse.workloads import pairs as P
from attn_dse.workloads.registry import Param, register, require
from attn_dse.workloads.variants.gqa import GQA


@register
class SWA(GQA):
    name = "swa"
    summary = "sliding-window GQA: each query attends its last `window` keys"
    params = GQA.params + (Param("window", int, 4096, "keys each query sees (including itself)"),)

    def check(self, p):
        super().check(p)
        require(np.asarray(p["window"]) > 0, "swa: window must be > 0", "e.g. window=4096")

    def window(self, p):
        return p["window"]

    def pairs(self, p, s):
        return P.window(s.seq, s.past, p["window"], s.causal)

    def cache_read_tokens(self, p, s):
        return np.minimum(s.past, p["window"] - 1)

    def kv_cache_tokens(self, p, s):
        return np.minimum(s.context, p["window"])
