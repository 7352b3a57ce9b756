"""Fused prefill attention forward (FlashAttention-style online softmax) in Triton.

MHA/GQA/MQA (each program maps its query head to head // group of K/V), causal and
non-causal, sliding window with the tiles outside the window skipped, head dims 64/128/256,
bf16 and fp16. Off-diagonal tiles run without masks; only diagonal/edge tiles pay for them.
Layout: q [B, S, Hq, D], k/v [B, S, Hkv, D] (any strides on B and S, contiguous D).
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from attn_dse.gpu.softmax import finish, online_softmax_step, start_state

from attn_dse.gpu.harness import BF16_BOUND, Recorder, rel_err, rnd, timed
from attn_dse.gpu.reference import attention_ref


@triton.jit
def _tile(acc, l_i, m_i, q, K, V, offs_m, start_n, seq_k, stride_kn, stride_vn, qk_scale,
          HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, MASK: tl.constexpr, CAUSAL: tl.constexpr,
          WINDOW: tl.constexpr, window, q_offset):
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    k = tl.load(K + offs_n[None, :] * stride_kn + offs_d[:, None], mask=offs_n[None, :] < seq_k, other=0.0)
    qk = tl.dot(q, k) * qk_scale
    if MASK:
        keep = offs_n[None, :] < seq_k
        pos = offs_m[:, None] + q_offset
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= pos)
        if WINDOW:
            keep = keep & (pos - offs_n[None, :] < window)
        qk = tl.where(keep, qk, float("-inf"))
    v = tl.load(V + offs_n[:, None] * stride_vn + offs_d[None, :], mask=offs_n[:, None] < seq_k, other=0.0)
    return online_softmax_step(acc, l_i, m_i, qk, v)


@triton.jit
def _prefill_fwd(Q, K, V, O, LSE, stride_qb, stride_qs, stride_qh, stride_kb, stride_ks, stride_kh,
                 stride_vb, stride_vs, stride_vh, stride_ob, stride_os, stride_oh,
                 n_heads, group, seq_q, seq_k, sm_scale, window,
                 HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                 CAUSAL: tl.constexpr, WINDOW: tl.constexpr, EVEN: tl.constexpr, STORE_LSE: tl.constexpr):
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // n_heads).to(tl.int64)  # int64: batch offsets pass 2**31 elements
    h = bh % n_heads
    kvh = h // group
    q_offset = seq_k - seq_q  # queries are the last seq_q positions
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(Q + b * stride_qb + h * stride_qh + offs_m[:, None] * stride_qs + offs_d[None, :],
                mask=offs_m[:, None] < seq_q, other=0.0)
    K += b * stride_kb + kvh * stride_kh
    V += b * stride_vb + kvh * stride_vh
    acc, l_i, m_i = start_state(BLOCK_M, HEAD_DIM)
    qk_scale = sm_scale * 1.4426950408889634
    first_q = pid_m * BLOCK_M + q_offset
    last_q = first_q + BLOCK_M - 1
    hi = seq_k
    if CAUSAL:
        hi = tl.minimum(seq_k, last_q + 1)
    lo = 0
    if WINDOW:
        lo = tl.maximum(0, first_q - window + 1) // BLOCK_N * BLOCK_N
    # tiles wholly visible to every row of the block need no mask
    full_lo = lo
    if WINDOW:
        full_lo = tl.minimum(tl.cdiv(tl.maximum(0, last_q - window + 1), BLOCK_N) * BLOCK_N, hi)
    full_hi = hi
    if CAUSAL:
        full_hi = tl.maximum(tl.minimum(first_q + 1, hi) // BLOCK_N * BLOCK_N, full_lo)
    if not EVEN:
        full_hi = tl.maximum(tl.minimum(full_hi, seq_k // BLOCK_N * BLOCK_N), full_lo)
    for start_n in range(lo, full_lo, BLOCK_N):
        acc, l_i, m_i = _tile(acc, l_i, m_i, q, K, V, offs_m, start_n, seq_k, stride_ks, stride_vs, qk_scale,
                              HEAD_DIM, BLOCK_N, True, CAUSAL, WINDOW, window, q_offset)
    for start_n in range(full_lo, full_hi, BLOCK_N):
        acc, l_i, m_i = _tile(acc, l_i, m_i, q, K, V, offs_m, start_n, seq_k, stride_ks, stride_vs, qk_scale,
                              HEAD_DIM, BLOCK_N, False, CAUSAL, WINDOW, window, q_offset)
    for start_n in range(full_hi, hi, BLOCK_N):
        acc, l_i, m_i = _tile(acc, l_i, m_i, q, K, V, offs_m, start_n, seq_k, stride_ks, stride_vs, qk_scale,
                              HEAD_DIM, BLOCK_N, True, CAUSAL, WINDOW, window, q_offset)
    out, lse = finish(acc, l_i, m_i)
    tl.store(O + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_os + offs_d[None, :],
             out.to(O.dtype.element_ty), mask=offs_m[:, None] < seq_q)
    if STORE_LSE:  # [B, Hq, Sq] contiguous, log2 domain: what the backward recomputes P from
        tl.store(LSE + bh.to(tl.int64) * seq_q + offs_m, lse, mask=offs_m < seq_q)


DEFAULT_CONFIG = {64: (128, 64, 4, 3), 128: (128, 64, 8, 3), 256: (64, 32, 8, 2)}  # BLOCK_M, BLOCK_N, warps, stages


def prefill(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True, window: int | None = None,
            config: tuple | None = None, out: torch.Tensor | None = None,
            lse: torch.Tensor | None = None) -> torch.Tensor:
    """Attention forward for q [B, Sq, Hq, D], k/v [B, Sk, Hkv, D] (Sq <= Sk, queries last).
    lse: a contiguous float32 [B, Hq, Sq] that receives each row's log2-sum-exp of the scores
    times scale * log2(e) (the backward's input), when given."""
    B, Sq, Hq, D = q.shape
    Sk, Hkv = k.shape[1], k.shape[2]
    assert Hq % Hkv == 0 and (config or D in DEFAULT_CONFIG)
    assert q.stride(-1) == 1 and k.stride(-1) == 1 and v.stride(-1) == 1
    block_m, block_n, warps, stages = config or DEFAULT_CONFIG[D]
    o = torch.empty_like(q) if out is None else out
    grid = (triton.cdiv(Sq, block_m), B * Hq)
    if lse is not None:
        assert lse.shape == (B, Hq, Sq) and lse.dtype == torch.float32 and lse.is_contiguous()
    _prefill_fwd[grid](q, k, v, o, lse, q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
                       v.stride(0), v.stride(1), v.stride(2), o.stride(0), o.stride(1), o.stride(2),
                       Hq, Hq // Hkv, Sq, Sk, 1.0 / math.sqrt(D), window or 0,
                       HEAD_DIM=D, BLOCK_M=block_m, BLOCK_N=block_n, CAUSAL=causal, WINDOW=window is not None,
                       EVEN=Sk % block_n == 0, STORE_LSE=lse is not None, num_warps=warps, num_stages=stages)
    return o


def prefill_flops(B, Sq, Sk, Hq, D, causal, window=None) -> float:
    """Matmul FLOPs of the attended pairs (exact, as the model counts them)."""
    from attn_dse.workloads import pairs
    past = Sk - Sq
    if window is not None:
        n = pairs.window(Sq, past, window, causal)
    else:
        n = pairs.dense(Sq, past, causal)
    return float(4 * B * Hq * n * D)


# ---------------------------------------------------------------- check and bench
FAMILY = "prefill"  # the cost model's family these measurements calibrate


def check(rec: Recorder, g: torch.Generator) -> None:
    """Outputs poisoned with NaN, then compared with the float32 reference over ragged shapes."""
    for (B, S, Hq, Hkv, D, causal, window, dtype) in [
            (2, 1000, 8, 2, 128, True, None, torch.bfloat16), (1, 777, 4, 4, 64, False, None, torch.float16),
            (1, 1500, 8, 1, 128, True, 300, torch.bfloat16), (3, 515, 16, 4, 64, True, None, torch.bfloat16),
            (1, 640, 4, 2, 256, False, None, torch.bfloat16)]:
        q, k, v = rnd(B, S, Hq, D, dtype=dtype), rnd(B, S, Hkv, D, dtype=dtype), rnd(B, S, Hkv, D, dtype=dtype)
        out = torch.full_like(q, float("nan"))
        prefill(q, k, v, causal, window, out=out)
        rec.check(f"prefill B{B} S{S} H{Hq}/{Hkv} d{D} causal={causal} win={window} {dtype}",
                  rel_err(out, attention_ref(q, k, v, causal, window)), BF16_BOUND)


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
                median_s=med, p20_s=p20, p80_s=p80,
                kv_bytes=2 * B * S * Hkv * D * 2)
        del q, k, v




def bench(rec: Recorder) -> None:
    measure_prefill(rec, tune_prefill())
