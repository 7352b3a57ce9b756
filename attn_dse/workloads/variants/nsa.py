"""Native Sparse Attention (NSA, arXiv 2502.11089 sections 3-5): three gated branches.

- compression: keys/values of blocks of cmp_block tokens with stride cmp_stride, compressed by a
  learned map (modelled as a linear map of cmp_block*d -> d per compressed token [U]); a query
  at position p sees floor((p+1 - l)/d) + 1 compressed tokens.
- selection: n_sel blocks of sel_block tokens (the initial and local blocks included), scored
  from the compression attention; a query attends min(p+1, n_sel*sel_block) keys.
- window: the last `window` keys, with its own K/V.
Causal only. Tokens read per decode step ~ s/d + n*l' + w. Cache: raw K/V (selection and
compression input), compressed K/V, and the window branch's own K/V ([U] exact layout).
"""
from __future__ import annotations

import numpy as np

from attn_dse.errors import AttnDseError
from attn_dse.workloads import pairs as P
from attn_dse.workloads.builders import linear, softmax_attention
from attn_dse.workloads.ops import Op, Tensor
from attn_dse.workloads.kernel_spec import KernelSpec, kv_fields
from attn_dse.workloads.registry import Param, register
from attn_dse.workloads.variants.gqa import GQA, TP


def compressed_tokens(n, l, d):
    """Compressed tokens covering the first n tokens: floor((n - l)/d) + 1 once n >= l."""
    n = np.asarray(n, dtype=np.float64)
    return np.where(n >= l, np.floor((n - l) / d) + 1, 0.0)


def compressed_pairs(seq, past, l, d):
    """Sum over queries at positions past..past+seq-1 of the compressed tokens each sees."""
    def upto(N):  # sum_{n=1..N} compressed_tokens(n)
        M = np.asarray(N, dtype=np.float64) - l
        q = np.floor(np.maximum(M, 0) / d)
        total = d * q * (q - 1) / 2 + q * (M - q * d + 1) + M + 1
        return np.where(M >= 0, total, 0.0)
    return upto(past + seq) - upto(past)


@register
class NSA(GQA):
    name = "nsa"
    summary = "native sparse attention: compression + selection + window branches"
    params = GQA.params[:3] + (  # n_heads, n_kv_heads, head_dim
              Param("cmp_block", int, 32, "compression block l"),
              Param("cmp_stride", int, 16, "compression stride d"),
              Param("sel_block", int, 64, "selection block l'"),
              Param("n_sel", int, 16, "selected blocks n"),
              Param("window", int, 512, "sliding window w"), TP)

    def resolve(self, p):
        p["skip_fraction"] = 0.0
        return super().resolve(p)

    def branches(self, p, s):
        """(name, pairs, cached tokens read) per branch."""
        l, d, w = p["cmp_block"], p["cmp_stride"], p["window"]
        sel = p["n_sel"] * p["sel_block"]
        return (("cmp", compressed_pairs(s.seq, s.past, l, d), compressed_tokens(s.past, l, d)),
                ("sel", P.window(s.seq, s.past, sel, True), np.minimum(s.past, sel)),
                ("win", P.window(s.seq, s.past, w, True), np.minimum(s.past, w - 1)))

    def pairs(self, p, s):
        return sum(b[1] for b in self.branches(p, s))

    def cache_read_tokens(self, p, s):
        return sum(b[2] for b in self.branches(p, s))

    def layer_ops(self, p, s):
        if not s.causal:
            raise AttnDseError("nsa is defined for causal attention only", fix="drop --no-causal")
        h_q, h_kv = self.heads(p)
        d, E, b, B = p["head_dim"], p["d_model"], s.bytes_per_element, s.batch
        l, stride = p["cmp_block"], p["cmp_stride"]
        new_cmp = compressed_tokens(s.kv_len, l, stride) - compressed_tokens(s.past, l, stride)
        ops = [linear("q_proj", s, E, h_q * d, "x", "q"),
               linear("k_proj", s, E, h_kv * d, "x", "k_new", group="kv_proj"),
               linear("v_proj", s, E, h_kv * d, "x", "v_new", group="kv_proj"),
               linear("win_k_proj", s, E, h_kv * d, "x", "win_k_new", group="kv_proj"),
               linear("win_v_proj", s, E, h_kv * d, "x", "win_v_new", group="kv_proj"),
               linear("gate_proj", s, E, 3 * h_q, "x", "branch_gates")]
        for kv in ("k", "v"):  # compress raw keys/values block by block
            ops.append(linear(f"compress_{kv}", s, l * d, d, f"{kv}_new", f"cmp_{kv}_new",
                              tokens=B * h_kv * new_cmp, group="core", x_bytes=s.tokens * h_kv * d * b))
        for name, pairs, cached in self.branches(p, s):
            kv = "" if name == "sel" else f"{name}_"
            ops += softmax_attention(s, h_q=h_q, h_kv=h_kv, d_qk=d, d_v=d, pairs=pairs, cache_tokens=cached,
                                     prefix=f"{name}_", o=f"o_{name}", kv=kv,
                                     new_tokens=new_cmp if name == "cmp" else None)
        cmp_pairs = self.branches(p, s)[0][1]
        ops.append(Op("select_blocks", "gather", vector_flops=B * h_q * cmp_pairs,
                      reads=(Tensor("cmp_probs", B * h_q * cmp_pairs * b, "scratch"),), grad=False))
        ops.append(Op("combine", "elementwise", vector_flops=6 * B * s.seq * h_q * d,
                      reads=tuple(Tensor(f"o_{n}", B * s.seq * h_q * d * b) for n in ("cmp", "sel", "win"))
                      + (Tensor("branch_gates", s.tokens * 3 * h_q * b),),
                      writes=(Tensor("o", B * s.seq * h_q * d * b),)))
        ops.append(linear("o_proj", s, h_q * d, E, "o", "y"))
        return ops

    def kv_bytes_per_token(self, p, s):
        ctx = np.maximum(s.context, 1)
        per = 2 * self.heads(p)[1] * p["head_dim"] * s.kv_bytes_per_element
        return per * (1 + 1 / p["cmp_stride"] + np.minimum(ctx, p["window"]) / ctx)

    def kernel_spec(self, p, s):
        """Three kernels, as NSA runs them (section 5): the compression and window branches are
        FlashAttention-style (dense over the compressed tokens; a sliding window), the selection
        branch a block-sparse kernel over the chosen blocks."""
        h_q, h_kv = self.heads(p)
        d = p["head_dim"]
        (_, cmp_pairs, cmp_read), (_, sel_pairs, sel_read), (_, win_pairs, win_read) = self.branches(p, s)
        one = dict(bytes_per_element=s.bytes_per_element, **kv_fields(s))
        return (KernelSpec(s.batch, s.seq, s.past, h_q, h_kv, d, d, cmp_pairs, cmp_read, True, **one),
                KernelSpec(s.batch, s.seq, s.past, h_q, h_kv, d, d, sel_pairs, sel_read, True, block=p["sel_block"], **one),
                KernelSpec(s.batch, s.seq, s.past, h_q, h_kv, d, d, win_pairs, win_read, True, window=p["window"], **one))
