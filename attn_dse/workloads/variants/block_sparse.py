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
                    "code pass by pass (fp32 gate through HBM, queries gathered per selected block, fp32 LSE merge)",
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
        require(p["execution"] != "gather" or s.phase != "decode",
                "block_sparse: execution=gather is MoBA's released prefill path; its decode step runs dense "
                "flash attention (moba/wrapper.py)", "use execution=fused for decode, or the gqa variant for dense")

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
        selection, and per query (own block) and selection an output row (the query dtype) with
        its fp32 log-sum-exp (flash_attn varlen forward returns both)."""
        h_q, _ = self.heads(p)
        d, B, b, sel = p["head_dim"], s.batch, s.bytes_per_element, self.selections(p, s)
        return B * h_q * (sel * d * b + (s.seq + sel) * (d * b + 4))

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
            gate, core = self._gather_execution(p, s, core)
        pre, post = qkv_out_projections(s, p["d_model"], h_q, h_kv, d, d)
        return pre + (gate if p["gate"] else []) + core + post

    def _gather_execution(self, p, s, core):
        """MoBA's released implementation (moba/wrapper.py, moba/moba_efficient.py), pass by pass,
        each a PyTorch kernel through HBM: the KV heads repeated to the query heads and stacked;
        the n = ceil(N/block) - 1 earlier blocks copied out and mean-pooled; the gate an fp32
        einsum of every query with every pooled block (fp32 matmul runs on the FP32 units, PyTorch's
        default without TF32), masked, top-(k-1) over blocks, turned into a boolean mask and its
        nonzero indices; the selected queries copied out; FlashAttention varlen over the own blocks
        and over the gathered (block, head) batches; the merge by log-sum-exp in fp32 (index_reduce,
        exp, index_add, log, rescaled outputs promoted to fp32, index_add into an fp32 output, cast)."""
        h_q, h_kv = self.heads(p)
        d, b, B, bs = p["head_dim"], s.bytes_per_element, s.batch, p["block_size"]
        S, N, k1 = s.seq, s.kv_len, p["top_k"] - 1
        n = np.maximum(np.ceil(N / bs) - 1, 0)  # blocks a query may select (the last is its own)
        nnz = h_q * self.selections(p, s)  # (query, head, earlier block) selections
        Q, HS, nHS, kv = S * h_q * d, h_q * S, n * h_q * S, 2 * n * bs * h_q * d * b

        def one(name, read, write, kernels=1, vector_flops=0.0, exps=0.0, grad=False):
            return Op(name, "elementwise", vector_flops=B * vector_flops, exps=B * exps, repeat=kernels, grad=grad,
                      reads=(Tensor(f"{name}_in", B * read),), writes=(Tensor(f"{name}_out", B * write),))
        repeat = np.where(np.asarray(h_kv) < np.asarray(h_q), 1.0, 0.0)
        move = one("kv_prepare", repeat * 2 * N * h_kv * d * b + 2 * N * h_q * d * b + 2 * kv,  # repeat, stack,
                   repeat * 2 * N * h_q * d * b + 2 * N * h_q * d * b + 2 * kv, kernels=3 + repeat)  # filter, regroup
        gate = [one("gate_pool", kv / 2, n * h_q * d * 4, vector_flops=n * bs * h_q * d),
                one("gate_cast", Q * (b + 4), Q * (4 + b), kernels=2),  # q.float() and back
                one("gate", Q * 4 + n * h_q * d * 4, nHS * 4, vector_flops=2 * nHS * d),
                one("gate_mask", 11 * n * S + 4 * nHS, 7 * n * S + 4 * nHS, kernels=5),  # positions, masks, fill
                one("top_k", nHS * 4, k1 * HS * 12, vector_flops=nHS),
                one("selection_mask", 9 * nHS + 8 * k1 * HS, 4 * nHS + k1 * HS + 16 * nnz,
                    kernels=7)]  # isinf, not, zeros, scatter, and, nonzero (two int64 indices), sum
        gather = one("gather_q", nnz * (d * b + 8) + 40 * nnz, nnz * d * b + 32 * nnz, kernels=5)  # index_select, indices
        # merge: 17 kernels over the LSEs (transposes, index_reduce, subtractions, exp, index_add, log,
        # index_select), then 6 over the outputs (zeros, rescale, +=, rescale, index_add, cast)
        merge = [one("merge_lse", 44 * HS + 84 * nnz, 32 * HS + 36 * nnz, kernels=17, exps=3 * HS + 2 * nnz, grad=True),
                 one("merge_out", Q * (b + 12) + 4 * HS + nnz * (d * b + 8 * d + 12), Q * (12 + b) + 8 * nnz * d,
                     kernels=6, grad=True)]
        q_rows = Tensor("q_gathered", B * nnz * d * b)
        outputs = Tensor("o_partials", B * h_q * (S + self.selections(p, s)) * (d * b + 4))
        core = [dataclasses.replace(op, reads=op.reads + (q_rows,)) if op.name == "qk" else
                dataclasses.replace(op, writes=(outputs,)) if op.name == "pv" else op for op in core]
        return gate, [move, gather] + core + merge

    def kernel_spec(self, p, s):
        h_q, h_kv = self.heads(p)
        return KernelSpec(s.batch, s.seq, s.past, h_q, h_kv, p["head_dim"], p["head_dim"],
                    self.pairs(p, s), self.cache_read_tokens(p, s), s.causal, s.bytes_per_element,
                    block=p["block_size"], **kv_fields(s),
                    extra_io_bytes=self.gather_io_bytes(p, s) if p["execution"] == "gather" else 0.0)
