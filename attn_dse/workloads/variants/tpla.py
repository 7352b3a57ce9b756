"""Tensor-parallel latent attention (TPLA, arXiv 2508.15881 sections 4-5.4).

Each of tp devices keeps all heads over a 1/tp slice of the latent plus the RoPE part:
d_c/tp + d_r columns per token (320 at tp = 2 for DeepSeek-V3, an ideal 576/320 = 1.8x less
KV per device). Partial outputs are combined by an all-reduce of the layer output.
"""
from __future__ import annotations

import numpy as np

from attn_dse.workloads.registry import Param, register, require
from attn_dse.workloads.variants.gqa import SKIP
from attn_dse.workloads.variants.mla import MLA, MLA_PARAMS


@register
class TPLA(MLA):
    name = "tpla"
    summary = "MLA with the latent split across tp devices (absorbed scheme)"
    params = MLA_PARAMS + (Param("tp", int, 2, "devices the latent is split across"), SKIP)

    def resolve(self, p):
        p["scheme"] = "absorbed"
        return super().resolve(p)

    def check(self, p):
        require(np.mod(p["kv_lora_rank"], p["tp"]) == 0, "tpla: kv_lora_rank must be divisible by tp",
                "pick tp among the divisors of kv_lora_rank")
        require(p["skip_fraction"] < 1, "tpla: skip_fraction must be below 1", "e.g. 0.5")

    def heads(self, p):
        return p["n_heads"]  # all heads on every device

    def latent_dims(self, p):
        slice_ = p["kv_lora_rank"] / p["tp"]
        return slice_ + p["qk_rope_dim"], slice_

