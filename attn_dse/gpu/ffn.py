"""The MLP of a step, measured: dense gated FFNs (x @ W_gate|up -> silu(g) * u -> @ W_down) and a
mixture-of-experts grouped GEMM (tokens sorted by expert, the same three steps per expert), in
torch, so the step model (`cost/ffn.py`) can be validated (`validation/ffn.py`).

    python3 -m attn_dse.gpu.ffn --out DIR           (on a CUDA GPU: writes DIR/ffn-measurements.csv
                                                     and DIR/ffn-checks.csv)
    python3 -m attn_dse.gpu.ffn --out DIR --cpu-smoke   (tiny shapes on the CPU: the path, not the numbers)

Grouped GEMM: `torch._grouped_mm` (one kernel over all experts, offsets per expert) where the
build has it, else one matmul per expert (`implementation` says which). Routing: each token
takes top_k distinct experts; with `imbalance` > 1 the first expert draws that many times its
fair share (the row records the realised busiest expert's rows and how many experts got
tokens). Every implementation is checked against a float32 reference before it is timed.
Timing: the harness's cold-L2 CUDA-graph timer on a GPU, a plain wall-clock median on the CPU.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

BOUND = 2e-2  # bf16 operands against float32 (the harness's BF16_BOUND)
FIELDS = ["device", "driver", "torch", "triton", "cuda", "date", "implementation", "kind", "tokens", "d_model",
          "width", "n_experts", "top_k", "imbalance", "pairs", "active_experts", "max_expert_rows", "dtype",
          "median_s", "p20_s", "p80_s", "flops", "weight_bytes", "tflop_per_s"]

# (d_model, intermediate): Llama-3-8B, Llama-3-70B at TP 8 (28672 / 8), Qwen3-8B
DENSE_SHAPES = ((4096, 14336), (8192, 3584), (4096, 12288))
DENSE_TOKENS = (1, 8, 32, 128, 512, 2048, 8192)
# (d_model, expert width, local experts, top_k): DeepSeek-V3 at EP 8 and EP 1, Qwen3-30B-A3B, Mixtral-8x7B
MOE_SHAPES = ((7168, 2048, 32, 8), (7168, 2048, 256, 8), (2048, 768, 128, 8), (4096, 14336, 8, 2))
MOE_TOKENS = (1, 16, 128, 1024, 4096)
IMBALANCE = (1.0, 1.5)


# ------------------------------------------------------------------ the computation
def dense_ffn(x, w_gate_up, w_down):
    """x [T, E]; w_gate_up [E, 2I] (gate then up); w_down [I, E]."""
    gu = x @ w_gate_up
    g, u = gu.chunk(2, dim=-1)
    return (F.silu(g) * u) @ w_down


def route(tokens: int, n_experts: int, top_k: int, imbalance: float, rng: np.random.Generator) -> np.ndarray:
    """[tokens, top_k] distinct experts per token. Expert 0 is among a token's picks with
    probability min(imbalance * top_k / n_experts, 1), so it gets `imbalance` x the mean rows;
    the other picks are uniform over the other experts."""
    q = min(imbalance * top_k / n_experts, 1.0)
    out = np.empty((tokens, top_k), dtype=np.int64)
    for t in range(tokens):
        if rng.random() < q:
            out[t] = np.concatenate([[0], 1 + rng.choice(n_experts - 1, size=top_k - 1, replace=False)])
        else:
            out[t] = 1 + rng.choice(n_experts - 1, size=top_k, replace=False) if n_experts > top_k else \
                rng.permutation(n_experts)[:top_k]
    return out


def grouped_inputs(x, experts: np.ndarray, n_experts: int):
    """Token rows repeated per (token, expert) pair, sorted by expert, and rows per expert."""
    flat = torch.as_tensor(experts.reshape(-1), device=x.device)
    order = torch.argsort(flat, stable=True)
    rows = x[torch.div(order, experts.shape[1], rounding_mode="floor")]
    counts = torch.bincount(flat, minlength=n_experts)
    return rows, counts


def moe_loop(rows, counts, w_gate_up, w_down):
    """One matmul per expert with tokens (the fallback grouped GEMM). counts: a list (a tensor
    is read back to the host, which a CUDA graph cannot capture)."""
    counts = counts.tolist() if torch.is_tensor(counts) else counts
    out, start = torch.empty(rows.shape[0], w_down.shape[-1], device=rows.device, dtype=rows.dtype), 0
    for e, n in enumerate(counts):
        if n:
            out[start:start + n] = dense_ffn(rows[start:start + n], w_gate_up[e], w_down[e])
            start += n
    return out


def moe_grouped_mm(rows, counts, w_gate_up, w_down):
    """torch._grouped_mm over all experts at once (offsets = cumulative rows per expert)."""
    offs = torch.cumsum(counts, 0).to(torch.int32)
    gu = torch._grouped_mm(rows, w_gate_up, offs=offs)
    g, u = gu.chunk(2, dim=-1)
    return torch._grouped_mm((F.silu(g) * u).contiguous(), w_down, offs=offs)


def moe_reference(rows, counts, w_gate_up, w_down):
    return moe_loop(rows.float(), counts, w_gate_up.float(), w_down.float())


def grouped_impl(device) -> tuple[str, object]:
    """The one-kernel grouped GEMM where this torch build runs it on this device, else the loop."""
    if device.type == "cuda" and hasattr(torch, "_grouped_mm"):
        try:
            x = torch.randn(48, 64, device=device, dtype=torch.bfloat16)
            w1, w2 = (torch.randn(2, 64, 128, device=device, dtype=torch.bfloat16) / 8,
                      torch.randn(2, 64, 64, device=device, dtype=torch.bfloat16) / 8)
            counts = torch.tensor([16, 32], device=device)
            err = rel_err(moe_grouped_mm(x, counts, w1, w2), moe_reference(x, counts, w1.float(), w2.float()))
            if err <= BOUND:
                return "torch_grouped_mm", moe_grouped_mm
            print(f"torch._grouped_mm off by {err:.2e} here; timing one matmul per expert", flush=True)
        except (RuntimeError, TypeError) as exc:
            print(f"torch._grouped_mm not usable here ({exc}); timing one matmul per expert", flush=True)
    return "torch_loop", moe_loop


# ------------------------------------------------------------------ checks, timing, rows
def provenance(device) -> dict:
    out = {"device": platform.processor() or "cpu", "driver": "", "torch": torch.__version__, "triton": "",
           "cuda": torch.version.cuda or "", "date": datetime.date.today().isoformat()}
    if device.type == "cuda":
        from attn_dse.gpu.harness import provenance as gpu_provenance
        out = gpu_provenance()
    return out


def timer(device):
    if device.type == "cuda":
        from attn_dse.gpu.harness import timed
        return timed

    def wall(fn, replays: int = 5):
        fn()
        t = []
        for _ in range(replays):
            start = time.perf_counter()
            fn()
            t.append(time.perf_counter() - start)
        p20, p50, p80 = np.quantile(t, [0.2, 0.5, 0.8])
        return float(p50), float(p20), float(p80)
    return wall


def rel_err(out, ref) -> float:
    out = out.float()
    return float("nan") if torch.isnan(out).any() else float((out - ref).norm() / ref.norm())


def check(device, dtype, impl, fn, g) -> list[dict]:
    """Each implementation against the float32 reference on small ragged shapes."""
    checks = []
    x = torch.randn(37, 256, device=device, generator=g).to(dtype)
    w1, w2 = torch.randn(256, 2 * 384, device=device, generator=g) / 16, torch.randn(384, 256, device=device, generator=g) / 20
    err = rel_err(dense_ffn(x, w1.to(dtype), w2.to(dtype)), dense_ffn(x.float(), w1, w2))
    checks.append({"kernel": "dense_ffn T37 E256 I384", "rel_err": err, "bound": BOUND, "ok": err <= BOUND})
    rng = np.random.default_rng(0)
    experts = route(29, 8, 2, 1.5, rng)
    rows, counts = grouped_inputs(x[:29], experts, 8)
    w1e, w2e = torch.randn(8, 256, 2 * 128, device=device, generator=g) / 16, torch.randn(8, 128, 256, device=device, generator=g) / 11
    out = fn(rows, counts, w1e.to(dtype), w2e.to(dtype))
    err = rel_err(out, moe_reference(rows, counts, w1e, w2e))
    checks.append({"kernel": f"moe {impl} T29 E256 I128 8 experts top2", "rel_err": err, "bound": BOUND, "ok": err <= BOUND})
    for c in checks:
        print(f"check {c['kernel']}: rel err {c['rel_err']:.2e} (bound {c['bound']:g}) {'ok' if c['ok'] else 'FAIL'}",
              flush=True)
    return checks


def bench(device, dtype, dense_shapes, dense_tokens, moe_shapes, moe_tokens, imbalances) -> list[dict]:
    impl, fn = grouped_impl(device)
    timed = timer(device)
    b = torch.finfo(dtype).bits // 8
    rows_out = []
    rng = np.random.default_rng(1)
    for E, I in dense_shapes:
        w1 = torch.randn(E, 2 * I, device=device, dtype=dtype) / E**0.5
        w2 = torch.randn(I, E, device=device, dtype=dtype) / I**0.5
        for T in dense_tokens:
            x = torch.randn(T, E, device=device, dtype=dtype)
            med, p20, p80 = timed(lambda: dense_ffn(x, w1, w2))
            rows_out.append(_row("torch", "dense_ffn", T, E, I, 0, 0, 1.0, T, 1, T, dtype, med, p20, p80,
                                 flops=2 * T * E * 3 * I, weight_bytes=3 * E * I * b))
        del w1, w2
    for E, I, N, k in moe_shapes:
        w1 = torch.randn(N, E, 2 * I, device=device, dtype=dtype) / E**0.5
        w2 = torch.randn(N, I, E, device=device, dtype=dtype) / I**0.5
        for T in moe_tokens:
            for imb in imbalances:
                experts = route(T, N, k, imb, rng)
                x = torch.randn(T, E, device=device, dtype=dtype)
                rows, counts = grouped_inputs(x, experts, N)
                c = counts.tolist()
                arg = counts if impl == "torch_grouped_mm" else c  # the loop takes host-side counts
                used = impl
                try:
                    med, p20, p80 = timed(lambda: fn(rows, arg, w1, w2))
                except RuntimeError as exc:  # a grouping the one-kernel path refuses: time the loop
                    print(f"{impl} failed at T={T} N={N} ({str(exc)[:80]}); timing one matmul per expert", flush=True)
                    used = "torch_loop"
                    med, p20, p80 = timed(lambda: moe_loop(rows, c, w1, w2))
                active = sum(1 for n in c if n)
                realised = max(c) / (T * k / N)
                rows_out.append(_row(used, "moe_ffn", T, E, I, N, k, realised, T * k, active, max(c), dtype, med,
                                     p20, p80, flops=2 * T * k * E * 3 * I, weight_bytes=active * 3 * E * I * b))
        del w1, w2
    return rows_out


def _row(impl, kind, T, E, I, N, k, imb, pairs, active, max_rows, dtype, med, p20, p80, flops, weight_bytes):
    row = {"implementation": impl, "kind": kind, "tokens": T, "d_model": E, "width": I, "n_experts": N, "top_k": k,
           "imbalance": round(float(imb), 4), "pairs": pairs, "active_experts": active, "max_expert_rows": max_rows,
           "dtype": str(dtype).replace("torch.bfloat16", "bf16").replace("torch.float16", "fp16"),
           "median_s": med, "p20_s": p20, "p80_s": p80, "flops": flops, "weight_bytes": weight_bytes,
           "tflop_per_s": flops / med / 1e12}
    print(f"{kind:9s} {impl:16s} T={T:<5} E={E:<5} I={I:<6} N={N:<3} k={k} imb={row['imbalance']:<5} "
          f"-> {med * 1e6:10.1f} us {row['tflop_per_s']:7.1f} TF/s", flush=True)
    return row


def main(out: Path, cpu_smoke: bool = False) -> int:
    start = time.time()
    if cpu_smoke:
        device, dtype = torch.device("cpu"), torch.bfloat16
        shapes = dict(dense_shapes=((64, 96),), dense_tokens=(1, 8), moe_shapes=((64, 32, 4, 2),), moe_tokens=(1, 8),
                      imbalances=(1.0, 1.5))
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA GPU: run on a GPU machine, or pass --cpu-smoke for the tiny CPU path")
        device, dtype = torch.device("cuda"), torch.bfloat16
        shapes = dict(dense_shapes=DENSE_SHAPES, dense_tokens=DENSE_TOKENS, moe_shapes=MOE_SHAPES,
                      moe_tokens=MOE_TOKENS, imbalances=IMBALANCE)
    prov = provenance(device)
    print(f"{platform.node()}: {prov}", flush=True)
    g = torch.Generator(device=device).manual_seed(0)
    impl, fn = grouped_impl(device)
    checks = [{**prov, **c} for c in check(device, dtype, impl, fn, g)]
    rows = [{**prov, **r} for r in bench(device, dtype, **shapes)]
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "ffn-measurements.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    with open(out / "ffn-checks.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(checks[0]))
        w.writeheader()
        w.writerows(checks)
    print(f"{len(rows)} shapes measured, {sum(c['ok'] for c in checks)}/{len(checks)} checks ok, "
          f"{time.time() - start:.0f} s", flush=True)
    return 0 if all(c["ok"] for c in checks) else 1


def cli() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="ffn-out", type=Path, help="directory for the CSVs")
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny shapes on the CPU (checks the path, not the numbers)")
    args = ap.parse_args()
    return main(args.out, args.cpu_smoke)


if __name__ == "__main__":
    sys.exit(cli())
