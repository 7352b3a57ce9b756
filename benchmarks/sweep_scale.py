"""Throughput of the dataflow (mapping search) model: scalar predict and vector decode at 1e4-1e6 points, one core.
Run: python3 benchmarks/sweep_scale.py"""
import time

import numpy as np

from attn_dse import attention, load_hardware, predict

hw = load_hardware("h100")
wl = attention("gqa", n_heads=32, n_kv_heads=8, head_dim=128)
predict(hw, wl, phase="decode", batch=16, seq=1, context=8192)
t = time.perf_counter()
for _ in range(200):
    predict(hw, wl, phase="decode", batch=16, seq=1, context=8192)
print(f"scalar predict: {(time.perf_counter() - t) / 200 * 1e3:.2f} ms")
for n in (10**4, 10**5, 10**6):
    b, c = np.full(n, 16), np.random.default_rng(0).integers(1024, 131072, n)
    t = time.perf_counter()
    predict(hw, wl, phase="decode", batch=b, seq=1, context=c)
    print(f"decode, {n:>9,} points: {n / (time.perf_counter() - t):,.0f} points/s")
