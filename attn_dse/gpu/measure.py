"""On-GPU checks and microbenchmarks of the kernels: one run measures everything.

    python -m attn_dse.gpu.measure --measure --out DIR      (on a machine with a CUDA GPU)

Writes DIR/measurements.csv (one row per shape, with device, driver, torch/triton versions,
date, config, median and spread), DIR/checks.csv (errors vs the float32 reference, outputs
poisoned with NaN before each run) and DIR/ceilings.csv (copy bandwidth, matmul rates).
Timings: CUDA-graph replays, each call after a write of twice the L2 (see timed()).
"""
from __future__ import annotations

import csv
import datetime
import math
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import triton
from triton.testing import do_bench

from attn_dse.gpu import block_sparse as bs
from attn_dse.gpu.decode import choose_splits, decode
from attn_dse.gpu.mla_decode import choose_splits as mla_splits, is_hopper, mla_decode
from attn_dse.gpu.prefill import prefill, prefill_flops
from attn_dse.gpu.reference import attention_ref, block_sparse_ref, mla_decode_ref

DEV = "cuda"
FIELDS = ["device", "driver", "torch", "triton", "cuda", "date", "family", "variant", "phase", "batch", "seq",
          "context", "n_heads", "n_kv_heads", "head_dim", "causal", "window", "top_k", "block", "dtype", "config",
          "n_split", "median_s", "p20_s", "p80_s", "flops", "kv_bytes", "tflop_per_s", "tb_per_s"]


def provenance() -> dict:
    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True).stdout.strip().splitlines()[0]
    except Exception:  # noqa: BLE001 (provenance is best effort)
        driver = "unknown"
    return {"device": torch.cuda.get_device_name(), "driver": driver, "torch": torch.__version__,
            "triton": triton.__version__, "cuda": torch.version.cuda,
            "date": datetime.date.today().isoformat()}


_FLUSH = {}


