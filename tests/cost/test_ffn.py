"""The MoE routing arithmetic of `cost/ffn.py` against independent counts: every routing of a few
tokens enumerated, top-k routing simulated with numpy's generator, and a decode step's bytes
counted by hand."""
import itertools
import math

import numpy as np
import pytest

from attn_dse.cost.ffn import GemmCosts, expected_tiles, experts_hit, grouped_ffn, grouped_gemm, rows_above
from attn_dse.cost.roofline import ceilings
from attn_dse.hardware.loader import load_hardware


def enumerate_routings(tokens, n_experts, top_k, tile):
    """Mean over every equally likely routing (each token: a set of top_k distinct experts) of
    the experts that get a token and of the tiles their rows pad to."""
    choices = list(itertools.combinations(range(n_experts), top_k))
    hit = tiles = 0
    for routing in itertools.product(choices, repeat=tokens):
        rows = np.bincount([e for pick in routing for e in pick], minlength=n_experts)
        hit += np.count_nonzero(rows)
        tiles += sum(math.ceil(r / tile) for r in rows)
    n = len(choices) ** tokens
    return hit / n, tiles / n


@pytest.mark.parametrize("tokens, n_experts, top_k, tile", [(1, 4, 2, 2), (3, 4, 2, 2), (5, 3, 1, 2), (4, 5, 2, 3),
                                                            (6, 4, 1, 4), (2, 6, 3, 1)])
def test_experts_hit_and_tiles_match_every_routing_enumerated(tokens, n_experts, top_k, tile):
    hit, tiles = enumerate_routings(tokens, n_experts, top_k, tile)
    p = top_k / n_experts
    assert n_experts * float(experts_hit(tokens, p)) == pytest.approx(hit, rel=1e-12)
    assert n_experts * float(expected_tiles(tokens, p, tile)) == pytest.approx(tiles, rel=1e-12)


def test_by_hand_one_token_two_of_four_experts():
    # one token picks 2 of 4 experts: exactly 2 are hit, each with one row -> one tile each
    assert 4 * float(experts_hit(1, 0.5)) == pytest.approx(2.0)
    assert 4 * float(expected_tiles(1, 0.5, 64)) == pytest.approx(2.0)
    # 2 tokens, 1 of 4 experts each: 4 of the 16 routings share an expert -> 1.75 experts hit
    assert 4 * float(experts_hit(2, 0.25)) == pytest.approx((4 * 1 + 12 * 2) / 16)


def simulate(tokens, n_experts, top_k, tile, trials, seed=0):
    """Top-k routing drawn as each token's k smallest of n_experts uniform scores."""
    rng = np.random.default_rng(seed)
    hit, tiles = [], []
    for _ in range(trials):
        picks = np.argpartition(rng.random((tokens, n_experts)), top_k - 1, axis=1)[:, :top_k]
        rows = np.bincount(picks.ravel(), minlength=n_experts)
        hit.append(np.count_nonzero(rows))
        tiles.append(np.ceil(rows / tile).sum())
    return np.array(hit, float), np.array(tiles, float)


@pytest.mark.parametrize("tokens, n_experts, top_k, tile", [
    (16, 256, 8, 64),     # decode batch: ~102 of 256 experts, one tile each
    (2048, 64, 4, 64),    # mean 128 rows, spread under a tile: the summed window
    (4096, 32, 8, 128),   # mean 1024 rows
    (20000, 8, 2, 16),    # spread of 61 rows over tiles of 16: the asymptotic branch
])
def test_experts_hit_and_tiles_match_a_simulated_top_k_routing(tokens, n_experts, top_k, tile):
    hit, tiles = simulate(tokens, n_experts, top_k, tile, trials=300)
    p = top_k / n_experts
    for sim, model in ((hit, n_experts * float(experts_hit(tokens, p))),
                       (tiles, n_experts * float(expected_tiles(tokens, p, tile)))):
        se = sim.std(ddof=1) / np.sqrt(len(sim))  # 0 where every trial hits every expert
        assert abs(sim.mean() - model) <= 4 * se + 1e-9 * model, (sim.mean(), model)


