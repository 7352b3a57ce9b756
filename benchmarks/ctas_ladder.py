"""How a decode kernel's time grows with its programs, at fixed work per program: does an SM run
one program as fast as two, and does a last, short wave cost its share or a whole program's time?

Each kernel (our bf16 decode at 3 and 4 pipeline stages, the widening fp8 kernel, the register fp8 kernel) runs one program
a (sequence, KV head), no split-KV, 8192 keys each, GQA 32/4, at programs per SM from 1/2 to 4
(the register kernel, which holds 8 at once, to 16). Under a model where a core's rates are
shared by its programs and the GPU's bandwidth by all, time at p programs per SM is flat up to
the point one core or HBM is the limit; what it is beyond that, and just past each whole
number of programs per SM, is what this measures.

    PYTHONPATH=. python3 benchmarks/ctas_ladder.py --out DIR      (on a GPU)

Writes DIR/ctas-ladder-measurements.csv in the validation's row format (family "decode"; the
fp8 rows name their kernel first in `config`, as gpu/decode_fp8.py's bench does), so
`attn-dse validate GPU --measurements DIR/ctas-ladder-measurements.csv` compares the model.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from attn_dse.gpu import decode as bf16_decode
from attn_dse.gpu.decode_fp8 import cache_bytes, decode_fp8, quantize_kv
from attn_dse.gpu.harness import DEV, Recorder, rnd, sm_count, timed

HQ, HKV, D, L = 32, 4, 128, 8192
BF16_CFGS = ((128, 8, 3), (128, 8, 4))  # block_n, warps, stages: the tuned configs of the stored bf16 rows
WIDEN_CFG = ("triton", 128, 4, 4, False, 1)  # kernel, block_n, warps, stages, keys_as_rows, split factor
REGS_CFG = ("regs", 64, 1)  # kernel, block_n, tiles
TAIL = 24  # programs past a whole number a SM: a last wave on 24 SMs
PER_SM = (0.5, 1, (1, TAIL), 1.5, 2, (2, TAIL), 2.5, 3, (3, TAIL), 4)  # (n, TAIL): n a SM, then TAIL more
PER_SM_REGS = PER_SM + (6, 8, (8, TAIL), 9, 12, 16)


def programs(p, sms: int) -> int:
    """Programs for p a SM, or for (n, tail): n a SM and `tail` more."""
    return p[0] * sms + p[1] if isinstance(p, tuple) else round(p * sms)


def main(out: Path) -> None:
    rec = Recorder(out)
    sms = sm_count()
    kernels = {**{cfg: PER_SM for cfg in BF16_CFGS}, WIDEN_CFG: PER_SM, REGS_CFG: PER_SM_REGS}
    for cfg, ladder in kernels.items():
        for p in ladder:
            B = max(1, programs(p, sms) // HKV)
            q = rnd(B, 1, HQ, D)
            lens = torch.full((B,), L, device=DEV, dtype=torch.int32)
            k, v = rnd(B, L, HKV, D), rnd(B, L, HKV, D)
            common = dict(family="decode", variant="gqa", phase="decode", batch=B, seq=1, context=L - 1, n_heads=HQ,
                          n_kv_heads=HKV, head_dim=D, causal=True, window="", top_k="", block="", dtype="bf16",
                          n_split=1)
            if cfg in BF16_CFGS:
                t = timed(lambda: bf16_decode.decode(q, k, v, lens, n_splits=1, block_n=cfg[0], num_warps=cfg[1],
                                                     num_stages=cfg[2]))
                rec.add(**common, kv_dtype="bf16", config=str(cfg), median_s=t[0], p20_s=t[1], p80_s=t[2],
                        kv_bytes=2 * B * L * HKV * D * 2)
            else:
                k8, ks = quantize_kv(k)
                v8, vs = quantize_kv(v)
                if cfg == WIDEN_CFG:
                    t = timed(lambda: decode_fp8(q, k8, v8, ks, vs, lens, n_splits=1, block_n=cfg[1], num_warps=cfg[2],
                                                 num_stages=cfg[3], keys_as_rows=cfg[4], kernel="triton"))
                else:
                    t = timed(lambda: decode_fp8(q, k8, v8, ks, vs, lens, n_splits=1, block_n=cfg[1], tiles=cfg[2],
                                                 kernel="regs"))
                rec.add(**common, kv_dtype="fp8", config=str(cfg), median_s=t[0], p20_s=t[1], p80_s=t[2],
                        kv_bytes=cache_bytes(k8, ks))
                del k8, v8, ks, vs
            del q, k, v
            torch.cuda.empty_cache()
        rec.write(stem="ctas-ladder")
    print(f"\nus per program-per-SM (programs = B x {HKV} KV heads, {L} keys each, {sms} SMs)")
    for cfg in kernels:
        rows = [r for r in rec.rows if r["config"] == str(cfg)]
        print(f"{str(cfg):32s} " + "  ".join(f"{r['batch'] * HKV / sms:.2f}:{r['median_s'] * 1e6:.0f}" for r in rows))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    main(ap.parse_args().out)
