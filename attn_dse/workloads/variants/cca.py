"""Compressed Convolutional Attention (CCA) and its grouped form CCGQA (arXiv 2510.04476).

Q, K, V are down-projected to E/C (CCGQA: queries to E/C1, keys/values to E/C2) and attention
runs entirely in that latent, with heads of width (E/C1)/n_heads; a short causal convolution
mixes q and k along the sequence; the output is up-projected back to E. Forward FLOPs
(2/C)*4BSE^2 + 4BES^2/C (+ conv) for CCA (Table II); KV cache 2*S*E/C2 elements per layer.
"""
from __future__ import annotations

import numpy as np

from attn_dse.workloads import pairs as P
from attn_dse.workloads.builders import linear, softmax_attention
from attn_dse.workloads.ops import Op, Tensor
from attn_dse.workloads.kernel_spec import KernelSpec, kv_fields
from attn_dse.workloads.registry import REQUIRED, Param, Variant, register, require


@register
class CCGQA(Variant):
    name = "ccgqa"
    summary = "compressed convolutional grouped-query attention (latent widths E/C1, E/C2)"
    params = (Param("d_model", int, REQUIRED, "model width E"),
              Param("n_heads", int, REQUIRED, "query heads in the latent"),
              Param("q_compression", int, 2, "C1: queries live in E/C1"),
              Param("kv_compression", int, 8, "C2: keys/values live in E/C2"),
              Param("conv_kernel", int, 3, "causal convolution length on q and k"))
    common = (Param("n_layers", int, None, "layers, for scope=model"),)

    def dims(self, p):
        e_q = p["d_model"] / p["q_compression"]
        e_kv = p["d_model"] / p["kv_compression"]
        d = e_q / p["n_heads"]
        return e_q, e_kv, d, e_kv / d

    def check(self, p):
        e_q, e_kv, d, h_kv = self.dims(p)
        require(d == np.floor(d), f"{self.name}: d_model/C1 must be divisible by n_heads", "adjust n_heads")
        require((h_kv == np.floor(h_kv)) & (h_kv >= 1),
                f"{self.name}: E/C2 must be a whole number of heads of width E/(C1*n_heads)",
                "choose kv_compression so that E/C2 is a multiple of the head width")
        require(np.mod(p["n_heads"], h_kv) == 0, f"{self.name}: n_heads must be divisible by the KV heads",
                "choose compressions whose ratio divides n_heads")

    def layer_ops(self, p, s):
        e_q, e_kv, d, h_kv = self.dims(p)
        E, kc, b = p["d_model"], p["conv_kernel"], s.bytes_per_element
        conv = Op("qk_conv", "elementwise", vector_flops=2 * kc * s.tokens * (e_q + e_kv),
                  reads=(Tensor("q_lin", s.tokens * e_q * b), Tensor("k_lin", s.tokens * e_kv * b)),
                  writes=(Tensor("q", s.tokens * e_q * b), Tensor("k_new", s.tokens * e_kv * b)))
        core = softmax_attention(s, h_q=p["n_heads"], h_kv=h_kv, d_qk=d, d_v=d,
                                 pairs=P.dense(s.seq, s.past, s.causal), cache_tokens=s.past)
        return ([linear("q_down", s, E, e_q, "x", "q_lin"),
                 linear("k_down", s, E, e_kv, "x", "k_lin", group="kv_proj"),
                 linear("v_down", s, E, e_kv, "x", "v_new", group="kv_proj"), conv]
                + core + [linear("o_up", s, e_q, E, "o", "y")])

    def kv_bytes_per_token(self, p, s):
        return 2 * self.dims(p)[1] * s.kv_bytes_per_element

    def kernel_spec(self, p, s):
        e_q, e_kv, d, h_kv = self.dims(p)
        return KernelSpec(s.batch, s.seq, s.past, p["n_heads"], h_kv,
                    d, d, P.dense(s.seq, s.past, s.causal), s.past, s.causal, s.bytes_per_element,
                    **kv_fields(s))


@register
class CCA(CCGQA):
    name = "cca"
    summary = "compressed convolutional attention: Q, K, V all in E/C"
    params = (Param("d_model", int, REQUIRED, "model width E"),
              Param("n_heads", int, REQUIRED, "heads in the latent"),
              Param("compression", int, 4, "C: attention runs in E/C"),
              Param("conv_kernel", int, 3, "causal convolution length on q and k"))

    def resolve(self, p):
        p["q_compression"] = p["kv_compression"] = p["compression"]
        return p
