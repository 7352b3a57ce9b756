"""Linear attention in chunked form (Lightning Attention-2 / GLA style), no softmax.

Per head, a chunk of c tokens costs 2c^2(d_k + d_v) for the masked intra-chunk QK^T and PV,
plus 4c*d_k*d_v for the inter-chunk readout Q.S and the state update K^T.V (variants.md 2.5,
counting the full c x c blocks the kernel computes). Prefill is linear in S. Decode updates and
reads a d_k x d_v fp32 state per head: 4*d_k*d_v FLOPs against 8*d_k*d_v bytes, AI = 0.5
whatever the context. The cache is the state, not K/V.
"""
from __future__ import annotations

import numpy as np

from attn_dse.workloads.builders import linear
from attn_dse.workloads.ops import Op, Tensor
from attn_dse.workloads.registry import REQUIRED, Param, Variant, register

STATE_BYTES = 4  # fp32 recurrent state


@register
class LinearAttention(Variant):
    name = "linear"
    summary = "chunked linear attention with a recurrent d_k x d_v state per head"
    params = (Param("n_heads", int, REQUIRED, "heads"),
              Param("head_dim", int, 128, "key width d_k"),
              Param("head_dim_v", int, None, "value width d_v (default head_dim)"),
              Param("chunk", int, 64, "chunk length c"))

    def resolve(self, p):
        if p["head_dim_v"] is None:
            p["head_dim_v"] = p["head_dim"]
        if p["d_model"] is None:
            p["d_model"] = p["n_heads"] * p["head_dim"]
        return p

    def layer_ops(self, p, s):
        h, dk, dv, E, b, B = p["n_heads"], p["head_dim"], p["head_dim_v"], p["d_model"], s.bytes_per_element, s.batch
        S = s.seq
        state = Tensor("state", B * h * dk * dv * STATE_BYTES, "kv_cache")
        q, k, v = (Tensor(n, B * S * h * w * b) for n, w in (("q", dk), ("k_new", dk), ("v_new", dv)))
        o = Tensor("o", B * S * h * dv * b)
        if s.phase == "decode" or not s.causal:
            # recurrent (decode) or global (non-causal) form: no intra-chunk work
            core = [Op("state_update", "matmul", flops=2 * B * h * S * dk * dv, reads=(k, v, state),
                       writes=(Tensor("state_new", state.bytes, "kv_cache"),)),
                    # reads the updated state on chip, in the same kernel
                    Op("readout", "matmul", flops=2 * B * h * S * dk * dv, reads=(q,), writes=(o,))]
        else:
            c = p["chunk"]
            sq_sum = np.floor(S / c) * c * c + np.mod(S, c) ** 2  # sum of chunk lengths squared
            scores = Tensor("scores", B * h * sq_sum * 4, "scratch")
            core = [Op("intra_qk", "matmul", flops=2 * B * h * sq_sum * dk, reads=(q, k), writes=(scores,)),
                    Op("intra_pv", "matmul", flops=2 * B * h * sq_sum * dv, reads=(scores, v),
                       writes=(Tensor("o_intra", o.bytes, "scratch"),)),
                    Op("inter_readout", "matmul", flops=2 * B * h * S * dk * dv, reads=(q,),
                       writes=(Tensor("o_inter", o.bytes, "scratch"),)),
                    Op("state_update", "matmul", flops=2 * B * h * S * dk * dv, reads=(k, v),
                       writes=(Tensor("state_new", state.bytes, "kv_cache"),)),
                    Op("combine", "elementwise", vector_flops=B * S * h * dv,
                       reads=(Tensor("o_intra", o.bytes, "scratch"), Tensor("o_inter", o.bytes, "scratch")),
                       writes=(o,))]
        pre = [linear("q_proj", s, E, h * dk, "x", "q"),
               linear("k_proj", s, E, h * dk, "x", "k_new", group="kv_proj"),
               linear("v_proj", s, E, h * dv, "x", "v_new", group="kv_proj")]
        return pre + core + [linear("o_proj", s, h * dv, E, "o", "y")]

    def kv_bytes_per_token(self, p, s):
        return p["n_heads"] * p["head_dim"] * p["head_dim_v"] * STATE_BYTES

    def kv_cache_tokens(self, p, s):
        return 1.0  # the state does not grow with the context

