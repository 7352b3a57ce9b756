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
              Param("execution", str, "fused", "fused: one kernel reads the selection; gather: MoBA's released "
                    "code (gate scores through HBM, queries gathered per selected block, fp32 partials merged)",
                    choices=("fused", "gather")),
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

    def selections(self, p, s):
        """(query, earlier block) selections over all queries of a sequence: the attended pairs
        outside each query's own block, whole blocks each."""
        own = P.blocks_selected(s.seq, s.past, p["block_size"], 1, s.causal)
        return (self.pairs(p, s) - own) / p["block_size"]

    def gather_io_bytes(self, p, s):
        """What the gather execution's attention kernels stream beyond Q/K/V/O: a query copy per
        selection, and fp32 partial outputs with their LSE, one per query (own block) and selection."""
        h_q, _ = self.heads(p)
        d, B, sel = p["head_dim"], s.batch, self.selections(p, s)
        return B * h_q * (sel * d * s.bytes_per_element + (s.seq + sel) * (d + 1) * 4)

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
        if p["execution"] == "gather":
            gate, core = self._gather_execution(p, s, gate, core)
        pre, post = qkv_out_projections(s, p["d_model"], h_q, h_kv, d, d)
        return pre + (gate if p["gate"] else []) + core + post

    def _gather_execution(self, p, s, gate, core):
        """MoBA's released implementation (moba_efficient.py): the gate scores are a tensor in HBM
        for top-k; queries are copied per selected block into varlen batches; FlashAttention runs on
        the own blocks and the gathered batches, each writing fp32 outputs and LSEs that a last
        kernel merges."""
        h_q, _ = self.heads(p)
        d, b, B, sel = p["head_dim"], s.bytes_per_element, s.batch, self.selections(p, s)
        gate = [dataclasses.replace(op, writes=tuple(dataclasses.replace(t, kind="activation") for t in op.writes),
                                    reads=tuple(dataclasses.replace(t, kind="activation") if t.name == "gate_scores"
                                                else t for t in op.reads)) for op in gate]
        q = Tensor("q", B * s.seq * h_q * d * b)
        q_rows = Tensor("q_gathered", B * h_q * sel * d * b)
        partials = Tensor("o_partials", B * h_q * (s.seq + sel) * (d + 1) * 4)
        out = Tensor("o", B * s.seq * h_q * d * b)
        core = [dataclasses.replace(op, reads=op.reads + (q_rows,)) if op.name == "qk" else
                dataclasses.replace(op, writes=(partials,)) if op.name == "pv" else op for op in core]
        glue = [Op("gather_q", "gather", reads=(q,), writes=(q_rows,), grad=False),
                Op("merge_partials", "elementwise", vector_flops=3 * B * h_q * (s.seq + sel) * d,
                   reads=(partials,), writes=(out,))]
        return gate, glue[:1] + core + glue[1:]

    def kernel_spec(self, p, s):
        h_q, h_kv = self.heads(p)
        return KernelSpec(s.batch, s.seq, s.past, h_q, h_kv, p["head_dim"], p["head_dim"],
                    self.pairs(p, s), self.cache_read_tokens(p, s), s.causal, s.bytes_per_element,
                    block=p["block_size"], **kv_fields(s),
                    extra_io_bytes=self.gather_io_bytes(p, s) if p["execution"] == "gather" else 0.0)
