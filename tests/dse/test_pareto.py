import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from attn_dse.dse.pareto import pareto_mask


def brute(c):
    n = len(c)
    keep = np.ones(n, dtype=bool)
    for i in range(n):
        for j in range(n):
            if i != j and np.all(c[j] <= c[i]) and np.any(c[j] < c[i]):
                keep[i] = False
                break
    return keep


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 60), m=st.integers(2, 4), seed=st.integers(0, 10_000), ties=st.booleans())
def test_pareto_matches_brute_force(n, m, seed, ties):
    rng = np.random.default_rng(seed)
    c = rng.integers(0, 5, (n, m)).astype(float) if ties else rng.random((n, m))
    assert np.array_equal(pareto_mask(c), brute(c))


def test_duplicates_and_nan():
    c = np.array([[1.0, 2.0], [1.0, 2.0], [0.5, 3.0], [np.nan, 0.0], [2.0, 2.0]])
    mask = pareto_mask(c)
    # equal rows do not dominate each other; the NaN row is never on the front
    assert mask.tolist() == [True, True, True, False, False]
