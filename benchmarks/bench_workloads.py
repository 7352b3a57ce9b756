"""FLOPs + minimum bytes + KV cache for 1,000,000 GQA design points, vectorized, one core.

    python benchmarks/bench_workloads.py [--points N]

Target (issue 3): under 1 s for 1,000,000 points. Prints the median of 5 runs.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from attn_dse import attention  # noqa: E402


def run(points: int) -> float:
    rng = np.random.default_rng(0)
    n_kv = rng.choice([1, 2, 4, 8, 16, 32, 64], points)
    head_dim = rng.choice([64, 128, 256], points)
    batch = rng.integers(1, 257, points)
    context = rng.integers(1, 131073, points)
    start = time.perf_counter()
    wl = attention("gqa", n_heads=64, n_kv_heads=n_kv, head_dim=head_dim)
    cost = wl.cost("decode", batch, context=context, scope="layer")
    elapsed = time.perf_counter() - start
    assert cost.flops.shape == (points,) and np.all(cost.hbm_bytes > 0) and np.all(cost.kv_cache_bytes > 0)
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--points", type=int, default=1_000_000)
    args = ap.parse_args()
    times = sorted(run(args.points) for _ in range(5))
    t = times[2]
    print(f"workloads: {args.points:,} GQA points (FLOPs, bytes, KV, layer scope) in {t:.3f} s "
          f"= {args.points / t / 1e6:.2f} M points/s (median of 5)")


if __name__ == "__main__":
    main()
