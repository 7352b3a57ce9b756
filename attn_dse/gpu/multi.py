"""Multi-device measurements under torchrun: NCCL collectives 4 KB-1 GB, a tensor-parallel
attention layer (QKV projection, SDPA, output projection, all-reduce) for decode and prefill,
ring context-parallel prefill, and TPLA decode; each numeric path checked against one device.

    torchrun --nproc-per-node N -m attn_dse.gpu.multi --out DIR

writes DIR/collectives.csv and DIR/layers.csv (rank 0), every row with the
provenance of gpu/harness.py. On CPUs (backend gloo) the same functions run at tiny sizes: the
tests check ring attention and the TPLA combine there.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import math
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

SIZES = [4096 * 4**i for i in range(10)] + [2**30]  # 4 KB .. 1 GB
OPS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv")
# the shapes the committed predictions name (validation/data/h200x*-predictions.csv)
TP_LAYER = dict(n_heads=64, n_kv_heads=8, head_dim=128, d_model=8192)
DECODE = dict(batch=16, context=8192)
PREFILL = dict(batch=1, seq=8192)
RING = dict(batch=1, seq=32768)
TPLA = dict(batch=1, context=32768)


def provenance() -> dict:
    if _on_gpu():
        from attn_dse.gpu.harness import provenance as gpu_provenance
        return gpu_provenance()
    return {"device": "cpu", "driver": "", "torch": torch.__version__, "triton": "", "cuda": "",
            "date": datetime.date.today().isoformat()}


def timed(fn, iters: int = 20) -> tuple[float, float, float]:
    """(median, p20, p80) seconds of fn across ranks: barrier, then each call timed (CUDA events
    on GPUs); the slowest rank's time is the collective's."""
    cuda = _on_gpu()
    for _ in range(3):
        fn()
    times = []
    for _ in range(iters):
        dist.barrier()
        if cuda:
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            t = a.elapsed_time(b) / 1e3
        else:
            t0 = time.perf_counter()
            fn()
            t = time.perf_counter() - t0
        worst = torch.tensor([t], dtype=torch.float64, device=_dev())
        dist.all_reduce(worst, op=dist.ReduceOp.MAX)
        times.append(float(worst))
    times.sort()
    return times[len(times) // 2], times[len(times) // 5], times[(4 * len(times)) // 5]


def _on_gpu() -> bool:
    """GPUs are used when the process group runs over NCCL; over gloo (CPU tests, even on a GPU
    machine) every tensor stays on the CPU."""
    return torch.cuda.is_available() and (not dist.is_initialized() or dist.get_backend() == "nccl")


def _dev():
    return torch.device("cuda", torch.cuda.current_device()) if _on_gpu() else torch.device("cpu")


def collective_fn(op: str, nbytes: int, dtype=torch.bfloat16):
    """A closure running one collective on a buffer of nbytes (nccl-tests' size convention)."""
    p, r = dist.get_world_size(), dist.get_rank()
    n = max(nbytes // torch.tensor([], dtype=dtype).element_size() // p * p, p)
    x = torch.ones(n, dtype=dtype, device=_dev())
    if op == "all_reduce":
        return lambda: dist.all_reduce(x)
    if op == "all_gather":
        part = torch.ones(n // p, dtype=dtype, device=_dev())
        return lambda: dist.all_gather_into_tensor(x, part)
    if op == "reduce_scatter":
        part = torch.empty(n // p, dtype=dtype, device=_dev())
        return lambda: dist.reduce_scatter_tensor(part, x)
    if op == "all_to_all":
        y = torch.empty_like(x)
        return lambda: dist.all_to_all_single(y, x)
    peer = r ^ 1  # pairs (0,1), (2,3), ...: one message each way
    y = torch.empty_like(x)

    def send_recv():
        if peer < p:
            reqs = dist.batch_isend_irecv([dist.P2POp(dist.isend, x, peer), dist.P2POp(dist.irecv, y, peer)])
            for q in reqs:
                q.wait()
    return send_recv


def ring_attention(q, k, v, causal: bool = True):
    """Context-parallel attention over the ring: rank r holds query/key chunk r (contiguous) of
    [B, H, S/p, d]; K/V chunks travel round the ring while each step's partial output is merged
    by its log-sum-exp (online softmax across steps). Returns this rank's [B, H, S/p, d] output."""
    p, r = dist.get_world_size(), dist.get_rank()
    scale = 1 / math.sqrt(q.shape[-1])
    out = torch.zeros_like(q, dtype=torch.float32)
    lse = torch.full(q.shape[:-1], -float("inf"), dtype=torch.float32, device=q.device)
    kv = torch.stack([k, v]).contiguous()
    n = q.shape[-2]
    for step in range(p):
        src = (r - step) % p  # whose chunk we hold now
        nxt = torch.empty_like(kv)
        reqs = []
        if step < p - 1:  # pass ours on while computing
            reqs = dist.batch_isend_irecv([dist.P2POp(dist.isend, kv, (r + 1) % p),
                                           dist.P2POp(dist.irecv, nxt, (r - 1) % p)])
        if not causal or src <= r:
            s = (q.float() @ kv[0].float().transpose(-1, -2)) * scale
            if causal and src == r:
                s = s.masked_fill(torch.ones(n, n, dtype=torch.bool, device=q.device).triu(1), -float("inf"))
            m = torch.logsumexp(s, dim=-1)
            o = torch.softmax(s, dim=-1) @ kv[1].float()
            new = torch.logaddexp(lse, m)
            out = out * torch.exp(lse - new).unsqueeze(-1) + o * torch.exp(m - new).unsqueeze(-1)
            lse = new
        for q_ in reqs:
            q_.wait()
        kv = nxt
    return out.to(q.dtype)


def tpla_decode(q_latent, q_rope, latent, rope, w_uv):
    """TPLA (arXiv 2508.15881): this rank holds a 1/p slice of the latent (and of q's absorbed
    part) plus the shared RoPE columns; it attends with its partial scores, up-projects its
    slice by its rows of W_UV, and an all-reduce sums the slices. q_latent [B, H, d_c/p],
    q_rope [B, H, d_r], latent [B, L, d_c/p], rope [B, L, d_r], w_uv [H, d_c/p, d_v]."""
    d = q_latent.shape[-1] * dist.get_world_size() + q_rope.shape[-1]
    s = (torch.einsum("bhc,blc->bhl", q_latent.float(), latent.float())
         + torch.einsum("bhr,blr->bhl", q_rope.float(), rope.float())) / math.sqrt(d)
    o_lat = torch.einsum("bhl,blc->bhc", torch.softmax(s, dim=-1), latent.float())
    o = torch.einsum("bhc,hcv->bhv", o_lat, w_uv.float())
    dist.all_reduce(o)
    return o


def tp_layer(x, w_qkv, w_o, h, h_kv, d, causal, cache_kv=None):
    """One tensor-parallel attention layer on this rank's heads: column-parallel QKV, SDPA,
    row-parallel output projection, all-reduce. x [B, S, E]."""
    B, S, _ = x.shape
    qkv = x @ w_qkv
    q, k, v = qkv.split([h * d, h_kv * d, h_kv * d], dim=-1)
    q = q.view(B, S, h, d).transpose(1, 2)
    k = k.view(B, S, h_kv, d).transpose(1, 2)
    v = v.view(B, S, h_kv, d).transpose(1, 2)
    if cache_kv is not None:
        k, v = torch.cat([cache_kv[0], k], 2), torch.cat([cache_kv[1], v], 2)
    o = F.scaled_dot_product_attention(q, k, v, is_causal=causal and cache_kv is None, enable_gqa=True)
    y = o.transpose(1, 2).reshape(B, S, h * d) @ w_o
    dist.all_reduce(y)
    return y


def run(out: Path, quick: bool = False) -> None:
    p, r = dist.get_world_size(), dist.get_rank()
    dev, dt = _dev(), (torch.bfloat16 if _on_gpu() else torch.float32)
    prov = {**provenance(), "world_size": p, "gpus_per_node": int(os.environ.get("LOCAL_WORLD_SIZE", p)),
            "nodes": p // int(os.environ.get("LOCAL_WORLD_SIZE", p)), "backend": dist.get_backend()}
    coll, layers = [], []
    for op in OPS:
        for n in (SIZES[:3] if quick else SIZES):
            med, p20, p80 = timed(collective_fn(op, n))
            coll.append({**prov, "kind": "collective", "op": op, "bytes": n, "median_s": med, "p20_s": p20, "p80_s": p80})
    H, Hkv, D, E = (TP_LAYER[k] for k in ("n_heads", "n_kv_heads", "head_dim", "d_model"))
    if quick:
        H, Hkv, D, E = 4 * p, p, 16, 64
    h, hk = H // p, max(Hkv // p, 1)
    w_qkv = torch.randn(E, (h + 2 * hk) * D, device=dev, dtype=dt) * 0.02
    w_o = torch.randn(h * D, E, device=dev, dtype=dt) * 0.02
    for phase, shape in (("decode", DECODE), ("prefill", PREFILL)):
        B = shape["batch"]
        S = 1 if phase == "decode" else (64 if quick else shape["seq"])
        x = torch.randn(B, S, E, device=dev, dtype=dt)
        cache = None
        if phase == "decode":
            L = 64 if quick else shape["context"]
            cache = (torch.randn(B, hk, L, D, device=dev, dtype=dt), torch.randn(B, hk, L, D, device=dev, dtype=dt))
        med, p20, p80 = timed(lambda: tp_layer(x, w_qkv, w_o, h, hk, D, True, cache))
        layers.append({**prov, "kind": "tp_layer", "phase": phase, "tp": p, "batch": B, "seq": S,
                       "context": cache[0].shape[2] if cache else S, **TP_LAYER, "median_s": med, "p20_s": p20, "p80_s": p80})
    S = 64 * p if quick else RING["seq"]
    q, k, v = (torch.randn(1, H, S // p, D, device=dev, dtype=dt) for _ in range(3))
    med, p20, p80 = timed(lambda: ring_attention(q, k, v, True), iters=5 if not quick else 3)
    layers.append({**prov, "kind": "ring_prefill", "phase": "prefill", "cp": p, "batch": 1, "seq": S,
                   "n_heads": H, "head_dim": D, "median_s": med, "p20_s": p20, "p80_s": p80})
    L, Hm, dc, dr, dv = (64, 8, 32, 8, 16) if quick else (TPLA["context"], 128, 512, 64, 128)
    args = (torch.randn(1, Hm, dc // p, device=dev, dtype=dt), torch.randn(1, Hm, dr, device=dev, dtype=dt),
            torch.randn(1, L, dc // p, device=dev, dtype=dt), torch.randn(1, L, dr, device=dev, dtype=dt),
            torch.randn(Hm, dc // p, dv, device=dev, dtype=dt))
    med, p20, p80 = timed(lambda: tpla_decode(*args))
    layers.append({**prov, "kind": "tpla_decode", "phase": "decode", "tp": p, "batch": 1, "context": L,
                   "n_heads": Hm, "median_s": med, "p20_s": p20, "p80_s": p80})
    if r == 0:
        out.mkdir(parents=True, exist_ok=True)
        for name, rows in (("collectives.csv", coll), ("layers.csv", layers)):
            keys = list(dict.fromkeys(k for row in rows for k in row))
            with open(out / name, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=keys)
                w.writeheader()
                w.writerows(rows)
        print(f"wrote {len(coll)} collective and {len(layers)} layer rows to {out}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    a = ap.parse_args()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend)
    try:
        run(Path(a.out), a.quick)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
