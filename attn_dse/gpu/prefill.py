"""Fused prefill attention forward (FlashAttention-style online softmax) in Triton.

MHA/GQA/MQA (each program maps its query head to head // group of K/V), causal and
non-causal, sliding window with the tiles outside the window skipped, head dims 64/128/256,
bf16 and fp16. Off-diagonal tiles run without masks; only diagonal/edge tiles pay for them.
Layout: q [B, S, Hq, D], k/v [B, S, Hkv, D] (any strides on B and S, contiguous D).

Three kernels. `_prefill_fwd` takes every case. On Hopper at head dim 128 `prefill_gluon`'s
(FlashAttention-3's structure, written by hand in Gluon) is the fastest and `auto` picks it.
`_prefill_ws` (Hopper, head dims 128 and 256, contiguous tensors, no window: `ws_refusal`) is
warp-specialized by Triton's Hopper pass (`tl.range(warp_specialize=True)`
at 4 warps): a producer warpgroup issues the TMA loads of Q, K and V, and two consumer
warpgroups of BLOCK_M / 2 rows each run QK^T, softmax and PV, so one's softmax runs while the
other's matmuls do. The pass takes a single loop (a second loop, a peeled diagonal tile or a
branch in the loop left the kernel unspecialized or failed to compile, Triton 3.6), so a causal
kernel masks every tile: one integer compare per score, each row's last visible key folding the
causal bound and the sequence end together. Query blocks run longest first.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from attn_dse.gpu.softmax import finish, online_softmax_step, softmax_rescale, start_state

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


@triton.jit
def _ws_tile(acc, l_i, m_i, q, k_desc, v_desc, row, col, start_n, last_key, qk_scale,
             BLOCK_N: tl.constexpr, MASK: tl.constexpr):
    """One key tile into the running (acc, l, m); last_key [M]: the last key each row sees."""
    k = k_desc.load([row + start_n, col])
    qk = tl.dot(q, k.T)
    if MASK:
        offs_n = start_n + tl.arange(0, BLOCK_N)
        qk = tl.where(offs_n[None, :] <= last_key[:, None], qk, float("-inf"))
    p, acc, l_i, m_i = softmax_rescale(acc, l_i, m_i, qk, qk_scale)
    v = v_desc.load([row + start_n, col])
    return tl.dot(p.to(v.dtype), v, acc), l_i, m_i


@triton.jit
def _prefill_ws(Q, K, V, O, LSE, B, n_heads, group, n_kv, seq_q, seq_k, sm_scale,
                HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr,
                EVEN_N: tl.constexpr, EVEN_M: tl.constexpr, STORE_LSE: tl.constexpr):
    """q/o viewed as [B * Sq, Hq * D], k/v as [B * Sk, Hkv * D]. Every row sees key 0 in its
    first tile, which softmax_rescale needs."""
    pid_m = tl.num_programs(0) - 1 - tl.program_id(0)  # causal: the longest rows first
    bh = tl.program_id(1)
    b = bh // n_heads
    h = bh % n_heads
    q_desc = tl.make_tensor_descriptor(Q, [B * seq_q, n_heads * HEAD_DIM], [n_heads * HEAD_DIM, 1], [BLOCK_M, HEAD_DIM])
    k_desc = tl.make_tensor_descriptor(K, [B * seq_k, n_kv * HEAD_DIM], [n_kv * HEAD_DIM, 1], [BLOCK_N, HEAD_DIM])
    v_desc = tl.make_tensor_descriptor(V, [B * seq_k, n_kv * HEAD_DIM], [n_kv * HEAD_DIM, 1], [BLOCK_N, HEAD_DIM])
    first_m = pid_m * BLOCK_M
    q = q_desc.load([b * seq_q + first_m, h * HEAD_DIM])
    offs_m = first_m + tl.arange(0, BLOCK_M)
    past = seq_k - seq_q  # queries are the last seq_q positions
    last_key = tl.full([BLOCK_M], seq_k - 1, tl.int32)  # keys of the next batch lie past it
    hi = seq_k
    if CAUSAL:
        last_key = tl.minimum(offs_m + past, seq_k - 1)
        hi = tl.minimum(seq_k, first_m + past + BLOCK_M)
    acc, l_i, m_i = start_state(BLOCK_M, HEAD_DIM)
    qk_scale = sm_scale * 1.4426950408889634
    for start_n in tl.range(0, hi, BLOCK_N, warp_specialize=True):
        acc, l_i, m_i = _ws_tile(acc, l_i, m_i, q, k_desc, v_desc, b * seq_k, (h // group) * HEAD_DIM, start_n,
                                 last_key, qk_scale, BLOCK_N, CAUSAL or not EVEN_N)
    out = (acc / l_i[:, None]).to(Q.dtype.element_ty)
    if EVEN_M:
        o_desc = tl.make_tensor_descriptor(O, [B * seq_q, n_heads * HEAD_DIM], [n_heads * HEAD_DIM, 1],
                                           [BLOCK_M, HEAD_DIM])
        o_desc.store([b * seq_q + first_m, h * HEAD_DIM], out)
    else:  # the block's last rows belong to the next batch
        offs_d = tl.arange(0, HEAD_DIM)
        tl.store(O + ((b * seq_q + offs_m[:, None]).to(tl.int64) * n_heads + h) * HEAD_DIM + offs_d[None, :], out,
                 mask=offs_m[:, None] < seq_q)
    if STORE_LSE:
        tl.store(LSE + bh.to(tl.int64) * seq_q + offs_m, m_i + tl.math.log2(l_i), mask=offs_m < seq_q)


DEFAULT_CONFIG = {64: (128, 64, 4, 3), 128: (128, 64, 8, 3), 256: (64, 32, 8, 2)}  # BLOCK_M, BLOCK_N, warps, stages
# the warp-specialized kernel's, by head dim: fastest of 3-4 each at 1k-16k on an H200
# (docs/device-logs/h200-prefill-ws-2026-12-03.log); at d 64 it lost to _prefill_fwd causal
WS_CONFIG = {128: (128, 128, 4, 2), 256: (128, 32, 4, 2)}


def _scratch_allocator() -> None:
    """Device-side TMA descriptors need a global scratch buffer at launch: torch's, unless the
    caller set an allocator of their own."""
    from triton.runtime import _allocation
    current = getattr(_allocation, "_allocator", None)
    current = current.get() if hasattr(current, "get") else current
    if current is None or isinstance(current, _allocation.NullAllocator):
        triton.set_allocator(lambda size, align, stream: torch.empty(size, dtype=torch.int8, device="cuda"))


def ws_refusal(q, k, v, window, out=None) -> str | None:
    """Why _prefill_ws cannot take these inputs (None: it can): it needs a Hopper GPU (the
    warp-specialization pass and TMA; Triton's interpreter on the CPU runs it too), contiguous
    tensors (TMA's 2-D views), a WS_CONFIG head dim and no window."""
    if q.is_cuda and torch.cuda.get_device_capability(q.device)[0] != 9:
        return "the warp-specialized prefill is built for Hopper (sm_90) only"
    if window is not None or q.shape[-1] not in WS_CONFIG:
        return f"the warp-specialized prefill takes head dims {sorted(WS_CONFIG)} without a window"
    if not all(t.is_contiguous() for t in (q, k, v) + (() if out is None else (out,))):
        return "the warp-specialized prefill takes contiguous q, k, v and out"
    return None


def _gluon_refusal(q, k, v, window, out) -> str | None:
    from attn_dse.gpu.prefill_gluon import refusal
    return refusal(q, k, v, window, out)


KERNELS = ("auto", "gluon", "ws", "tiles")


def prefill(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True, window: int | None = None,
            config: tuple | None = None, out: torch.Tensor | None = None,
            lse: torch.Tensor | None = None, kernel: str = "auto") -> torch.Tensor:
    """Attention forward for q [B, Sq, Hq, D], k/v [B, Sk, Hkv, D] (Sq <= Sk, queries last).
    lse: a contiguous float32 [B, Hq, Sq] that receives each row's log2-sum-exp of the scores
    times scale * log2(e) (the backward's input), when given. kernel: "gluon" (prefill_gluon's),
    "ws" (the warp-specialized Triton kernel), "tiles" (_prefill_fwd), or "auto": the first of
    those that takes the shape, "tiles" when a config is given. config: the chosen kernel's
    ((BLOCK_N, stages, ping-pong) for "gluon", (BLOCK_M, BLOCK_N, warps, stages) for the others).
    A kernel asked for by name that cannot take the inputs raises ValueError with the reason."""
    B, Sq, Hq, D = q.shape
    Sk, Hkv = k.shape[1], k.shape[2]
    if kernel not in KERNELS:
        raise ValueError(f"kernel {kernel!r}: expected one of {', '.join(KERNELS)}")
    assert Hq % Hkv == 0
    assert q.stride(-1) == 1 and k.stride(-1) == 1 and v.stride(-1) == 1
    if lse is not None:
        assert lse.shape == (B, Hq, Sq) and lse.dtype == torch.float32 and lse.is_contiguous()
    o = torch.empty_like(q) if out is None else out
    if kernel == "auto":
        takes = (name for name, why in (("gluon", _gluon_refusal), ("ws", ws_refusal))
                 if why(q, k, v, window, out) is None)
        kernel = "tiles" if config is not None else next(takes, "tiles")
    if kernel == "gluon":
        from attn_dse.gpu.prefill_gluon import prefill_wgmma
        return prefill_wgmma(q, k, v, causal, out=o, lse=lse, config=config, window=window)
    if kernel == "ws":
        refusal = ws_refusal(q, k, v, window, out)
        if refusal:
            raise ValueError(refusal)
        block_m, block_n, warps, stages = config or WS_CONFIG[D]
        _scratch_allocator()
        _prefill_ws[(triton.cdiv(Sq, block_m), B * Hq)](
            q, k, v, o, lse, B, Hq, Hq // Hkv, Hkv, Sq, Sk, 1.0 / math.sqrt(D),
            HEAD_DIM=D, BLOCK_M=block_m, BLOCK_N=block_n, CAUSAL=causal, EVEN_N=Sk % block_n == 0,
            EVEN_M=Sq % block_m == 0, STORE_LSE=lse is not None, num_warps=warps, num_stages=stages)
        return o
    assert config or D in DEFAULT_CONFIG
    block_m, block_n, warps, stages = config or DEFAULT_CONFIG[D]
    grid = (triton.cdiv(Sq, block_m), B * Hq)
    _prefill_fwd[grid](q, k, v, o, lse, q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
                       v.stride(0), v.stride(1), v.stride(2), o.stride(0), o.stride(1), o.stride(2),
                       Hq, Hq // Hkv, Sq, Sk, 1.0 / math.sqrt(D), window or 0,
                       HEAD_DIM=D, BLOCK_M=block_m, BLOCK_N=block_n, CAUSAL=causal, WINDOW=window is not None,
                       EVEN=Sk % block_n == 0, STORE_LSE=lse is not None, num_warps=warps, num_stages=stages)
    return o


def ws_sm90_build(D: int = 128, causal: bool = False) -> dict:
    """The warp-specialized kernel at its WS_CONFIG tiles compiled for sm_90 without a GPU
    (harness.sm90_build): SASS, registers, stack, shared memory."""
    from triton.compiler.compiler import ASTSource

    from attn_dse.gpu.harness import sm90_build
    fn = _prefill_ws
    consts = ("HEAD_DIM", "BLOCK_M", "BLOCK_N", "CAUSAL", "EVEN_N", "EVEN_M", "STORE_LSE")
    sig = {n: "constexpr" if n in consts else "*bf16" if n in "QKVO" else "*fp32" if n == "LSE"
           else "fp32" if n == "sm_scale" else "i32" for n in fn.arg_names}
    attrs = {(fn.arg_names.index(n),): [["tt.divisibility", 16]] for n, t in sig.items() if t.startswith("*")}
    block_m, block_n, warps, stages = WS_CONFIG[D]
    src = ASTSource(fn=fn, signature=sig, attrs=attrs, constexprs=dict(
        HEAD_DIM=D, BLOCK_M=block_m, BLOCK_N=block_n, CAUSAL=causal, EVEN_N=True, EVEN_M=True, STORE_LSE=True))
    return sm90_build(src, warps, stages)


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
    """Outputs poisoned with NaN, then compared with the float32 reference over ragged shapes,
    by every kernel that takes the shape; their log2-sum-exp (the backward's input) against
    _prefill_fwd's."""
    for (B, Sq, Sk, Hq, Hkv, D, causal, window, dtype) in [
            (2, 1000, 1000, 8, 2, 128, True, None, torch.bfloat16), (1, 777, 777, 4, 4, 64, False, None, torch.float16),
            (1, 1500, 1500, 8, 1, 128, True, 300, torch.bfloat16), (3, 515, 515, 16, 4, 64, True, None, torch.bfloat16),
            (1, 640, 640, 4, 2, 256, False, None, torch.bfloat16), (2, 1024, 1024, 8, 8, 128, False, None, torch.float16),
            (1, 700, 1500, 8, 1, 128, True, None, torch.bfloat16), (3, 515, 515, 16, 4, 128, False, None, torch.bfloat16),
            (2, 300, 1000, 4, 2, 256, True, None, torch.bfloat16)]:
        q, k, v = rnd(B, Sq, Hq, D, dtype=dtype), rnd(B, Sk, Hkv, D, dtype=dtype), rnd(B, Sk, Hkv, D, dtype=dtype)
        ref = attention_ref(q, k, v, causal, window)
        lse = {}
        takes = {"tiles": True, "ws": ws_refusal(q, k, v, window) is None,
                 "gluon": _gluon_refusal(q, k, v, window, None) is None}
        for kernel in [name for name, ok in takes.items() if ok]:
            out = torch.full_like(q, float("nan"))
            lse[kernel] = torch.full((B, Hq, Sq), float("nan"), device=q.device)
            prefill(q, k, v, causal, window, out=out, lse=lse[kernel], kernel=kernel)
            rec.check(f"prefill {kernel} B{B} Sq{Sq} Sk{Sk} H{Hq}/{Hkv} d{D} causal={causal} win={window} {dtype}",
                      rel_err(out, ref), BF16_BOUND)
        for kernel in set(lse) - {"tiles"}:
            rec.check(f"prefill {kernel} lse B{B} Sq{Sq} Sk{Sk} d{D} causal={causal} (max abs diff)",
                      (lse[kernel] - lse["tiles"]).abs().max().item(), 1e-2)


PREFILL_CONFIGS = [(128, 64, 8, 3), (128, 128, 8, 3), (128, 64, 4, 3), (64, 64, 4, 4), (128, 128, 8, 2),
                   (128, 32, 4, 4), (64, 128, 4, 3)]


def tune_prefill(D=128, S=16384, H=32) -> dict:
    q, k, v = rnd(1, S, H, D), rnd(1, S, H, D), rnd(1, S, H, D)
    best = {}
    for causal in (False, True):
        times = {}
        for cfg in PREFILL_CONFIGS:
            try:
                times[cfg] = timed(lambda: prefill(q, k, v, causal, config=cfg, kernel="tiles"))[0]
            except Exception as exc:  # noqa: BLE001 (a config may not fit; skip it)
                print(f"config {cfg} failed: {type(exc).__name__}", flush=True)
        best[causal] = min(times, key=times.get)
        flops = prefill_flops(1, S, S, H, D, causal)
        print("tune prefill causal=%s: " % causal + ", ".join(f"{c}:{flops / t / 1e12:.0f}" for c, t in times.items()),
              flush=True)
    return best



def _record(rec, kernel, config, B, S, Hq, Hkv, D, causal, window, dtype) -> None:
    q, k, v = rnd(B, S, Hq, D, dtype=dtype), rnd(B, S, Hkv, D, dtype=dtype), rnd(B, S, Hkv, D, dtype=dtype)
    med, p20, p80 = timed(lambda: prefill(q, k, v, causal, window, config=config, kernel=kernel))
    if kernel == "gluon":
        from attn_dse.gpu.prefill_gluon import CONFIG, ROWS
        block_n, stages, pingpong = config or CONFIG
        label = str(("gluon", 2 * ROWS, block_n, stages, int(pingpong)))
    else:
        label = str(("ws", *(config or WS_CONFIG[D]))) if kernel == "ws" else str(config or "default")
    rec.add(family="prefill", variant="gqa", phase="prefill", batch=B, seq=S, context=S, n_heads=Hq,
            n_kv_heads=Hkv, head_dim=D, causal=causal, window=window or "", top_k="", block="",
            dtype="bf16" if dtype == torch.bfloat16 else "fp16", config=label, n_split=1,
            median_s=med, p20_s=p20, p80_s=p80, kv_bytes=2 * B * S * Hkv * D * 2)


def measure_prefill(rec: Recorder, cfg: dict) -> None:
    """_prefill_fwd over its grid (its d 128 tiles as tuned); the warp-specialized kernel over
    the shapes it takes, d 128 and 256 (its config named ("ws", BLOCK_M, BLOCK_N, warps, stages))."""
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
        _record(rec, "tiles", cfg[causal] if D == 128 else None, B, S, Hq, Hkv, D, causal, window, dtype)
    for B, S, Hq, Hkv, D, causal, dtype in ws_shapes():
        _record(rec, "ws", None, B, S, Hq, Hkv, D, causal, None, dtype)


def ws_shapes(dims=(128, 256)) -> list:
    """The warp-specialized kernels' grid: (B, S, Hq, Hkv, D, causal, dtype)."""
    shapes = [(max(1, 16384 // S), S, 32, 8, D, causal, torch.bfloat16)
              for D in dims for S in (1024, 4096, 16384) for causal in (False, True)]
    shapes += [(4, 4096, 32, h, 128, True, torch.bfloat16) for h in (32, 4, 1)]
    shapes += [(4, 4096, 32, 8, 128, c, torch.float16) for c in (False, True)]
    shapes += [(2, 3000, 32, 8, 128, True, torch.bfloat16), (1, 16384, 32, 32, 128, False, torch.bfloat16),
               (2, 8192, 64, 8, 128, True, torch.bfloat16)]
    if 256 in dims:
        shapes.append((8, 2048, 16, 16, 256, True, torch.bfloat16))
    return shapes


def measure_gluon(rec: Recorder, kernels=("gluon", "ws")) -> None:
    """prefill_gluon's kernel over the warp-specialized grid at d 128 and a few shapes it was not
    tuned on (ragged, longer, MQA), the Triton warp-specialized kernel beside it."""
    shapes = ws_shapes((128,)) + [
        (1, 8192, 16, 2, 128, False, torch.bfloat16), (3, 5000, 16, 4, 128, True, torch.bfloat16),
        (8, 2048, 32, 1, 128, False, torch.bfloat16), (1, 32768, 32, 8, 128, True, torch.bfloat16)]
    for kernel in kernels:  # one kernel's rows together: the every-4th held-out split takes some of each
        for B, S, Hq, Hkv, D, causal, dtype in shapes:
            _record(rec, kernel, None, B, S, Hq, Hkv, D, causal, None, dtype)


def bench(rec: Recorder, grid: str = "all") -> None:
    if grid == "all":
        measure_prefill(rec, tune_prefill())
    measure_gluon(rec, ("gluon", ) if grid == "all" else ("gluon", "ws"))


def main() -> int:
    """--grid all: every kernel's grid; --grid gluon: the Gluon kernel's (and the Triton
    warp-specialized kernel's on the same shapes)."""
    from attn_dse.gpu.harness import check_then_bench
    return check_then_bench(__doc__, check, bench, {"all": "all", "gluon": "gluon"})


if __name__ == "__main__":
    raise SystemExit(main())
