"""Multi-head latent attention (DeepSeek-V2/V3) with its execution schemes named explicitly.

Parameters (DeepSeek-V3): n_heads 128, kv_lora_rank d_c 512, qk_rope_dim d_r 64, qk_nope_dim
128, v_head_dim 128, q_lora_rank 1536, d_model 7168 (variants.md 2.2). Schemes:
- naive: cache decompressed per-head K (d_nope + d_r) and V; MHA-mode core (decode AI ~ 1).
- absorbed: cache the latent (d_c + d_r); W_UK folded into q, W_UV applied after the core;
  MQA-mode core with K = latent (576) and V = its first d_c (512) columns, read once.
- recompute: cache the latent; re-up-project all cached tokens to K/V every step.
- auto: latent cache; prefill/train decompress (= recompute over the prompt), decode absorbed
  (what vLLM and FlashMLA do).
The Geens & Verhelst names "reuse"/"recompute" are read as naive/recompute here ([U] in
variants.md). kv_layout=flashmla_fp8 stores 656 bytes per token (FlashMLA README).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from attn_dse.workloads import pairs as P
from attn_dse.workloads.builders import all_reduce, linear, softmax_attention, split_outputs
from attn_dse.workloads.ops import Op, Tensor
from attn_dse.workloads.kernel_spec import KernelSpec, kv_fields
from attn_dse.workloads.registry import Param, Variant, register, require, show
from attn_dse.workloads.variants.gqa import SKIP, TP

FLASHMLA_FP8_BYTES = 656  # 512 fp8 latent + 4 fp32 scales + 64 bf16 rope (FlashMLA README)

MLA_PARAMS = (
    Param("n_heads", int, 128, "query heads"),
    Param("kv_lora_rank", int, 512, "latent width d_c"),
    Param("qk_rope_dim", int, 64, "decoupled RoPE key width d_r"),
    Param("qk_nope_dim", int, 128, "per-head no-RoPE q/k width"),
    Param("v_head_dim", int, 128, "per-head value width"),
    Param("q_lora_rank", int, 1536, "query latent width (0: direct W_Q)", minimum=0),
    Param("kv_layout", str, "native", "flashmla_fp8: 656 B/token latent cache",
          choices=("native", "flashmla_fp8")),
)


@register
class MLA(Variant):
    name = "mla"
    summary = "multi-head latent attention; scheme = naive | absorbed | recompute | auto"
    params = MLA_PARAMS + (Param("scheme", str, "auto", "execution scheme",
                                 choices=("auto", "naive", "absorbed", "recompute")), SKIP, TP)

    def resolve(self, p):
        if p["d_model"] is None:
            p["d_model"] = 7168.0
        return p

    def check(self, p):
        require(np.mod(p["n_heads"], p["tp"]) == 0, f"mla: n_heads={show(p['n_heads'])} not divisible by tp",
                "pick tp among the divisors of n_heads")
        require(p["skip_fraction"] < 1, "mla: skip_fraction must be below 1", "e.g. 0.5")
        if p["kv_layout"] == "flashmla_fp8" and p["scheme"] == "naive":
            raise_layout()

    def scheme(self, p, s) -> str:
        if p["scheme"] != "auto":
            return p["scheme"]
        return "absorbed" if s.phase == "decode" else "recompute"

    def heads(self, p):
        return p["n_heads"] / p["tp"]

    def latent_dims(self, p):
        """(latent columns a device reads for q.k, of which the value columns)."""
        return p["kv_lora_rank"] + p["qk_rope_dim"], p["kv_lora_rank"]

    def layer_ops(self, p, s):
        h, E, b = self.heads(p), p["d_model"], s.bytes_per_element
        d_c, d_r, d_n, d_v = p["kv_lora_rank"], p["qk_rope_dim"], p["qk_nope_dim"], p["v_head_dim"]
        scheme = self.scheme(p, s)
        ops = self._q_path(p, s, h)
        lat_qk, lat_v = self.latent_dims(p)  # the latent columns this device holds
        ops.append(linear("kv_down", s, E, lat_qk, "x", "kv_latent", group="kv_proj"))
        pairs = self.pairs(p, s)
        skip = p["skip_fraction"]
        if scheme == "absorbed":
            # q_latent = [q_nope W_UK ; q_rope]: the absorbed query, lat_qk wide per head
            absorb = linear("q_absorb", s, d_n, lat_v, "q_nope", "q_absorbed", tokens=s.tokens * h,
                            x_bytes=s.tokens * h * (d_n + d_r) * b)
            ops.append(split_outputs(absorb, Tensor("q_latent", s.tokens * h * lat_qk * b)))
            ops += softmax_attention(s, h_q=h, h_kv=1.0, d_qk=lat_qk, d_v=lat_v, pairs=pairs,
                                     cache_tokens=self.cache_read_tokens(p, s), kv_shared=True, skip=skip,
                                     q="q_latent", o="o_latent", new="latent", kv_bytes=self.latent_bytes(p, s))
            ops.append(linear("v_up", s, lat_v, d_v, "o_latent", "o", tokens=s.tokens * h))
        else:
            # K = [W_UK c ; shared rope key] per head, V = W_UV c
            up = linear("kv_up_new", s, d_c, h * (d_n + d_v), "kv_latent", "kv_up", group="kv_proj",
                        x_bytes=s.tokens * (d_c + d_r) * b)
            kv_new = (Tensor("k_new", s.tokens * h * (d_n + d_r) * b), Tensor("v_new", s.tokens * h * d_v * b))
            ops.append(split_outputs(up, *kv_new))
            cache = "kv_cache"
            if scheme == "recompute":
                # re-up-project every cached latent into per-head K/V, materialized in HBM
                rows = s.batch * s.past
                up = linear("kv_up_cache", s, d_c, h * (d_n + d_v), "latent_cache", "kv_up", tokens=rows, group="core")
                ops.append(split_outputs(_as_cache_read(up, s, d_c + d_r, self.latent_bytes(p, s)),
                                         Tensor("up_k_cache", rows * h * (d_n + d_r) * b),
                                         Tensor("up_v_cache", rows * h * d_v * b)))
                cache = "activation"
            ops += softmax_attention(s, h_q=h, h_kv=h, d_qk=d_n + d_r, d_v=d_v, pairs=pairs,
                                     cache_tokens=s.past, skip=skip, cache=cache)
        ops.append(linear("o_proj", s, h * d_v, E, "o", "y"))
        if np.any(p["tp"] > 1):
            ops.append(all_reduce(s, "y", E, p["tp"]))
        return ops

    def pairs(self, p, s):
        return P.dense(s.seq, s.past, s.causal)

    def cache_read_tokens(self, p, s):
        return s.past

    def _q_path(self, p, s, h):
        E, width = p["d_model"], h * (p["qk_nope_dim"] + p["qk_rope_dim"])
        if np.all(p["q_lora_rank"] > 0):
            return [linear("q_down", s, E, p["q_lora_rank"], "x", "q_latent_in"),
                    linear("q_up", s, p["q_lora_rank"], width, "q_latent_in", "q_nope")]
        return [linear("q_proj", s, E, width, "x", "q_nope")]

    def latent_bytes(self, p, s):
        """Bytes per cached latent element: the KV format's, or FlashMLA's FP8 row (656 B over
        576 elements: 512 fp8 + 4 fp32 scales + 64 bf16 RoPE) for the layout."""
        if p["kv_layout"] == "flashmla_fp8":
            return FLASHMLA_FP8_BYTES / (p["kv_lora_rank"] + p["qk_rope_dim"])
        return s.kv_bytes_per_element

    def latent_kv_fields(self, p, s) -> dict:
        if p["kv_layout"] == "flashmla_fp8":  # the 512 latent columns are fp8, the RoPE part bf16
            return kv_fields(s, self.latent_bytes(p, s), p["kv_lora_rank"] / (p["kv_lora_rank"] + p["qk_rope_dim"]))
        return kv_fields(s)

    def kv_bytes_per_token(self, p, s):
        if self.scheme(p, s) == "naive":
            return self.heads(p) * (p["qk_nope_dim"] + p["qk_rope_dim"] + p["v_head_dim"]) * s.kv_bytes_per_element
        return self.latent_dims(p)[0] * self.latent_bytes(p, s)

    def kernel_spec(self, p, s):
        h, scheme = self.heads(p), self.scheme(p, s)
        pairs = self.pairs(p, s)
        if scheme == "absorbed":
            lat_qk, lat_v = self.latent_dims(p)
            return KernelSpec(s.batch, s.seq, s.past, h, 1.0, lat_qk, lat_v, pairs, self.cache_read_tokens(p, s), s.causal,
                        s.bytes_per_element, kv_shared=True, skip=p["skip_fraction"], **self.latent_kv_fields(p, s))
        d_qk, d_v = p["qk_nope_dim"] + p["qk_rope_dim"], p["v_head_dim"]
        return KernelSpec(s.batch, s.seq, s.past, h, h,
                    d_qk, d_v, pairs, s.past, s.causal, s.bytes_per_element, skip=p["skip_fraction"],
                    **kv_fields(s))


def _as_cache_read(op: Op, s, latent_width, latent_bytes) -> Op:
    """The recompute up-projection reads the persistent latent cache (with its RoPE part)."""
    latent = Tensor("latent_cache", s.batch * s.past * latent_width * latent_bytes, "kv_cache")
    return dataclasses.replace(op, reads=(latent,) + op.reads[1:])


def raise_layout():
    from attn_dse.errors import AttnDseError
    raise AttnDseError("mla: kv_layout=flashmla_fp8 caches the latent, not decompressed K/V",
                       fix="use scheme=absorbed, recompute or auto with it")
