"""Exact counts of attended (query, key) pairs per head and sequence, vectorized.

Query i (0-based among the `seq` new tokens) sits at position past + i. Causal: it sees keys
0..past+i. Non-causal: all past + seq keys.
"""
from __future__ import annotations

import numpy as np


def _sum_min(n, m):
    """sum_{j=1..n} min(j, m), for arrays n >= 0, m >= 0."""
    n, m = np.asarray(n, dtype=np.float64), np.asarray(m, dtype=np.float64)
    full = n * (n + 1) / 2
    capped = m * (m + 1) / 2 + (n - m) * m
    return np.where(n <= m, full, capped)


def dense(seq, past, causal: bool):
    """Pairs of full attention: seq*past + seq(seq+1)/2 causal, seq*(past+seq) otherwise."""
    if causal:
        return seq * past + seq * (seq + 1) / 2
    return seq * (past + seq)


def window(seq, past, w, causal: bool):
    """Sliding window of w keys ending at the query (causal), or |i-j| < w (non-causal)."""
    if causal:
        # query at position p = past+i sees min(p+1, w) keys
        return _sum_min(past + seq, w) - _sum_min(past, w)
    # query at p in [past, n) sees keys j with |p - j| <= w-1:
    # 1 + min(p, w-1) to its left + min(n-1-p, w-1) to its right
    n = past + seq
    left = _sum_min(n - 1, w - 1) - _sum_min(past - 1, w - 1)
    right = _sum_min(seq - 1, w - 1)
    return seq + left + right


def blocks_selected(seq, past, block, top_k, causal: bool):
    """MoBA-style selection: each query attends top_k blocks of `block` keys, its own
    (current, partial) block always among them; it never attends more keys than it sees.

    Causal: query at position p has nb = p//block + 1 visible blocks; it attends
    (min(top_k, nb) - 1) full blocks plus the p % block + 1 keys of its own block.
    """
    if not causal:
        return seq * np.minimum(top_k * block, past + seq)
    return _causal_block_pairs(past + seq, block, top_k) - _causal_block_pairs(past, block, top_k)


def _causal_block_pairs(n, block, k):
    """Pairs for all positions 0..n-1 (so the queries past..past+seq-1 are a difference)."""
    n, block, k = (np.asarray(x, dtype=np.float64) for x in (n, block, k))
    full_blocks = np.floor(n / block)  # blocks all of whose positions are < n
    rem = n - full_blocks * block  # positions in the last, partial block
    # own-block keys: each full block contributes block(block+1)/2; the partial rem(rem+1)/2
    own = full_blocks * block * (block + 1) / 2 + rem * (rem + 1) / 2
    # other blocks: a query in block j (0-based) attends min(k, j+1) - 1 full earlier blocks
    others_full = block * block * (_sum_min(full_blocks, k) - full_blocks)
    others_rem = rem * block * (np.minimum(k, full_blocks + 1) - 1)
    return own + others_full + others_rem


def visible_blocks(seq, past, block, causal: bool):
    """Sum over queries of the number of key blocks each can see (the gate's work)."""
    if not causal:
        return seq * np.ceil((past + seq) / block)
    def upto(n):
        n = np.asarray(n, dtype=np.float64)
        full = np.floor(n / block)
        rem = n - full * block
        # positions in block j see j+1 blocks: block * sum_{j=0}^{full-1}(j+1) + rem*(full+1)
        return block * full * (full + 1) / 2 + rem * (full + 1)
    return upto(past + seq) - upto(past)
