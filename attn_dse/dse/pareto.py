"""Pareto fronts of minimization objectives, vectorized."""
from __future__ import annotations

import numpy as np


def pareto_mask(costs: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated rows of an (n, m) array, every column minimized.

    A row is dominated if another is <= in every column and < in one. Two objectives: sort by
    the first and keep strict running minima of the second, O(n log n). More: cull with
    vectorized dominance checks, O(n * front size).
    """
    costs = np.asarray(costs, dtype=np.float64)
    n = len(costs)
    if n == 0:
        return np.zeros(0, dtype=bool)
    finite = np.all(np.isfinite(costs), axis=1)
    mask = np.zeros(n, dtype=bool)
    idx = np.flatnonzero(finite)
    if len(idx) == 0:
        return mask
    # identical rows share a fate (neither dominates the other): decide on unique rows
    unique, inverse = np.unique(costs[idx], axis=0, return_inverse=True)
    on_front = _front_2d(unique) if costs.shape[1] == 2 else _front_cull(unique)
    mask[idx] = on_front[inverse.ravel()]
    return mask


def _front_cull(c: np.ndarray) -> np.ndarray:
    order = np.lexsort(c.T[::-1])  # lexicographic: a dominator comes before what it dominates
    front: list[int] = []
    for i in order:
        if front:
            f = c[front]
            if np.any(np.all(f <= c[i], axis=1) & np.any(f < c[i], axis=1)):
                continue
        front.append(i)
    out = np.zeros(len(c), dtype=bool)
    out[front] = True
    return out


def _front_2d(c: np.ndarray) -> np.ndarray:
    order = np.lexsort((c[:, 1], c[:, 0]))  # by first, ties by second
    second = c[order, 1]
    best_before = np.concatenate([[np.inf], np.minimum.accumulate(second)[:-1]])
    keep = second < best_before
    out = np.zeros(len(c), dtype=bool)
    out[order[keep]] = True
    return out
