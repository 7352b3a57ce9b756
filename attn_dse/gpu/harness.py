"""The timing harness every GPU family's bench shares: provenance, cold-L2 CUDA-graph timing,
float32-reference checks, the CSV recorder, and the device's ceilings (copy and matmul rates).

Nothing here or in a family file hard-codes a device: the SM count and L2 size are read from it.
"""
from __future__ import annotations

import csv
import datetime
import subprocess
from pathlib import Path

import numpy as np
import torch
import triton
from triton.testing import do_bench

DEV = "cuda"
FIELDS = ["device", "driver", "torch", "triton", "cuda", "date", "implementation", "family", "variant", "phase", "batch", "seq",
          "context", "n_heads", "n_kv_heads", "head_dim", "causal", "window", "top_k", "block", "dtype", "config",
          "n_split", "median_s", "p20_s", "p80_s", "flops", "kv_bytes", "tflop_per_s", "tb_per_s", "kv_dtype"]


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


def tensordesc(dtype: str, block: list, layout) -> str:
    """A tensor descriptor's type in a kernel signature, for a build without a GPU: Triton's
    name of the element type ("bf16", "fp8e4nv"...), the block, its shared-memory layout."""
    return f"tensordesc<{dtype}[{','.join(map(str, block))}],{layout!r}>"


def sm90_build(src, num_warps: int, num_stages: int = 3, maxnreg: int | None = None) -> dict:
    """Compile a Triton or Gluon source for sm_90 without a GPU (Triton's bundled ptxas and
    cuobjdump; run with TRITON_INTERPRET unset): its SASS, the registers and stack bytes a
    thread, and the shared memory it asks for."""
    import re
    import tempfile

    from triton.backends.compiler import GPUTarget
    compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32),
                              options={"num_warps": num_warps, "num_stages": num_stages,
                                       **({"maxnreg": maxnreg} if maxnreg else {})})
    tool = Path(triton.__file__).parent / "backends/nvidia/bin/cuobjdump"
    with tempfile.TemporaryDirectory() as tmp:
        cubin = Path(tmp) / "k.cubin"
        cubin.write_bytes(compiled.asm["cubin"])
        usage = subprocess.run([str(tool), "-res-usage", str(cubin)], capture_output=True, text=True, check=True).stdout
        sass = subprocess.run([str(tool), "-sass", str(cubin)], capture_output=True, text=True, check=True).stdout
    return {"sass": sass, "registers": int(re.search(r"REG:(\d+)", usage).group(1)),
            "stack": int(re.search(r"STACK:(\d+)", usage).group(1)), "shared": compiled.metadata.shared}


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
        """One timed shape; FLOPs are the cost model's exact count for the row's workload."""
        row = {**self.prov, "implementation": "triton", **row}
        row.setdefault("flops", model_flops(row))
        row.setdefault("kv_dtype", row.get("dtype", ""))  # the cache holds the compute dtype unless a row says
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

    def write(self, out: Path | None = None, stem: str = "", fields: list[str] | None = None):
        """measurements.csv and checks.csv under out (default: the recorder's), named
        STEM-measurements.csv / STEM-checks.csv with a stem; fields: the row columns."""
        out = out or self.out
        out.mkdir(parents=True, exist_ok=True)
        name = (lambda n: f"{stem}-{n}") if stem else (lambda n: n)
        with open(out / name("measurements.csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields or FIELDS, extrasaction="ignore")
            w.writeheader()
            w.writerows(self.rows)
        if self.scaling:  # block-sparse time against dense, by selected share
            with open(out / "block_sparse_scaling.csv", "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(self.scaling[0]))
                w.writeheader()
                w.writerows(self.scaling)
        with open(out / name("checks.csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(self.checks[0]) if self.checks else ["kernel"])
            w.writeheader()
            w.writerows(self.checks)


BF16_BOUND = 2e-2  # relative error of bf16 operands against float32 (METHOD.md: 1e-3 .. 1e-2)


def sm_count(device=None) -> int:
    """Streaming multiprocessors of the GPU (the CPU interpreter: a nominal few programs)."""
    device = torch.device(device or DEV)
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 4


def model_flops(row: dict) -> float:
    """Matmul FLOPs of a measured row, counted by the cost model's own workload (exact pairs)."""
    from attn_dse.cost.family import get_family
    fields = {k: str(v) for k, v in row.items()}
    wl, kw = get_family(row["family"]).workload_for(fields)
    kw.pop("mapping", None)
    kw.pop("kv_dtype", None)  # the cache's format changes bytes, not matmul FLOPs
    return float(wl.cost(scope="core", **kw).flops)


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


def check_then_bench(doc: str, check, bench, grids: dict | None = None) -> int:
    """The main of a kernel module run on its own: `--out DIR`; checks first (written at once,
    so a crash in the bench keeps them), then the bench (on `--grid NAME`'s shapes where the
    module has named grids); exit 1 if a check failed."""
    import argparse
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="validate-out", type=Path)
    if grids:
        ap.add_argument("--grid", choices=sorted(grids), default=next(iter(grids)), help="the bench's shapes")
    args = ap.parse_args()
    rec = Recorder(args.out)
    check(rec, torch.Generator(device="cpu").manual_seed(0))
    rec.write()
    bench(rec, grids[args.grid]) if grids else bench(rec)
    rec.write()
    return 0 if all(c["ok"] for c in rec.checks) else 1
