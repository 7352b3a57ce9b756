"""Our three prefill kernels against SDPA's cuDNN backend in one run, on a GPU (the issue's
"same run as the vendor kernel"): the Gluon kernel (d 128) and the Triton warp-specialized
kernel at each of their candidate configs, the one-warpgroup kernel at its default tiles,
cuDNN, over d 64/128/256 at 1k-16k, causal and not; GQA 32/8, bf16.

    PYTHONPATH=. python3 benchmarks/prefill_vs_cudnn.py --out DIR [--head-dims 128]   (from the repository root)

Writes DIR/prefill-vs-cudnn.csv (provenance in every row) and prints a table; the kernels are
checked against the float32 reference before they are timed.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from attn_dse.gpu.harness import BF16_BOUND, provenance, rel_err, rnd, timed
from attn_dse.gpu import prefill_gluon
from attn_dse.gpu.prefill import WS_CONFIG, prefill, prefill_flops
from attn_dse.gpu.reference import attention_ref

CANDIDATES = {64: [],  # the warp-specialized kernel does not take d 64 (it lost causal: gpu/prefill.py WS_CONFIG)
              128: [WS_CONFIG[128], (128, 128, 4, 1), (256, 64, 4, 2), (128, 64, 4, 2)],
              256: [WS_CONFIG[256], (64, 64, 4, 2), (64, 32, 4, 2)]}
# the Gluon kernel's (BLOCK_N, stages, ping-pong); 128-key tiles at 3 stages nearly fill shared memory
GLUON_CANDIDATES = {128: [prefill_gluon.CONFIG, (128, 3, False), (128, 3, True), (128, 2, True), (64, 3, False),
                          (64, 4, False)]}
SHAPES = [(1, 16384), (4, 4096), (16, 1024)]  # (batch, tokens)


def checked(D: int, cfg: tuple, kernel: str) -> bool:
    """A config of a kernel is timed only if it computes attention."""
    q, k, v = rnd(2, 1000, 8, D), rnd(2, 1000, 2, D), rnd(2, 1000, 2, D)
    out = torch.full_like(q, float("nan"))
    try:
        prefill(q, k, v, True, out=out, config=cfg, kernel=kernel)
    except Exception as exc:  # noqa: BLE001 (a config may not fit; reported, not timed)
        print(f"d{D} {cfg}: {type(exc).__name__}: {str(exc)[:120]}", flush=True)
        return False
    err = rel_err(out, attention_ref(q, k, v, True))
    print(f"check d{D} {kernel} {cfg}: rel err {err:.2e} ({'ok' if err < BF16_BOUND else 'FAIL'})", flush=True)
    return err < BF16_BOUND


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("prefill-vs-cudnn"))
    ap.add_argument("--head-dims", default="64,128,256", help="comma-separated head dims to time (default: %(default)s)")
    args = ap.parse_args()
    dims = [int(d) for d in args.head_dims.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    prov = provenance()
    print(prov, flush=True)
    rows = []
    for D, cfgs in ((d, c) for d, c in CANDIDATES.items() if d in dims):
        good = [c for c in cfgs if checked(D, c, "ws")]
        good_gluon = [c for c in GLUON_CANDIDATES.get(D, []) if checked(D, c, "gluon")]
        for B, S in SHAPES:
            for causal in (False, True):
                Hq, Hkv = 32, 8
                q, k, v = rnd(B, S, Hq, D), rnd(B, S, Hkv, D), rnd(B, S, Hkv, D)
                times = {"tiles": timed(lambda: prefill(q, k, v, causal, kernel="tiles"))[0]}
                for cfg in good:
                    times[f"ws{cfg}"] = timed(lambda: prefill(q, k, v, causal, config=cfg, kernel="ws"))[0]
                for cfg in good_gluon:
                    times[f"gluon{cfg}"] = timed(lambda: prefill(q, k, v, causal, config=cfg, kernel="gluon"))[0]
                qh, kh, vh = (t.transpose(1, 2).contiguous() for t in (q, k, v))
                with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
                    times["cudnn"] = timed(lambda: torch.nn.functional.scaled_dot_product_attention(
                        qh, kh, vh, is_causal=causal, enable_gqa=True))[0]
                flops = prefill_flops(B, S, S, Hq, D, causal)
                for name, t in times.items():
                    rows.append({**prov, "kernel": name, "head_dim": D, "batch": B, "seq": S, "n_heads": Hq,
                                 "n_kv_heads": Hkv, "causal": causal, "median_s": t, "tflop_per_s": flops / t / 1e12,
                                 "vs_cudnn": times["cudnn"] / t})
                del q, k, v, qh, kh, vh
    with open(args.out / "prefill-vs-cudnn.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"\n{'shape':<22} {'tiles':>6} {'ws (best config)':>26} {'gluon (best config)':>28} {'cuDNN':>6} "
          f"{'best/cuDNN':>10}")
    for r in rows:
        if r["kernel"] != "cudnn":
            continue
        same = [x for x in rows if (x["head_dim"], x["batch"], x["seq"], x["causal"]) ==
                (r["head_dim"], r["batch"], r["seq"], r["causal"])]
        tiles = next(x for x in same if x["kernel"] == "tiles")
        best = {name: max((x for x in same if x["kernel"].startswith(name)), key=lambda x: x["tflop_per_s"], default=None)
                for name in ("ws", "gluon")}
        text = {name: f"{b['tflop_per_s']:.0f} {b['kernel'][len(name):]}" if b else "-" for name, b in best.items()}
        top = max((b for b in best.values() if b), key=lambda x: x["tflop_per_s"], default=None)
        label = f"d{r['head_dim']} B{r['batch']} S{r['seq']} {'causal' if r['causal'] else 'full'}"
        ratio = f"{top['vs_cudnn']:.3f}x" if top else "-"
        print(f"{label:<22} {tiles['tflop_per_s']:>6.0f} {text['ws']:>26} {text['gluon']:>28} {r['tflop_per_s']:>6.0f} "
              f"{ratio:>10}")


if __name__ == "__main__":
    main()
