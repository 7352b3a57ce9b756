"""The widening fp8-KV decode kernel (gpu/decode_fp8.py, its Triton kernel) at one cache, B16 x
32k, 8 KV heads, 3 splits, its bench's tile config, over query rows made of different groups and
new tokens: does its time follow the row tile it computes, or what the rows are?

    PYTHONPATH=. python3 benchmarks/widen_rows.py        (on a GPU)
"""
import torch

from attn_dse.gpu.decode_fp8 import decode_fp8, fp8_cache
from attn_dse.gpu.harness import DEV, rnd, timed

B, L, HKV, D = 16, 32768, 8, 128
CASES = [(8, 1), (16, 1), (8, 2), (4, 4), (32, 1), (16, 2), (8, 4), (4, 8)]  # (group, new tokens)


def main() -> None:
    k8, ks, v8, vs = fp8_cache(B, L, HKV, D)
    lens = torch.full((B,), L, device=DEV, dtype=torch.int32)
    for rep in range(2):
        for g, s in CASES:
            q = rnd(B, s, HKV * g, D)
            t = timed(lambda: decode_fp8(q, k8, v8, ks, vs, lens, n_splits=3, block_n=128, num_warps=4,
                                         num_stages=4, keys_as_rows=False, kernel="triton"))[0]
            print(f"rep {rep} group {g:3d} tokens {s} rows {g * s:3d}: {t * 1e6:8.1f} us", flush=True)


if __name__ == "__main__":
    main()
