"""DeepSeek Sparse Attention (DSA, DeepSeek-V3.2-Exp): a lightning indexer picks the top-k cached
tokens of each query, and MQA-mode (absorbed) MLA attends only those.

Indexer (`inference/model.py` of DeepSeek-V3.2-Exp: index_n_heads 64, index_head_dim 128,
index_topk 2048): per query, q_idx = W_q_idx(q_latent) is 64 heads x 128 and a gate w = W_w(x)
one weight per head; per cached token one 128-wide key k_idx = W_k(x), stored in fp8 with an
fp32 scale (132 B per token per layer). Score(t, s) = sum_h w[t,h] * relu(q_idx[t,h] . k_idx[s]),
2*64*128 fp8 matmul FLOPs per (query, visible token), then top-k. Main attention: absorbed MLA
over min(visible, top_k) tokens, FlashMLA's FP8 latent (656 B) by default (variants.md 2.2).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from attn_dse.workloads import pairs as P
from attn_dse.workloads.builders import linear
from attn_dse.workloads.ops import Op, Tensor
from attn_dse.workloads.registry import Param, register, require
from attn_dse.workloads.variants.gqa import TP
from attn_dse.workloads.variants.mla import MLA, MLA_PARAMS

INDEX_KEY_SCALE_BYTES = 4  # one fp32 scale per fp8 indexer key


@register
class DSA(MLA):
    name = "dsa"
    summary = "DeepSeek sparse attention: fp8 lightning indexer + absorbed MLA over the top-k tokens"
    params = tuple(Param("kv_layout", str, "flashmla_fp8", p.doc, choices=p.choices) if p.name == "kv_layout" else p
                   for p in MLA_PARAMS) + (
        Param("index_n_heads", int, 64, "indexer heads"),
        Param("index_head_dim", int, 128, "indexer head width"),
        Param("index_topk", int, 2048, "tokens each query attends"),
        Param("index_dtype", str, "fp8", "indexer matmul and key-cache dtype", choices=("fp8", "bf16")),
        TP)

    def resolve(self, p):
        p["scheme"], p["skip_fraction"] = "absorbed", 0.0
        return super().resolve(p)

    def check(self, p):
        super().check(p)
        require(np.asarray(p["q_lora_rank"]) > 0, "dsa: the indexer's queries come from the query latent",
                "keep q_lora_rank > 0 (1536 in DeepSeek-V3.2)")

    def pairs(self, p, s):
        """Each query attends min(visible, top_k) tokens: the count of a window of top_k keys."""
        return P.window(s.seq, s.past, p["index_topk"], True) if s.causal \
            else s.seq * np.minimum(p["index_topk"], s.kv_len)

    def cache_read_tokens(self, p, s):
        return np.minimum(s.past, p["index_topk"])

    def index_key_bytes(self, p):
        width = p["index_head_dim"]
        return width + INDEX_KEY_SCALE_BYTES if p["index_dtype"] == "fp8" else 2.0 * width

    def layer_ops(self, p, s):
        ops = super().layer_ops(p, s)
        B, E, b = s.batch, p["d_model"], s.bytes_per_element
        hi, di = p["index_n_heads"], p["index_head_dim"]
        visible = P.dense(s.seq, s.past, s.causal)  # the indexer scores every visible token
        key_bytes = self.index_key_bytes(p)
        # the main loss does not back-propagate through top-k (the indexer has its own objective)
        proj = [dataclasses.replace(op, grad=False) for op in (
            linear("index_q", s, p["q_lora_rank"], hi * di, "q_latent_in", "index_q"),
            linear("index_k", s, E, di, "x", "index_k_new", group="kv_proj"),
            linear("index_w", s, E, hi, "x", "index_weights"))]
        indexer = proj + [
            Op("index_scores", "matmul", flops=2 * B * hi * di * visible, vector_flops=3 * B * hi * visible,
               reads=(Tensor("index_q", s.tokens * hi * di * b), Tensor("index_weights", s.tokens * hi * b),
                      Tensor("index_k_new", s.tokens * di * b),
                      Tensor("index_k_cache", B * s.past * key_bytes, "kv_cache")),
               writes=(Tensor("index_logits", B * visible * 4, "scratch"),), dtype=p["index_dtype"], grad=False),
            Op("index_topk", "gather", vector_flops=B * visible, reads=(Tensor("index_logits", B * visible * 4, "scratch"),),
               writes=(Tensor("topk_indices", s.tokens * np.minimum(p["index_topk"], s.kv_len) * 4),), grad=False),
        ]
        # the core's score matmul reads the selected indices
        i = next(k for k, op in enumerate(ops) if op.name == "qk")
        ops[i] = dataclasses.replace(ops[i], reads=ops[i].reads + (indexer[-1].writes[0],))
        return ops[:i] + indexer + ops[i:]

    def kv_bytes_per_token(self, p, s):
        return super().kv_bytes_per_token(p, s) + self.index_key_bytes(p)

    def kernel_spec(self, p, s):
        # token-level gathers: the block-sparse family with blocks of one token
        return dataclasses.replace(super().kernel_spec(p, s), block=1.0)
