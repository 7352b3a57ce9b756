"""100,000 `predict` design points, vectorized, mapping search included, one core.

    python benchmarks/bench_predict.py [--points N]

Target (issue 4): under 1 s for 100,000 points, for decode (split-KV search over splits,
key tiles, pipeline depth and row tiles) and for prefill (tile search). Median of 5 runs.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from attn_dse import attention, load_hardware, predict  # noqa: E402


def run(points: int, phase: str) -> float:
    rng = np.random.default_rng(1)
    hw = load_hardware("h100")
    wl = attention("gqa", n_heads=64, n_kv_heads=rng.choice([1, 2, 4, 8, 16, 64], points), head_dim=128)
    batch = rng.integers(1, 257, points)
    length = rng.integers(128, 131073, points)
    kw = dict(context=length) if phase == "decode" else dict(seq=length)
    start = time.perf_counter()
    p = predict(hw, wl, phase, batch, **kw)
    elapsed = time.perf_counter() - start
    assert p.latency_s.shape == (points,) and np.all(np.isfinite(p.latency_s))
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--points", type=int, default=100_000)
    args = ap.parse_args()
    for phase in ("decode", "prefill"):
        t = sorted(run(args.points, phase) for _ in range(5))[2]
        print(f"predict ({phase}): {args.points:,} points with mapping search in {t:.3f} s "
              f"= {args.points / t:,.0f} points/s (median of 5)")


if __name__ == "__main__":
    main()
