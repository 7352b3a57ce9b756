"""The widening fp8-KV decode kernel (gpu/decode_fp8.py, its Triton kernel) at one cache, B16 x
32k, 8 KV heads, 3 splits, over query rows made of different groups and new tokens, and over its
key tile and pipeline depth: does its time follow the row tile it computes, or what the rows are?

    PYTHONPATH=. python3 benchmarks/widen_rows.py             (on a GPU; the bench's config only)
    PYTHONPATH=. python3 benchmarks/widen_rows.py --tiles     (every (key tile, stages) below)
"""
import sys

import torch

from attn_dse.gpu.decode_fp8 import decode_fp8, fp8_cache
from attn_dse.gpu.harness import DEV, rnd, timed

B, L, HKV, D = 16, 32768, 8, 128
CASES = [(8, 1), (16, 1), (8, 2), (4, 4), (32, 1), (16, 2), (8, 4), (4, 8), (64, 1), (8, 8)]  # (group, new tokens)
TILES = [(128, 4), (64, 4), (64, 3), (64, 2), (32, 4)]  # (key tile, stages); the bench's config first


def main(tiles=TILES[:1]) -> None:
    k8, ks, v8, vs = fp8_cache(B, L, HKV, D)
    lens = torch.full((B,), L, device=DEV, dtype=torch.int32)
    for g, s in CASES:
        q = rnd(B, s, HKV * g, D)
        times = [timed(lambda: decode_fp8(q, k8, v8, ks, vs, lens, n_splits=3, block_n=bn, num_warps=4,
                                          num_stages=st, keys_as_rows=False, kernel="triton"))[0] for bn, st in tiles]
        print(f"group {g:3d} tokens {s} rows {g * s:3d}: "
              + "  ".join(f"({bn},{st}) {t * 1e6:7.1f} us" for (bn, st), t in zip(tiles, times)), flush=True)


if __name__ == "__main__":
    main(TILES if "--tiles" in sys.argv else TILES[:1])
