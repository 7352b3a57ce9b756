"""DSE throughput on one core, and a 10,000,000-point sweep in bounded memory.

    python benchmarks/bench_sweep.py [--big 10000000]

Targets (issue 5): >= 1,000,000 points/s for roofline-level evaluation, >= 100,000 points/s
with the dataflow mapping search, and a 10M-point grid whose peak memory stays bounded (rows
stream to a writer in chunks; only the Pareto front is kept).
"""
from __future__ import annotations

import argparse
import os
import resource
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from attn_dse import attention, load_hardware, predict  # noqa: E402
from attn_dse.dse.evaluate import evaluate  # noqa: E402
from attn_dse.dse.space import space_from_dict  # noqa: E402


def rate(points: int, dataflow: bool) -> float:
    rng = np.random.default_rng(2)
    hw = load_hardware("h100")
    wl = attention("gqa", n_heads=64, n_kv_heads=rng.choice([1, 2, 4, 8, 16, 64], points))
    batch, ctx = rng.integers(1, 257, points), rng.integers(128, 131073, points)
    times = []
    for _ in range(3):
        t = time.perf_counter()
        p = predict(hw, wl, "decode", batch, context=ctx, dataflow_model=dataflow)
        times.append(time.perf_counter() - t)
    assert np.all(np.isfinite(p.latency_s))
    return points / sorted(times)[1]


def big_sweep(points: int) -> tuple[float, float, int]:
    n_ctx = points // (8 * 64 * 4)
    space = space_from_dict({
        "variants": [{"variant": "gqa", "params": {"n_heads": 64, "n_kv_heads": [1, 2, 4, 8, 16, 32, 64, 64],
                                                   "n_layers": 80, "d_model": 8192}}],
        "workload": {"phase": "decode", "batch": list(range(1, 65)), "seq": [1, 2, 3, 4],
                     "context": list(range(1024, 1024 + 64 * n_ctx, 64))},
        "objectives": [{"minimize": "time_per_token_s"}, {"minimize": "kv_bytes_per_token"}]})
    seen = {"n": 0}

    def sink(cols):  # a writer would stream these to disk; count them
        seen["n"] += len(cols["latency_s"])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    res = evaluate(space, ("h100",), on_chunk=sink, keep_limit=0)
    elapsed = time.perf_counter() - t
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert seen["n"] == res.n_points and res.columns is None
    return elapsed, peak_mb, res.n_points, (peak_mb - before / 1024)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--big", type=int, default=10_000_000)
    ap.add_argument("--sweep-only", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.sweep_only:
        elapsed, peak, n, _ = big_sweep(args.sweep_only)
        print(f"{n} {elapsed} {peak}")
        return
    r = rate(1_000_000, dataflow=False)
    print(f"roofline-level evaluation: {r:,.0f} points/s (1,000,000 decode points, median of 3)")
    d = rate(200_000, dataflow=True)
    print(f"dataflow evaluation with mapping search: {d:,.0f} points/s (200,000 decode points, median of 3)")
    import subprocess
    import sys
    for size in (args.big // 10, args.big):  # each in a fresh process: peak RSS must not grow with size
        out = subprocess.run([sys.executable, __file__, "--sweep-only", str(size)], capture_output=True,
                             text=True, check=True).stdout.split()
        n, elapsed, peak = int(out[0]), float(out[1]), float(out[2])
        print(f"grid sweep: {n:,} points in {elapsed:.1f} s ({n / elapsed:,.0f} points/s incl. constraints, "
              f"memory model and Pareto front); peak RSS {peak:.0f} MB")


if __name__ == "__main__":
    main()
