"""Multi-matrix factorization attention (MFA, arXiv 2412.19255; Step-3 uses 64 heads, C = 256).

Shared down-projections S_q, S_k, S_v (E x C) and a per-head C x C query map: every head's
attention runs in C dimensions against one shared K (and V) head, so the core is MQA-shaped
with d = C. KV cache 2C per token (MFA) or C (MFA-KR, V re-parameterized from K: the one
cached latent serves as K and V). Decode AI = (2/b)*h (MFA), (2/b)*2h (MFA-KR).
"""
from __future__ import annotations

from attn_dse.workloads import pairs as P
from attn_dse.workloads.builders import linear, softmax_attention
from attn_dse.workloads.kernel_spec import KernelSpec, kv_fields
from attn_dse.workloads.registry import REQUIRED, Param, Variant, register


@register
class MFA(Variant):
    name = "mfa"
    summary = "multi-matrix factorization attention: h heads of width C over one shared KV head"
    key_reuse = False
    params = (Param("d_model", int, REQUIRED, "model width E"),
              Param("n_heads", int, REQUIRED, "query heads"),
              Param("latent", int, 256, "shared latent width C"))
    common = (Param("n_layers", int, None, "layers, for scope=model"),)

    def layer_ops(self, p, s):
        E, C, h = p["d_model"], p["latent"], p["n_heads"]
        kv = [linear("k_proj", s, E, C, "x", "kv_new" if self.key_reuse else "k_new", group="kv_proj")]
        if not self.key_reuse:
            kv.append(linear("v_proj", s, E, C, "x", "v_new", group="kv_proj"))
        core = softmax_attention(s, h_q=h, h_kv=1.0, d_qk=C, d_v=C, pairs=P.dense(s.seq, s.past, s.causal),
                                 cache_tokens=s.past, kv_shared=self.key_reuse)
        return ([linear("q_shared", s, E, C, "x", "q_c"), linear("q_heads", s, C, h * C, "q_c", "q")]
                + kv + core + [linear("o_proj", s, h * C, E, "o", "y")])

    def kv_bytes_per_token(self, p, s):
        return (1 if self.key_reuse else 2) * p["latent"] * s.kv_bytes_per_element

    def kernel_spec(self, p, s):
        return KernelSpec(s.batch, s.seq, s.past, p["n_heads"], 1.0, p["latent"], p["latent"],
                    P.dense(s.seq, s.past, s.causal), s.past, s.causal, s.bytes_per_element,
                    kv_shared=self.key_reuse, **kv_fields(s))


@register
class MFAKR(MFA):
    name = "mfa_kr"
    summary = "MFA with key reuse: one cached latent per token serves as K and V"
    key_reuse = True
