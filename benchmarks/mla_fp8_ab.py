"""The warp-specialized fp8-KV MLA kernels (layouts "ws" and "wsr") beside the Gluon kernel it would replace
(layout "wgmma") and our bf16 kernel, in one run: checks of every "ws" configuration against
float32 first, then, per shape, each kernel's fastest configuration and split factor, and the
fp8/bf16 speed-ups.

    PYTHONPATH=. python3 benchmarks/mla_fp8_ab.py --out DIR      (on a Hopper GPU)

Writes DIR/checks.csv and DIR/measurements.csv (family mla_decode, kv_dtype fp8 or bf16, the
winning configuration in `config`).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from attn_dse.gpu.decode_fp8 import tune
from attn_dse.gpu.flashmla_row import D_LATENT, D_ROPE, row_bytes
from attn_dse.gpu.harness import DEV, Recorder, rnd, timed
from attn_dse.gpu.mla_decode import FAMILY
from attn_dse.gpu.mla_decode_fp8 import (BF16_CONFIGS, SPLIT_FACTORS, WGMMA_CONFIGS, WS_CONFIGS, _bf16, _key,
                                         _splits, check, latent_cache, mla_decode_fp8)

SHAPES = ((64, 32768), (128, 32768), (16, 32768), (64, 4096))  # (batch, context)
BF16_ROW = 2 * (D_LATENT + D_ROPE)  # bytes of a token's bf16 latent


def bench(rec: Recorder, heads=(16, 32), shapes=SHAPES) -> None:
    for H in heads:
        for B, L in shapes:
            qn, qp = rnd(B, 1, H, D_LATENT), rnd(B, 1, H, D_ROPE)
            lens = torch.full((B,), L, device=DEV, dtype=torch.int32)
            common = dict(family=FAMILY, variant="mla", phase="decode", batch=B, seq=1, context=L - 1, n_heads=H,
                          n_kv_heads=1, head_dim=D_LATENT + D_ROPE, causal=True, window="", top_k="", block="",
                          dtype="bf16")
            kv = rnd(B, L, D_LATENT + D_ROPE)
            print(f"H{H} B{B} L{L} bf16:", flush=True)
            cfg16 = tune(lambda c: _bf16(qn, qp, kv, lens, c, _splits(B, H, L, c)), B * L * BF16_ROW,
                         BF16_CONFIGS[_key(H)])
            n16 = _splits(B, H, L, cfg16)
            t16 = timed(lambda: _bf16(qn, qp, kv, lens, cfg16, n16))
            rec.add(**common, kv_dtype="bf16", config=str(cfg16), n_split=n16, median_s=t16[0], p20_s=t16[1],
                    p80_s=t16[2], kv_bytes=B * L * BF16_ROW)
            del kv
            packed = latent_cache(B, L)
            qh = qn.half()
            best = {}
            for name, cfgs in (("wgmma", WGMMA_CONFIGS[_key(H)]), ("ws", WS_CONFIGS[_key(H)])):
                print(f"H{H} B{B} L{L} fp8 {name}:", flush=True)
                cands = [(c, f) for c in cfgs for f in SPLIT_FACTORS]
                cfg, f = tune(lambda c: mla_decode_fp8(qh, qp, packed, lens, c[0], n_splits=_splits(B, H, L, c[0],
                                                                                                    c[1])),
                              B * L * row_bytes(), cands)
                n8 = _splits(B, H, L, cfg, f)
                t8 = timed(lambda: mla_decode_fp8(qh, qp, packed, lens, cfg, n_splits=n8))
                rec.add(**common, kv_dtype="fp8", config=str(cfg), n_split=n8, median_s=t8[0], p20_s=t8[1],
                        p80_s=t8[2], kv_bytes=B * L * row_bytes())
                best[name] = t8[0]
            print(f"  speed-up fp8/bf16 H{H} B{B} L{L}: wgmma {t16[0] / best['wgmma']:.2f}x, "
                  f"ws {t16[0] / best['ws']:.2f}x (bf16 {B * L * BF16_ROW / t16[0] / 1e12:.2f} TB/s)", flush=True)
            del packed
            torch.cuda.empty_cache()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--check-only", action="store_true")
    ap.add_argument("--heads", default="16,32", help="query heads, comma-separated (default 16,32)")
    ap.add_argument("--shapes", default=",".join(f"{b}x{n}" for b, n in SHAPES),
                    help="BATCHxCONTEXT, comma-separated (default %(default)s)")
    args = ap.parse_args()
    heads = [int(h) for h in args.heads.split(",")]
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    rec = Recorder(args.out)
    check(rec, torch.Generator(device="cpu").manual_seed(0), layouts=("ws", "wsr"))
    rec.write()
    if not all(c["ok"] for c in rec.checks):
        return 1
    if not args.check_only:
        bench(rec, heads, shapes)
        rec.write()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