def test_tiles_broadcast_and_are_whole_rows_over_tile_at_certainty():
    # p = 1: every token goes to the expert, so the tiles are exactly ceil(n / m)
    n = np.array([1, 64, 65, 300, 4096])
    assert expected_tiles(n, 1.0, 64).tolist() == pytest.approx([1, 1, 2, 5, 64])
    assert expected_tiles(0.0, 0.3, 64) == 0.0 and experts_hit(0.0, 0.3) == 0.0


def test_a_decode_step_of_experts_reads_the_routed_experts_weights_once_by_hand():
    """DeepSeek-V3's experts (d 7168, width 2048), one token routed to 8 of 256, bf16."""
    hw = load_hardware("h200")
    c = ceilings(hw, "bf16")
    g = GemmCosts(0.9, 0.9, 4e-6, 8, GemmCosts(0.75, 0.7, 1.5e-5, 8))
    d, w, k, n_exp = 7168, 2048, 8, 256
    out = grouped_ffn(c, g, 1.0, k / n_exp, n_exp, d, w, 3, 2, 2)
    weights = k * 3 * d * w * 2  # 8 experts x (gate, up, down) x bf16
    activations = k * (d + 2 * w) * 2 + k * 3 * w * 2 + k * (w + d) * 2  # up GEMM, silu(g)*u, down GEMM
    assert float(out.weight_bytes) == pytest.approx(weights, rel=1e-12)
    assert float(out.hbm_bytes) == pytest.approx(weights + activations, rel=1e-12)
    assert float(out.flops) == pytest.approx(2 * k * 3 * d * w, rel=1e-12)
    # each expert's one row runs a 64-row tile (mean rows 8/256 <= 128: torch's small tiles)
    assert float(out.executed_flops) == pytest.approx(64 * 2 * k * 3 * d * w, rel=1e-12)
    # weight-bandwidth bound: the grouped GEMMs' bytes at the grouped HBM share, plus their fixed costs
    up_down = weights + k * (d + 2 * w) * 2 + k * (w + d) * 2
    act = k * 3 * w * 2 / (c.hbm_bytes_per_s * 0.9) + 4e-6
    assert float(out.time_s) == pytest.approx(up_down / (c.hbm_bytes_per_s * 0.7) + 2 * 1.5e-5 + act, rel=1e-9)


def test_mean_rows_above_a_tile_switch_to_128_row_tiles():
    hw = load_hardware("h200")
    c = ceilings(hw, "bf16")
    g = GemmCosts(0.9, 0.9, 4e-6, 8)
    # p = 1: each of 2 experts gets every token; 100 rows -> two 64-row tiles, 300 -> three of 128
    small = grouped_gemm(c, g, 100.0, 1.0, 2, 1024, 1024)
    large = grouped_gemm(c, g, 300.0, 1.0, 2, 1024, 1024)
    assert float(small.executed_flops) == pytest.approx(2 * 2 * 128 * 1024 * 1024)
    assert float(large.executed_flops) == pytest.approx(2 * 2 * 384 * 1024 * 1024)
    assert float(large.flops) == pytest.approx(2 * 2 * 300 * 1024 * 1024)


@pytest.mark.parametrize("n, p, m", [(4000, 0.5, 45), (4000, 0.5, 46), (30000, 8 / 256, 64), (8192, 1 / 32, 64),
                                     (700, 0.9, 8), (1e5, 0.001, 128)])
def test_tiles_match_the_whole_tail_sum_on_either_side_of_the_shortcut(n, p, m):
    """The sum over every j of P(X > j m) (no window, no shortcut) against expected_tiles, where
    the spread is just under and over 0.7 m and far from it."""
    j = np.arange(0, int(n // m) + 2)
    full = float(rows_above(j * m, n, p).sum())
    assert float(expected_tiles(n, p, m)) == pytest.approx(full, abs=1e-4)
    # and the same values inside an array of repeated points
    arr = expected_tiles(np.array([n, 1.0, n]), p, m)
    assert arr[0] == arr[2] == pytest.approx(full, abs=1e-4) and arr[1] == pytest.approx(1 - (1 - p) ** 1)
