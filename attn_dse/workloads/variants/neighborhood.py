"""Generalized neighborhood attention (GNA, arXiv 2504.16922; NATTEN) over a 1-3 D token grid.

Per axis of length n: window w, stride s, dilation d, causal or not. Dilation splits the axis
into d interleaved sub-axes (positions i = r mod d) of m_r = ceil((n - r)/d) tokens, each an
independent neighborhood problem. Non-causal: the queries of a stride group g = j // s share one
window of w keys centred on the group, starting at clip(g*s + (s - w)//2, 0, m - w) (clamped at
the edges, so every query sees min(w, m) keys; s = w gives blocked attention). Causal (stride 1): the w keys ending
at the query. A query's key set is the product of its per-axis sets, so pairs and tile counts
are products over axes.

Tile-aware count: a query tile (a box of tq tokens per axis) computes every key tile (tk per
axis) its queries' windows touch. Stride s = w with tiles a multiple of w makes tiles dense (the
GNA paper's perfectly block-sparse case). Tiles: 1D 128 | 128, 2D 16x8 | 16x8, 3D 4x4x8 | 4x4x8
queries | keys ([U] NATTEN's fused kernels choose among several; these are one of its defaults).
"""
from __future__ import annotations

import numpy as np

from attn_dse.errors import AttnDseError
from attn_dse.workloads import pairs as P
from attn_dse.workloads.builders import qkv_out_projections, softmax_attention
from attn_dse.workloads.kernel_spec import KernelSpec, kv_fields
from attn_dse.workloads.registry import REQUIRED, Param, register
from attn_dse.workloads.variants.gqa import GQA, TP

TILES = {1: ((128,), (128,)), 2: ((16, 8), (16, 8)), 3: ((4, 4, 8), (4, 4, 8))}


def axis_values(text, name: str, dims: int | None = None) -> tuple[int, ...]:
    """'64x64' -> (64, 64); one value repeats over `dims` axes."""
    try:
        values = tuple(int(v) for v in str(text).lower().replace("*", "x").split("x"))
    except ValueError:
        raise AttnDseError(f"neighborhood: {name}={text!r} is not whole numbers joined by x",
                           fix=f"e.g. {name}=7x7") from None
    if dims is not None and len(values) == 1:
        values = values * dims
    if not 1 <= len(values) <= 3 or (dims is not None and len(values) != dims) or min(values) < 0:
        raise AttnDseError(f"neighborhood: {name}={text!r} needs one value per axis ({dims or '1-3'} axes)",
                           fix=f"e.g. {name}=" + "x".join(["7"] * (dims or 2)))
    return values


def _window(j, m, w, s, causal):
    """First and last key (sub-axis index) of query j's window."""
    if causal:
        return np.maximum(j - w + 1, 0), j
    start = np.clip((j // s) * s + (s - w) // 2, 0, max(m - w, 0))
    return start, start + min(w, m) - 1


def _sub_axes(n, d):
    return [int(np.ceil((n - r) / d)) for r in range(min(d, n))]


def axis_pairs(n, w, s, d, causal) -> float:
    """Attended (query, key) pairs along one axis."""
    total = 0.0
    for m in _sub_axes(n, d):
        total += float(P._sum_min(m, w)) if causal else m * min(w, m)
    return total


def axis_tile_pairs(n, w, s, d, causal, tq, tk) -> float:
    """Pairs a tiled kernel computes along one axis: each query tile of a sub-axis times the key
    tiles its windows touch (windows move monotonically, so the union is first start..last end)."""
    total = 0.0
    for m in _sub_axes(n, d):
        j0 = np.arange(0, m, tq)
        j1 = np.minimum(j0 + tq, m) - 1
        start, _ = _window(j0, m, w, s, causal)
        _, end = _window(j1, m, w, s, causal)
        keys = (end // tk - start // tk + 1) * tk
        total += float(np.sum((j1 - j0 + 1) * keys))
    return total


@register
class Neighborhood(GQA):
    name = "neighborhood"
    summary = "generalized neighborhood attention over a 1-3 D grid (window, stride, dilation, causal per axis)"
    params = GQA.params[:3] + (
        Param("grid", str, REQUIRED, "token grid, e.g. 4096 (1D), 64x64 (2D), 16x32x32 (3D); seq = its product"),
        Param("window", str, "7", "keys per axis, e.g. 7x7"),
        Param("stride", str, "1", "queries sharing one window per axis (= window: blocked attention)"),
        Param("dilation", str, "1", "dilation per axis"),
        Param("causal_axes", str, "0", "1 where an axis is causal (e.g. time in video: 1x0x0)"), TP)

    def resolve(self, p):
        p["skip_fraction"] = 0.0
        grid = axis_values(p["grid"], "grid")
        for key in ("window", "stride", "dilation", "causal_axes"):
            axis_values(p[key], key, len(grid))
        return super().resolve(p)

    def geometry(self, p):
        grid = axis_values(p["grid"], "grid")
        k = len(grid)
        axes = list(zip(grid, *(axis_values(p[key], key, k) for key in ("window", "stride", "dilation", "causal_axes"))))
        for n, w, s, d, c in axes:
            if min(n, w, s, d) < 1:
                raise AttnDseError("neighborhood: grid, window, stride and dilation must be >= 1", fix="e.g. window=7x7")
            if c and s != 1:
                raise AttnDseError("neighborhood: a causal axis takes stride 1", fix="set that axis' stride to 1")
        return axes

    def check_shape(self, p, s):
        axes = self.geometry(p)
        if s.phase == "decode":
            raise AttnDseError("neighborhood attention is modelled over a whole token grid (prefill/train)",
                               fix="use --phase prefill or train")
        tokens = float(np.prod([a[0] for a in axes]))
        if np.any(np.asarray(s.seq) != tokens):
            raise AttnDseError(f"neighborhood: seq must be the grid's {tokens:g} tokens ({p['grid']})",
                               fix=f"pass --seq {tokens:g}")
        return axes

    def pairs(self, p, s):
        return float(np.prod([axis_pairs(n, w, st, d, c) for n, w, st, d, c in self.check_shape(p, s)]))

    def tile_pairs(self, p, s):
        axes = self.check_shape(p, s)
        tq, tk = TILES[len(axes)]
        return float(np.prod([axis_tile_pairs(n, w, st, d, c, q, k)
                              for (n, w, st, d, c), q, k in zip(axes, tq, tk)]))

    def cache_read_tokens(self, p, s):
        return 0.0

    def layer_ops(self, p, s):
        h_q, h_kv = self.heads(p)
        d = p["head_dim"]
        core = softmax_attention(s, h_q=h_q, h_kv=h_kv, d_qk=d, d_v=d, pairs=self.pairs(p, s), cache_tokens=0.0)
        pre, post = qkv_out_projections(s, p["d_model"], h_q, h_kv, d, d)
        return pre + core + post

    def kernel_spec(self, p, s):
        h_q, h_kv = self.heads(p)
        d = p["head_dim"]
        return KernelSpec(s.batch, s.seq, s.past, h_q, h_kv, d, d, self.pairs(p, s), 0.0, s.causal,
                          s.bytes_per_element, tile_pairs=self.tile_pairs(p, s), **kv_fields(s))
