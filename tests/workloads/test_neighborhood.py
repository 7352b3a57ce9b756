"""Neighborhood attention: FLOPs against a reference that builds each query's key set by brute
force over grid coordinates, and tile-aware counts against explicit tile unions."""
import itertools
import math

import numpy as np
import pytest

from attn_dse import attention
from attn_dse.errors import AttnDseError

torch = pytest.importorskip("torch")
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from . import references as R  # noqa: E402


def neighbors_1d(n, w, s, d, causal, i):
    """Key positions of query i on one axis, by search: same residue mod d; causal: the w
    nearest at or before it; else the w-long run inside the sub-axis whose centre is nearest the
    stride group's delegate (odd w: unique)."""
    sub = [j for j in range(n) if j % d == i % d]
    k = sub.index(i)
    m = len(sub)
    if causal:
        return [sub[t] for t in range(max(0, k - w + 1), k + 1)]
    if m <= w:
        return sub
    c = min((k // s) * s + (s - 1) // 2, m - 1)
    start = min(range(m - w + 1), key=lambda t: abs(t + (w - 1) / 2 - c))
    return sub[start:start + w]


def neighbors(grid, window, stride, dilation, causal, coord):
    per_axis = [neighbors_1d(n, w, s, d, c, i) for n, w, s, d, c, i in zip(grid, window, stride, dilation, causal, coord)]
    return list(itertools.product(*per_axis))


def flat(grid, coord):
    return int(np.ravel_multi_index(coord, grid))


CASES = [("10", "3", "1", "2", "0"), ("12", "5", "5", "1", "0"), ("4x5", "3x3", "1x1", "1x1", "0x0"),
         ("6x6", "3x3", "3x3", "1x2", "0x0"), ("3x4x4", "3x3x3", "1x1x1", "1x1x1", "1x0x0")]


@pytest.mark.parametrize("grid,window,stride,dilation,causal", CASES)
def test_neighborhood_flops_match_brute_force_reference(grid, window, stride, dilation, causal):
    g = tuple(int(v) for v in grid.split("x"))
    k = len(g)
    rep = lambda t: tuple(int(v) for v in t.split("x")) * (k if "x" not in t else 1)  # noqa: E731
    win, st, dil, cau = rep(window), rep(stride), rep(dilation), rep(causal)
    S = math.prod(g)
    coords = list(itertools.product(*(range(n) for n in g)))
    visible = {flat(g, c): [flat(g, x) for x in neighbors(g, win, st, dil, cau, c)] for c in coords}
    wl = attention("neighborhood", n_heads=4, n_kv_heads=2, head_dim=8, grid=grid, window=window, stride=stride,
                   dilation=dilation, causal_axes=causal)
    model = wl.cost(phase="prefill", batch=2, seq=S, causal=False, scope="layer", fused=False).flops
    L = R.Layer(2, S, 0, False, False)

    def ref():
        E = 32
        x = L.x(E)
        q = (x @ L.w(E, 32)).view(2, S, 4, 8)
        kk = (x @ L.w(E, 16)).view(2, S, 2, 8)
        v = (x @ L.w(E, 16)).view(2, S, 2, 8)
        o = R.attend(q, kk, v, lambda i: visible[i])
        return o.reshape(2, S, 32) @ L.w(32, E)
    with FlopCounterMode(display=False) as fc:
        ref()
    assert model == fc.get_total_flops()


def test_tile_pairs_match_explicit_tile_unions():
    grid, win = (32, 24), (5, 7)
    wl = attention("neighborhood", n_heads=1, n_kv_heads=1, head_dim=8, grid="32x24", window="5x7")
    s = wl.shape("prefill", 1, 32 * 24)
    tq, tk = (16, 8), (16, 8)  # the 2-D tiles the variant documents
    total = 0
    for q0 in itertools.product(*(range(0, n, t) for n, t in zip(grid, tq))):
        queries = list(itertools.product(*(range(a, min(a + t, n)) for a, t, n in zip(q0, tq, grid))))
        keys = set()
        for c in queries:
            keys.update(neighbors(grid, win, (1, 1), (1, 1), (0, 0), c))
        key_tiles = {tuple(x // t for x, t in zip(kc, tk)) for kc in keys}
        total += len(queries) * len(key_tiles) * math.prod(tk)
    assert wl.variant.tile_pairs(wl.params, s) == total


def test_blocked_stride_gives_dense_tiles():
    # stride = window, tiles a multiple of it: every computed pair is attended (GNA's block-sparse case)
    wl = attention("neighborhood", n_heads=8, n_kv_heads=8, grid="64x64", window="16x8", stride="16x8")
    s = wl.shape("prefill", 1, 4096)
    assert wl.variant.tile_pairs(wl.params, s) == wl.variant.pairs(wl.params, s) == 4096 * 128
    sliding = attention("neighborhood", n_heads=8, n_kv_heads=8, grid="64x64", window="15x7")
    assert sliding.variant.tile_pairs(sliding.params, s) > 1.5 * sliding.variant.pairs(sliding.params, s)


def test_neighborhood_rejects_decode_wrong_seq_and_causal_stride():
    wl = attention("neighborhood", n_heads=4, n_kv_heads=4, grid="8x8", window="3x3")
    with pytest.raises(AttnDseError, match="seq"):
        wl.cost("prefill", 1, 60)
    with pytest.raises(AttnDseError, match="prefill"):
        wl.cost("decode", 1, context=64)
    with pytest.raises(AttnDseError, match="causal"):
        attention("neighborhood", n_heads=4, n_kv_heads=4, grid="8x8", window="3x3", stride="2x1",
                  causal_axes="1x0").cost("prefill", 1, 64)
