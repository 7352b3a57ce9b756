"""Block-sparse top-k attention, MoBA style (arXiv 2502.13189).

Keys are cut into blocks of `block_size`; a gate scores each visible block by q . mean(keys of
the block) and each query attends its top_k blocks, its own (current, causally partial) block
always among them. Gate: 2*h*d per visible block per query; decode reads top_k*block tokens
plus the block centroids (sparsity 1 - k*B/S).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from attn_dse.workloads import pairs as P
from attn_dse.workloads.builders import qkv_out_projections, softmax_attention
from attn_dse.workloads.ops import Op, Tensor
from attn_dse.workloads.kernel_spec import KernelSpec, kv_fields
from attn_dse.workloads.registry import Param, register, require
from attn_dse.workloads.variants.gqa import GQA, TP


@register
class BlockSparse(GQA):
    name = "block_sparse"
    summary = "MoBA-style top-k block selection with a mean-pooled gate"
    params = GQA.params[:3] + (  # n_heads, n_kv_heads, head_dim
              Param("block_size", int, 512, "keys per block"),
              Param("top_k", int, 3, "blocks each query attends (its own included)"),
              Param("gate", bool, True, "include the gate kernels (pooling, scoring, top-k); false: attention only"),
              TP)

    def resolve(self, p):
        p["skip_fraction"] = 0.0
        return super().resolve(p)

    def blocks(self, p, s):
        return np.ceil(s.kv_len / p["block_size"])

    def check_shape(self, p, s):
        n = self.blocks(p, s)
        require(p["top_k"] <= n,
                f"block_sparse: top_k={np.max(p['top_k']):g} exceeds the {np.min(n):g} blocks of a "
                f"{np.min(s.kv_len):g}-token context at block_size={np.max(p['block_size']):g}",
                "lower top_k or block_size, or raise the context")

    def pairs(self, p, s):
        return P.blocks_selected(s.seq, s.past, p["block_size"], p["top_k"], s.causal)

    def cache_read_tokens(self, p, s):
        return np.minimum(p["top_k"] * p["block_size"], s.past)

    def layer_ops(self, p, s):
        self.check_shape(p, s)
        h_q, h_kv = self.heads(p)
        d, b, B = p["head_dim"], s.bytes_per_element, s.batch
        visible = P.visible_blocks(s.seq, s.past, p["block_size"], s.causal)
        centroids = Tensor("centroid_cache", B * h_kv * np.floor(s.past / p["block_size"]) * d * s.kv_bytes_per_element,
                           "kv_cache")
        new_centroids = Tensor("centroids_new", B * h_kv * np.ceil(s.seq / p["block_size"]) * d * b)
        gate_scores = Tensor("gate_scores", B * h_q * visible * 4, "scratch")
        selection = Tensor("selected_blocks", B * h_q * s.seq * p["top_k"] * 4)
        gate = [
            Op("block_pool", "elementwise", vector_flops=B * h_kv * s.seq * d,
               reads=(Tensor("k_new", B * s.seq * h_kv * d * b),), writes=(new_centroids,), grad=False),
            Op("gate", "matmul", flops=2 * B * h_q * d * visible, reads=(Tensor("q", B * s.seq * h_q * d * b),
               centroids, new_centroids), writes=(gate_scores,), grad=False),
            Op("top_k", "gather", vector_flops=B * h_q * visible, reads=(gate_scores,), writes=(selection,),
               grad=False),
        ]
        core = softmax_attention(s, h_q=h_q, h_kv=h_kv, d_qk=d, d_v=d, pairs=self.pairs(p, s),
                                 cache_tokens=self.cache_read_tokens(p, s))
        core[0] = dataclasses.replace(core[0], reads=core[0].reads + (selection,))  # QK^T reads the selection
        pre, post = qkv_out_projections(s, p["d_model"], h_q, h_kv, d, d)
        return pre + (gate if p["gate"] else []) + core + post

    def kernel_spec(self, p, s):
        h_q, h_kv = self.heads(p)
        return KernelSpec(s.batch, s.seq, s.past, h_q, h_kv, p["head_dim"], p["head_dim"],
                    self.pairs(p, s), self.cache_read_tokens(p, s), s.causal, s.bytes_per_element,
                    block=p["block_size"], **kv_fields(s))
