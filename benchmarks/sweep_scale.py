"""Model throughput per core: each model level at 1e3-1e7 points, scalar `predict`, and the
`attn-dse predict` CLI's wall time, with each run's peak RSS.

Levels: the roofline level (`dataflow_model=False`: the attention kernel under the plain
roofline) and the dataflow model with its mapping search, each for GQA decode and prefill on
H100 (triton knobs). Every (level, size) runs in a subprocess of its own (its own peak RSS),
evaluating the points the way a sweep does: `predict` over CHUNK rows at a time, in a process
whose allocator keeps freed memory (`attn_dse.dse.engine.keep_freed_memory`)
(`attn_dse.dse.evaluate.CHUNK`), batch and context drawn per chunk from a fixed seed. One
warm-up chunk runs before the clock starts (first-use imports, knob and YAML loading).
Throughput is points per CPU second of the one-threaded process (per core), wall beside it.

Run: python3 benchmarks/sweep_scale.py            (writes benchmarks/results/sweep_scale-DATE.csv)
     python3 benchmarks/sweep_scale.py --max 1e5  (quick look)
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LEVELS = {"roofline": False, "dataflow": True}  # dataflow_model=
PHASES = ("decode", "prefill")
CLI = ["predict", "h100", "--variant", "gqa", "--param", "n_heads=32", "--param", "n_kv_heads=8",
       "--phase", "decode", "--batch", "16", "--context", "8192"]


def _workload():
    from attn_dse import attention, load_hardware
    return load_hardware("h100"), attention("gqa", n_heads=32, n_kv_heads=8, head_dim=128)


def _chunk_args(phase: str, rng, n: int) -> dict:
    import numpy as np
    batch = rng.integers(1, 257, n).astype(np.float64)
    length = rng.integers(1024, 131073, n).astype(np.float64)
    return dict(batch=batch, seq=1, context=length) if phase == "decode" else dict(batch=batch, seq=length)


def child_vector(level: str, phase: str, points: int) -> dict:
    """One (level, phase, size) run: points through predict in CHUNK rows at a time."""
    import numpy as np
    from attn_dse import predict
    from attn_dse.dse.engine import keep_freed_memory
    from attn_dse.dse.evaluate import CHUNK
    keep_freed_memory()  # as every sweep engine's process does
    hw, wl = _workload()
    rng = np.random.default_rng(0)
    predict(hw, wl, phase, dataflow_model=LEVELS[level], kernel="triton", **_chunk_args(phase, rng, min(points, CHUNK)))
    cpu = wall = 0.0
    for lo in range(0, points, CHUNK):
        args = _chunk_args(phase, rng, min(CHUNK, points - lo))  # drawn outside the clock
        c0, w0 = time.process_time(), time.perf_counter()
        p = predict(hw, wl, phase, dataflow_model=LEVELS[level], kernel="triton", **args)
        cpu, wall = cpu + time.process_time() - c0, wall + time.perf_counter() - w0
        assert np.all(np.isfinite(p.latency_s))
    return {"cpu_s": cpu, "wall_s": wall}


def child_scalar(calls: int = 300, repeats: int = 7) -> dict:
    """Scalar predict (GQA decode on H100), a different context each call: CPU time per call,
    the best of `repeats` rounds."""
    from attn_dse import predict
    hw, wl = _workload()
    contexts = [1024.0 * (1 + i % 128) for i in range(calls)]
    predict(hw, wl, "decode", 16, seq=1, context=8192)
    best_cpu = best_wall = float("inf")
    for _ in range(repeats):
        cpu, wall = time.process_time(), time.perf_counter()
        for c in contexts:
            predict(hw, wl, "decode", 16, seq=1, context=c)
        best_cpu = min(best_cpu, (time.process_time() - cpu) / calls)
        best_wall = min(best_wall, (time.perf_counter() - wall) / calls)
    return {"cpu_s": best_cpu, "wall_s": best_wall}


def run_child(*args: str) -> dict:
    """Run this file as a child measuring one thing; its result and its own peak RSS."""
    out = subprocess.run([sys.executable, __file__, "--child", *args], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def cli_wall(runs: int) -> list[float]:
    """Wall seconds of `python3 -m attn_dse.cli predict ...`, one process per run."""
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "attn_dse.cli", *CLI], cwd=ROOT, check=True, capture_output=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
        times.append(time.perf_counter() - t)
    return times


def python_floor(runs: int) -> float:
    """Median wall of `python3 -c 'import numpy'`: what any numpy CLI pays before its own code."""
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import numpy"], check=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max", type=float, default=1e7, help="largest size (powers of ten from 1e3)")
    ap.add_argument("--cli-runs", type=int, default=11)
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        result = child_scalar() if a.child[0] == "scalar" else child_vector(a.child[0], a.child[1], int(a.child[2]))
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    # an installed package has its bytecode compiled; this checkout may not (PYTHONDONTWRITEBYTECODE)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "attn_dse")], check=True,
                   capture_output=True)
    date = datetime.date.today().isoformat()
    machine = f"{os.cpu_count()} cores, {_cpu_model()}, Python {platform.python_version()}"
    rows = []

    def add(what, level, phase, points, r, note=""):
        per_s = points / r["cpu_s"] if points else None
        rows.append({"date": date, "machine": machine, "what": what, "level": level, "phase": phase,
                     "points": points, "cpu_s": f"{r['cpu_s']:.6g}", "wall_s": f"{r['wall_s']:.6g}",
                     "points_per_cpu_s": f"{per_s:.4g}" if per_s else "",
                     "points_per_wall_s": f"{points / r['wall_s']:.4g}" if points else "",
                     "peak_rss_mb": f"{r['peak_rss_mb']:.0f}" if "peak_rss_mb" in r else "", "note": note})
        last = rows[-1]
        print(f"{what:8} {level:9} {phase:8} {points:>11,} {last['points_per_cpu_s']:>12} /cpu-s "
              f"{last['points_per_wall_s']:>12} /wall-s  cpu {r['cpu_s']:.4g} s  rss {last['peak_rss_mb']:>5} MB {note}",
              flush=True)

    print(f"{date}, {machine}")
    sizes = [10 ** k for k in range(3, 8) if 10 ** k <= a.max]
    for level in LEVELS:
        for phase in PHASES:
            for n in sizes:
                add("vector", level, phase, n, run_child(level, phase, str(n)))
    r = run_child("scalar")
    add("scalar", "dataflow", "decode", 0, r, f"{r['cpu_s'] * 1e3:.3f} ms per call (CPU), "
                                              f"{r['wall_s'] * 1e3:.3f} ms wall")
    floor = python_floor(a.cli_runs)
    walls = cli_wall(a.cli_runs)
    median = statistics.median(walls)
    rows.append({"date": date, "machine": machine, "what": "cli", "level": "auto kernel", "phase": "decode",
                 "points": 1, "cpu_s": "", "wall_s": f"{median:.4g}", "points_per_cpu_s": "", "points_per_wall_s": "",
                 "peak_rss_mb": "", "note": f"median of {a.cli_runs} (min {min(walls):.3f} s); "
                                            f"python3 -c 'import numpy' median {floor:.3f} s"})
    print(f"cli      attn-dse {' '.join(CLI)}: median {median:.3f} s wall (min {min(walls):.3f}; "
          f"import numpy alone {floor:.3f} s)")
    out = ROOT / "benchmarks" / "results" / f"sweep_scale-{date}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
