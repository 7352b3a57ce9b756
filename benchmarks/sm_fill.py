"""How much do the SMs a split grid leaves idle cost the MLA decode kernels that hold an SM
each (one program an SM)? Each kernel timed at batches whose grids fill all of the GPU's SMs
and at batches a few programs short, same context, same process:

- the bf16 seesaw kernel (gpu/mla_decode_seesaw.py), 128 heads (two 64-head blocks a sequence);
- the warp-specialized fp8 kernels ("ws", "wsr" in gpu/mla_decode_fp8.py), 16 heads (one block),
  before and after the seesaw.

    PYTHONPATH=. python3 benchmarks/sm_fill.py        (on a Hopper GPU)

Prints one line a shape: programs, waves (programs / SMs), time and throughput.
"""
import math

import torch

from attn_dse.gpu.flashmla_row import row_bytes
from attn_dse.gpu.harness import DEV, rnd, sm_count, timed
from attn_dse.gpu.mla_decode_fp8 import latent_cache, mla_decode_fp8
from attn_dse.gpu.mla_decode_seesaw import mla_decode_seesaw

L = 32768


def line(name, B, blocks, splits, t, work, unit):
    progs = B * blocks * splits
    print(f"{name:8s} B{B:4d} splits {splits:2d}: {progs:4d} programs ({progs / sm_count():.2f} waves) "
          f"{t * 1e6:8.1f} us {work / t / 1e12:6.2f} {unit}", flush=True)


def main() -> None:
    sms = sm_count()
    print(torch.cuda.get_device_name(), f"{sms} SMs", flush=True)
    fp8(sms)
    seesaw(sms)
    fp8(sms)  # again after the seesaw's compute-bound run: the same clocks?


def seesaw(sms: int) -> None:
    scale = 1 / math.sqrt(192)
    for B, splits in ((16, 4), (32, 2), (sms // 4, 2), (64, 1), (sms // 2, 1)):  # 128 heads: 2 blocks
        qn, qp, kv = rnd(B, 128, 512), rnd(B, 128, 64), rnd(B, L, 576)
        lens = torch.full((B,), L, device=DEV, dtype=torch.int32)
        t = timed(lambda: mla_decode_seesaw(qn, qp, kv, lens, splits, scale))[0]
        line("seesaw", B, 2, splits, t, 2 * B * 128 * L * 1088, "TFLOP/s")
        del kv


def fp8(sms: int) -> None:
    for B, splits in ((64, 2), (sms // 2, 2), (128, 1), (sms, 1)):  # 16 heads: 1 block
        qn, qp = rnd(B, 1, 16, 512).half(), rnd(B, 1, 16, 64)
        packed = latent_cache(B, L)
        lens = torch.full((B,), L, device=DEV, dtype=torch.int32)
        other = latent_cache(B, L)  # a second cache at another address: does the place matter?
        for cfg in (("ws", 16, 64, 2, 1), ("wsr", 16, 64, 2, 2)):
            for name, cache in (("", packed), (" (2nd cache)", other)):
                t = timed(lambda: mla_decode_fp8(qn, qp, cache, lens, cfg, n_splits=splits))[0]
                line(f"fp8 {cfg[0]}", B, 1, splits, t, B * L * row_bytes(), "TB/s" + name)
        del packed, other
        torch.cuda.empty_cache()

if __name__ == "__main__":
    main()