def _flush_buffer() -> torch.Tensor:
    """Twice the L2 (50 MB on an H100, 60 on an H200): zeroing it evicts every cached line."""
    if "buf" not in _FLUSH:
        l2 = torch.cuda.get_device_properties(0).L2_cache_size
        _FLUSH["buf"] = torch.empty(2 * l2 // 4, device=DEV, dtype=torch.int32)
    return _FLUSH["buf"]


def timed(fn, replays: int = 15) -> tuple[float, float, float]:
    """(median, p20, p80) in seconds of one call of fn, on a cold L2, without launch gaps.

    fn is captured in a CUDA graph R times, each call after a write of twice the L2; a second
    graph holds only the R writes. Each replay of the pair gives (T_both - T_writes) / R. The
    host's launch cost stays out: timed with events around plain launches (do_bench), kernels of
    tens of microseconds measured 2-4x apart between runs, the host's Python launch path being
    slower than the GPU's work (docs/MEASUREMENTS.md)."""
    flush = _flush_buffer()
    est = do_bench(fn, warmup=5, rep=20, return_mode="median") / 1e3  # also compiles and warms up
    calls = max(1, min(50, int(2e-3 / max(est, 1e-7))))
    stream = torch.cuda.Stream()
    graphs = []
    for with_fn in (True, False):
        g = torch.cuda.CUDAGraph()
        with torch.cuda.stream(stream):
            fn()  # allocations of the first call happen outside the capture
            torch.cuda.synchronize()
            with torch.cuda.graph(g, stream=stream):
                for _ in range(calls):
                    flush.zero_()
                    if with_fn:
                        fn()
        graphs.append(g)
    per_call = []
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(replays):
        t = []
        for g in graphs:
            start.record()
            g.replay()
            end.record()
            end.synchronize()
            t.append(start.elapsed_time(end) / 1e3)
        per_call.append((t[0] - t[1]) / calls)
    p20, p50, p80 = np.quantile(per_call, [0.2, 0.5, 0.8])
    return float(p50), float(p20), float(p80)


def rel_err(out, ref) -> float:
    out = out.float()
    if torch.isnan(out).any():
        return float("nan")
    return float((out - ref).norm() / ref.norm())


def rnd(*shape, dtype=torch.bfloat16):
    return torch.randn(*shape, device=DEV, dtype=dtype)


class Recorder:
    def __init__(self, out: Path):
        self.prov = provenance()
        self.rows, self.checks, self.scaling = [], [], []
        self.out = out

    def add(self, **row):
        row = {**self.prov, **row}
        med = row["median_s"]
        row["tflop_per_s"] = row["flops"] / med / 1e12
        row["tb_per_s"] = row["kv_bytes"] / med / 1e12 if row.get("kv_bytes") else 0.0
        self.rows.append(row)
        print(f"{row['family']:12s} {row['variant']:6s} B={row['batch']:<4} S={row['seq']:<6} L={row['context']:<6} "
              f"H={row['n_heads']}/{row['n_kv_heads']} d={row['head_dim']} causal={row['causal']} win={row['window']} "
              f"k={row['top_k']} cfg={row['config']} -> {med * 1e6:9.1f} us {row['tflop_per_s']:7.1f} TF/s "
              f"{row['tb_per_s']:5.2f} TB/s", flush=True)

    def check(self, name, err, bound):
        ok = err == err and err <= bound
        self.checks.append({**self.prov, "kernel": name, "rel_err": err, "bound": bound, "ok": ok})
        print(f"check {name}: rel err {err:.2e} (bound {bound:g}) {'ok' if ok else 'FAIL'}", flush=True)

    def write(self):
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / "measurements.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
            w.writeheader()
            w.writerows(self.rows)
        if self.scaling:  # block-sparse time against dense, by selected share
            with open(self.out / "block_sparse_scaling.csv", "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(self.scaling[0]))
                w.writeheader()
                w.writerows(self.scaling)
        with open(self.out / "checks.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(self.checks[0]) if self.checks else ["kernel"])
            w.writeheader()
            w.writerows(self.checks)


BF16_BOUND = 2e-2  # relative error of bf16 operands against float32 (METHOD.md: 1e-3 .. 1e-2)


# ---------------------------------------------------------------- correctness on GPU
def check_all(rec: Recorder) -> None:
    g = torch.Generator(device="cpu").manual_seed(0)
    for (B, S, Hq, Hkv, D, causal, window, dtype) in [
            (2, 1000, 8, 2, 128, True, None, torch.bfloat16), (1, 777, 4, 4, 64, False, None, torch.float16),
            (1, 1500, 8, 1, 128, True, 300, torch.bfloat16), (3, 515, 16, 4, 64, True, None, torch.bfloat16),
            (1, 640, 4, 2, 256, False, None, torch.bfloat16)]:
        q, k, v = rnd(B, S, Hq, D, dtype=dtype), rnd(B, S, Hkv, D, dtype=dtype), rnd(B, S, Hkv, D, dtype=dtype)
        out = torch.full_like(q, float("nan"))
        prefill(q, k, v, causal, window, out=out)
        rec.check(f"prefill B{B} S{S} H{Hq}/{Hkv} d{D} causal={causal} win={window} {dtype}",
                  rel_err(out, attention_ref(q, k, v, causal, window)), BF16_BOUND)
    for (B, Sq, Hq, Hkv, D, L, splits) in [(3, 1, 32, 8, 128, 3000, 8), (2, 4, 16, 2, 128, 1111, 3),
                                           (4, 1, 8, 8, 64, 515, None), (1, 2, 8, 1, 128, 4097, 16)]:
        q, k, v = rnd(B, Sq, Hq, D), rnd(B, L, Hkv, D), rnd(B, L, Hkv, D)
        lens = torch.randint(max(Sq, L // 3), L + 1, (B,), generator=g).to(DEV, torch.int32)
        out = torch.full_like(q, float("nan"))
        decode(q, k, v, lens, n_splits=splits, out=out)
        rec.check(f"decode B{B} Sq{Sq} H{Hq}/{Hkv} d{D} L{L} splits={splits}",
                  rel_err(out, attention_ref(q, k, v, True, seq_lens=lens)), BF16_BOUND)
    for (B, H, L) in [(2, 128, 3001), (3, 16, 700), (1, 128, 5000), (4, 16, 2049), (2, 96, 1500)]:
        qn, qp, kv = rnd(B, H, 512), rnd(B, H, 64), rnd(B, L, 576)
        lens = torch.randint(L // 2, L + 1, (B,), generator=g).to(DEV, torch.int32)
        out = torch.full((B, 1, H, 512), float("nan"), device=DEV, dtype=torch.bfloat16)
        for cfg in MLA_CONFIGS[128 if H > 16 else 16]:  # every configuration the tuning may pick
            if cfg[0] == "wgmma" and not is_hopper(kv):
                continue
            out.fill_(float("nan"))
            run_mla(qn, qp, kv, lens, cfg, out=out)
            rec.check(f"mla_decode B{B} H{H} L{L} {cfg}",
                      rel_err(out[:, 0], mla_decode_ref(qn, qp, kv, lens, 512, 1 / math.sqrt(192))), BF16_BOUND)
    for (B, S, Hq, Hkv, D, topk) in [(2, 1000, 8, 2, 128, 4), (1, 2048, 4, 1, 64, 8)]:
        q, k, v = rnd(B, S, Hq, D), rnd(B, S, Hkv, D), rnd(B, S, Hkv, D)
        idx = bs.causal_topk(B, Hkv, S, 64, topk, g, DEV)
        for heads, warps, fraction in ((1, 4, None), (2, 8, None), (2, 4, None), (2, 8, 0.25)):
            sel = idx if fraction is None else bs.causal_topk(B, Hkv, S, 64, 0, g, DEV, fraction=fraction)
            out = torch.full_like(q, float("nan"))
            bs.block_sparse_prefill(q, k, v, sel, heads=heads, num_warps=warps, out=out)
            rec.check(f"block_sparse prefill B{B} S{S} k{topk} heads={heads} warps={warps} fraction={fraction}",
                      rel_err(out, block_sparse_ref(q, k, v, sel.long(), 64, True)), BF16_BOUND)
        qd = rnd(B, 1, Hq, D)
        idx_d = idx[:, :, -1].contiguous()
        lens = torch.full((B,), S, device=DEV, dtype=torch.int32)
        out = torch.full_like(qd, float("nan"))
        bs.block_sparse_decode(qd, k, v, lens, idx_d, out=out)
        rec.check(f"block_sparse decode B{B} S{S} k{topk}",
                  rel_err(out, block_sparse_ref(qd, k, v, idx_d[:, :, None].long(), 64, True)), BF16_BOUND)


# ---------------------------------------------------------------- ceilings
def ceilings(out: Path) -> dict:
    n = 1 << 30  # 2 GiB of bf16 each way
    x, y = torch.empty(n, device=DEV, dtype=torch.bfloat16).normal_(), torch.empty(n, device=DEV, dtype=torch.bfloat16)
    t = do_bench(lambda: y.copy_(x), warmup=20, rep=200, return_mode="median") / 1e3
    copy_bw = 2 * n * 2 / t
    del x, y
    n = 8192
    rates = {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        a, b = rnd(n, n, dtype=dtype), rnd(n, n, dtype=dtype)
        rates[name] = 2 * n**3 / (do_bench(lambda: a @ b, warmup=20, rep=200, return_mode="median") / 1e3)
    try:  # fp8 (e4m3) through the scaled matmul, B column-major as cuBLASLt wants it
        a = rnd(n, n).to(torch.float8_e4m3fn)
        b = rnd(n, n).to(torch.float8_e4m3fn).t().contiguous().t()
        one = torch.ones((), device=DEV)
        fp8 = lambda: torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)  # noqa: E731
        rates["fp8"] = 2 * n**3 / (do_bench(fp8, warmup=20, rep=200, return_mode="median") / 1e3)
    except (RuntimeError, AttributeError) as exc:  # no fp8 matmul on this GPU or build
        print(f"fp8 matmul not measured: {exc}", flush=True)
    res = {**provenance(), "copy_bytes_per_s": copy_bw, **{f"matmul_{k}_flop_per_s": v for k, v in rates.items()}}
    with open(out / "ceilings.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(res))
        w.writeheader()
        w.writerow(res)
    print(f"ceilings: copy {copy_bw / 1e12:.2f} TB/s (read+write), matmul " +
          ", ".join(f"{k} {v / 1e12:.0f}" for k, v in rates.items()) + " TFLOP/s", flush=True)
    return res


# ---------------------------------------------------------------- tuning of the headline shapes
PREFILL_CONFIGS = [(128, 64, 8, 3), (128, 128, 8, 3), (128, 64, 4, 3), (64, 64, 4, 4), (128, 128, 8, 2),
                   (128, 32, 4, 4), (64, 128, 4, 3)]


def tune_prefill(D=128, S=16384, H=32) -> dict:
    q, k, v = rnd(1, S, H, D), rnd(1, S, H, D), rnd(1, S, H, D)
    best = {}
    for causal in (False, True):
        times = {}
        for cfg in PREFILL_CONFIGS:
            try:
                times[cfg] = timed(lambda: prefill(q, k, v, causal, config=cfg))[0]
            except Exception as exc:  # noqa: BLE001 (a config may not fit; skip it)
                print(f"config {cfg} failed: {type(exc).__name__}", flush=True)
        best[causal] = min(times, key=times.get)
        flops = prefill_flops(1, S, S, H, D, causal)
        print("tune prefill causal=%s: " % causal + ", ".join(f"{c}:{flops / t / 1e12:.0f}" for c, t in times.items()),
              flush=True)
    return best


def tune_decode(B=64, L=32768, Hq=64, Hkv=8, D=128) -> tuple:
    q, k, v = rnd(B, 1, Hq, D), rnd(B, L, Hkv, D), rnd(B, L, Hkv, D)
    lens = torch.full((B,), L, device=DEV, dtype=torch.int32)
    times = {}
    for block_n in (64, 128):
        for warps in (4, 8):
            for stages in (2, 3, 4):
                cfg = (block_n, warps, stages)
                times[cfg] = timed(lambda: decode(q, k, v, lens, block_n=block_n, num_warps=warps, num_stages=stages))[0]
    kv = 2 * B * L * Hkv * D * 2
    print("tune decode: " + ", ".join(f"{c}:{kv / t / 1e12:.2f}TB/s" for c, t in times.items()), flush=True)
    # configurations within 2% stream equally with every SM busy; the deepest pipeline (K/V
    # bytes in flight) streams most per SM when few programs run (no split-KV at batch 1)
    best = min(times.values())
    return max((c for c, t in times.items() if t <= 1.02 * best), key=lambda c: (c[0] * c[2], -times[c]))


MLA_CONFIGS = {  # (layout, block_h, block_n, num_warps, num_stages); 4 warps need 2 stages (1 crashed);
    # the wgmma layout (Gluon, Hopper only) has fixed tiles: its other fields are what it runs with
    128: [("wgmma", 64, 64, 8, 2), ("heads", 64, 64, 8, 2), ("tokens", 64, 128, 8, 1)],
    16: [("tokens", 16, 64, 4, 2), ("tokens", 16, 32, 4, 4), ("tokens", 16, 128, 8, 1)]}


def run_mla(qn, qp, kv, lens, cfg, **kw):
    layout, block_h, block_n, warps, stages = cfg
    return mla_decode(qn, qp, kv, lens, layout=layout, block_h=block_h, block_n=block_n, num_warps=warps,
                      num_stages=stages, **kw)


def tune_mla(H: int, B: int = 64, L: int = 8192) -> tuple:
    """Fastest configuration for H heads: 128 is compute-bound,
    16 (a tensor-parallel shard of DeepSeek-V3's heads) memory-bound. Off Hopper the wgmma
    layout raises and drops out."""
    qn, qp, kv = rnd(B, H, 512), rnd(B, H, 64), rnd(B, L, 576)
    lens = torch.full((B,), L, device=DEV, dtype=torch.int32)
    times = {}
    for cfg in MLA_CONFIGS[H]:
        try:
            times[cfg] = timed(lambda: run_mla(qn, qp, kv, lens, cfg))[0]
        except Exception as exc:  # noqa: BLE001 (a config may not fit in shared memory)
            print(f"mla config {cfg} failed: {type(exc).__name__}: {str(exc)[:120]}", flush=True)
    flops, kv_bytes = 2 * B * H * L * (576 + 512), B * L * 576 * 2
    print(f"tune mla H={H}: " + ", ".join(f"{c}:{flops / t / 1e12:.0f}TF/s,{kv_bytes / t / 1e12:.2f}TB/s"
                                          for c, t in times.items()), flush=True)
    return min(times, key=times.get)


# ---------------------------------------------------------------- the measured grid
def measure_prefill(rec: Recorder, cfg: dict) -> None:
    shapes = []
    for D in (64, 128):
        for S in (1024, 4096, 16384):
            for causal in (False, True):
                shapes.append((max(1, 16384 // S), S, 32, 8, D, causal, None, torch.bfloat16))
    shapes += [(4, 4096, 32, h, 128, True, None, torch.bfloat16) for h in (32, 4, 1)]
    shapes += [(1, s, 32, 8, 128, True, w, torch.bfloat16) for s in (4096, 16384) for w in (512, 2048)]
    shapes += [(4, 4096, 32, 8, 128, c, None, torch.float16) for c in (False, True)]
    shapes += [(2, 3000, 32, 8, 128, True, None, torch.bfloat16), (1, 16384, 32, 32, 128, False, None, torch.bfloat16)]
    for B, S, Hq, Hkv, D, causal, window, dtype in shapes:
        q, k, v = rnd(B, S, Hq, D, dtype=dtype), rnd(B, S, Hkv, D, dtype=dtype), rnd(B, S, Hkv, D, dtype=dtype)
        config = cfg[causal] if D == 128 else None
        med, p20, p80 = timed(lambda: prefill(q, k, v, causal, window, config=config))
        rec.add(family="prefill", variant="gqa", phase="prefill", batch=B, seq=S, context=S, n_heads=Hq,
                n_kv_heads=Hkv, head_dim=D, causal=causal, window=window or "", top_k="", block="",
                dtype="bf16" if dtype == torch.bfloat16 else "fp16", config=str(config or "default"), n_split=1,
                median_s=med, p20_s=p20, p80_s=p80, flops=prefill_flops(B, S, S, Hq, D, causal, window),
                kv_bytes=2 * B * S * Hkv * D * 2)
        del q, k, v


def measure_decode(rec: Recorder, cfg: tuple) -> None:
    block_n, warps, stages = cfg
    shapes = [(b, 1, 64, 8, 128, L, None) for b in (1, 4, 16, 64, 128) for L in (1024, 4096, 16384, 32768, 65536)]
    shapes += [(b, 1, 32, 32, 128, L, None) for b in (1, 16) for L in (4096, 32768)]
    shapes += [(b, 1, 32, 1, 128, 32768, None) for b in (1, 64)]
    shapes += [(b, 4, 64, 8, 128, 32768, None) for b in (1, 16)]
    shapes += [(b, 1, 64, 8, 128, 32768, 1) for b in (1, 4, 16)]  # no split-KV
    for B, Sq, Hq, Hkv, D, L, splits in shapes:
        q, k, v = rnd(B, Sq, Hq, D), rnd(B, L, Hkv, D), rnd(B, L, Hkv, D)
        lens = torch.full((B,), L, device=DEV, dtype=torch.int32)
        n_split = splits or choose_splits(B, Hkv, L, block_n=block_n)
        med, p20, p80 = timed(lambda: decode(q, k, v, lens, n_splits=n_split, block_n=block_n, num_warps=warps,
                                             num_stages=stages))
        variant = "mha" if Hq == Hkv else ("mqa" if Hkv == 1 else "gqa")
        rec.add(family="decode", variant=variant, phase="decode", batch=B, seq=Sq, context=L - Sq, n_heads=Hq,
                n_kv_heads=Hkv, head_dim=D, causal=True, window="", top_k="", block="", dtype="bf16",
                config=str(cfg), n_split=n_split, median_s=med, p20_s=p20, p80_s=p80,
                flops=4.0 * B * Hq * Sq * L * D, kv_bytes=2 * B * L * Hkv * D * 2)
        del q, k, v


def measure_mla(rec: Recorder) -> None:
    shapes = {128: [(1, 4096), (1, 32768), (8, 8192), (16, 32768), (32, 4096), (64, 1024), (64, 4096), (64, 16384),
                    (128, 4096), (128, 8192), (4, 65536), (256, 2048)],
              16: [(1, 32768), (8, 8192), (16, 32768), (64, 4096), (64, 16384), (128, 8192)]}
    for H, sizes in shapes.items():
        cfg = tune_mla(H)
        for B, L in sizes:
            qn, qp, kv = rnd(B, H, 512), rnd(B, H, 64), rnd(B, L, 576)
            lens = torch.full((B,), L, device=DEV, dtype=torch.int32)
            med, p20, p80 = timed(lambda: run_mla(qn, qp, kv, lens, cfg))
            rec.add(family="mla_decode", variant="mla", phase="decode", batch=B, seq=1, context=L - 1, n_heads=H,
                    n_kv_heads=1, head_dim=576, causal=True, window="", top_k="", block="", dtype="bf16",
                    config=str(cfg), n_split=mla_splits(B, triton.cdiv(H, cfg[1]), L, cfg[2]), median_s=med,
                    p20_s=p20, p80_s=p80, flops=2.0 * B * H * L * (576 + 512), kv_bytes=B * L * 576 * 2)
            del kv


def measure_block_sparse(rec: Recorder) -> None:
    g = torch.Generator().manual_seed(0)
    S, B, Hq, Hkv, D = 16384, 1, 32, 8, 128
    q, k, v = rnd(B, S, Hq, D), rnd(B, S, Hkv, D), rnd(B, S, Hkv, D)
    nb = S // 64
    idx = bs.causal_topk(B, Hkv, S, 64, 64, g, DEV)
    tune = {}
    for heads, w, st in [(2, 8, 2), (2, 8, 3), (2, 4, 3), (1, 4, 2), (1, 4, 3)]:
        tune[(heads, w, st)] = timed(lambda: bs.block_sparse_prefill(q, k, v, idx, heads=heads, num_warps=w,
                                                                     num_stages=st))[0]
    heads, warps, stages = cfg = min(tune, key=tune.get)
    print("tune block_sparse (heads, warps, stages): " + ", ".join(f"{c}:{t * 1e6:.0f}us" for c, t in tune.items()),
          flush=True)

    def sparse(idx, causal=True):
        return timed(lambda: bs.block_sparse_prefill(q, k, v, idx, causal=causal, heads=heads, num_warps=warps,
                                                     num_stages=stages))

    for top_k in (16, 32, 64, 128, nb):
        idx = bs.causal_topk(B, Hkv, S, 64, top_k, g, DEV)
        med, p20, p80 = sparse(idx)
        pairs = sum(min(top_k - 1, qb) * 64 * 64 + 64 * 65 / 2 for qb in range(nb))
        rec.add(family="block_sparse", variant="moba", phase="prefill", batch=B, seq=S, context=S, n_heads=Hq,
                n_kv_heads=Hkv, head_dim=D, causal=True, window="", top_k=top_k, block=64, dtype="bf16",
                config=str((64 * heads, 64, warps, stages)), n_split=1, median_s=med, p20_s=p20, p80_s=p80,
                flops=4.0 * B * Hq * pairs * D, kv_bytes=2 * B * S * Hkv * D * 2)
    dense_c, _, _ = timed(lambda: prefill(q, k, v, True))
    print(f"dense causal prefill for comparison: {dense_c * 1e6:.1f} us", flush=True)
    # causal selection of a fixed share of the blocks each query block sees: time should follow the share
    for fraction in (0.125, 0.25, 0.5):
        idx = bs.causal_topk(B, Hkv, S, 64, 0, g, DEV, fraction=fraction)
        med, p20, p80 = sparse(idx)
        share = float((idx >= 0).sum()) / (B * Hkv * nb * (nb + 1) / 2)
        rec.scaling.append({**rec.prov, "selection": "causal, share of visible blocks", "fraction": fraction,
                            "block_share": share, "median_s": med, "dense_s": dense_c, "ratio": med / dense_c})
        print(f"causal block-sparse {100 * share:.1f}% of visible blocks: {med * 1e6:.1f} us = "
              f"{100 * med / dense_c:.1f}% of dense causal ({dense_c * 1e6:.1f} us)", flush=True)
    # non-causal selection (MoBA over a bidirectional context): top_k / nb is exactly the pair share
    dense_nc, _, _ = timed(lambda: prefill(q, k, v, False))
    for top_k in (32, 64, 128):
        idx = torch.stack([torch.randperm(nb, generator=g)[:top_k].sort().values for _ in range(B * Hkv * nb)])
        idx = idx.view(B, Hkv, nb, top_k).to(DEV, torch.int32)
        med, p20, p80 = sparse(idx, causal=False)
        rec.scaling.append({**rec.prov, "selection": "non-causal, top_k of all blocks", "fraction": top_k / nb,
                            "block_share": top_k / nb, "median_s": med, "dense_s": dense_nc, "ratio": med / dense_nc})
        print(f"non-causal block-sparse {top_k}/{nb} blocks: {med * 1e6:.1f} us = {100 * med / dense_nc:.1f}% of "
              f"dense non-causal ({dense_nc * 1e6:.1f} us)", flush=True)
        rec.add(family="block_sparse", variant="moba", phase="prefill", batch=B, seq=S, context=S, n_heads=Hq,
                n_kv_heads=Hkv, head_dim=D, causal=False, window="", top_k=top_k, block=64, dtype="bf16",
                config=str((64 * heads, 64, warps, stages)), n_split=1, median_s=med, p20_s=p20, p80_s=p80,
                flops=4.0 * B * Hq * S * top_k * 64 * D, kv_bytes=2 * B * S * Hkv * D * 2)
    for Bd, L in ((1, 32768), (16, 32768)):
        kd, vd = rnd(Bd, L, Hkv, D), rnd(Bd, L, Hkv, D)
        qd = rnd(Bd, 1, Hq, D)
        lens = torch.full((Bd,), L, device=DEV, dtype=torch.int32)
        for top_k in (8, 32, 128):
            idx = torch.stack([torch.randperm(L // 64, generator=g)[:top_k].sort().values for _ in range(Bd * Hkv)])
            idx = idx.view(Bd, Hkv, top_k).to(DEV, torch.int32)
            med, p20, p80 = timed(lambda: bs.block_sparse_decode(qd, kd, vd, lens, idx))
            rec.add(family="block_sparse", variant="moba", phase="decode", batch=Bd, seq=1, context=L - 1, n_heads=Hq,
                    n_kv_heads=Hkv, head_dim=D, causal=True, window="", top_k=top_k, block=64, dtype="bf16",
                    config="(64, 4)", n_split=max(1, min(top_k, math.ceil(2 * 132 / (Bd * Hkv)))), median_s=med,
                    p20_s=p20, p80_s=p80, flops=4.0 * Bd * Hq * top_k * 64 * D, kv_bytes=2 * Bd * top_k * 64 * Hkv * D * 2)


def main(out: Path, families: tuple[str, ...] = ("prefill", "decode", "mla_decode", "block_sparse")) -> int:
    start = time.time()
    out.mkdir(parents=True, exist_ok=True)
    print(f"{platform.node()}: {provenance()}", flush=True)
    rec = Recorder(out)
    check_all(rec)
    ceilings(out)
    steps = {"prefill": lambda: measure_prefill(rec, tune_prefill()),
             "decode": lambda: measure_decode(rec, tune_decode()),
             "mla_decode": lambda: measure_mla(rec),
             "block_sparse": lambda: measure_block_sparse(rec)}
    for family in families:
        steps[family]()
        rec.write()
        torch.cuda.empty_cache()
    print(f"{len(rec.rows)} shapes measured, {sum(c['ok'] for c in rec.checks)}/{len(rec.checks)} checks ok, "
          f"{time.time() - start:.0f} s", flush=True)
    return 0 if all(c["ok"] for c in rec.checks) else 1
