"""Split-KV GQA decode over an fp8 (e4m3) KV cache with per-block scales, bf16 compute, in Triton;
`decode_fp8` runs the faster Gluon kernel of decode_fp8_regs.py where that one fits.

The cache holds K and V as float8_e4m3fn [B, L, Hkv, D] and one fp32 scale per (batch entry,
block of SCALE_BLOCK tokens, KV head) for each: x = x8 * scale. The kernel loads fp8 tiles (half
the bytes of bf16), widens them to fp16 for the MMAs (exact: every e4m3 value is an fp16 value;
the hardware converts e4m3 pairs to fp16 in one instruction, to bf16 only through fp16; bf16
queries are exact in fp16 within its range), accumulates in fp32 and applies
the scales to the fp32 scores (K) and to the probabilities before the PV product (V), so no
dequantized tile is ever stored. Split-KV structure, GQA packing and the combine are those of
the bf16 decode (decode.py). Rows are family "decode", kv_dtype "fp8".

    python -m attn_dse.gpu.decode_fp8 --out DIR [--grid unseen]   (checks, then bf16 vs fp8)
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from attn_dse.cost.families.decode import widen_key_tile, widen_row_tile
from attn_dse.gpu import decode as bf16_decode
from attn_dse.gpu import decode_fp8_regs as regs
from attn_dse.gpu.decode import choose_splits, kv_head_program, run_splits, store_partial
from attn_dse.gpu.harness import check_then_bench, BF16_BOUND, DEV, Recorder, rel_err, rnd, sm_count, timed
from attn_dse.gpu.reference import attention_ref
from attn_dse.gpu.softmax import finish, start_state

SCALE_BLOCK = 64  # tokens per scale
# the regs kernel's default key tile: the bench tunes it at 64 x 32k, where 32 and 64 came within 2%
# (4.15 and 4.22 TB/s, docs/device-logs/h200-decode-fp8-regs-2026-12-02.log); 64 spills with 16 query rows
REGS_BLOCK_N = 32
E4M3_MAX = 448.0


def quantize_kv(x: torch.Tensor, block: int = SCALE_BLOCK) -> tuple[torch.Tensor, torch.Tensor]:
    """x [B, L, H, D] -> (e4m3 [B, L, H, D], fp32 scales [B, ceil(L/block), H]), amax per block."""
    B, L, H, D = x.shape
    nb = -(-L // block)
    x8 = torch.empty(B, L, H, D, device=x.device, dtype=torch.float8_e4m3fn)
    scale = torch.empty(B, nb, H, device=x.device, dtype=torch.float32)
    for b in range(B):  # a sequence at a time: the float32 copy of a whole 64 x 32k cache is 8.6 GB
        xf = torch.nn.functional.pad(x[b].float(), (0, 0, 0, 0, 0, nb * block - L)).view(nb, block, H, D)
        scale[b] = (xf.abs().amax(dim=(1, 3)) / E4M3_MAX).clamp_min(1e-12)  # [nb, H]
        x8[b] = (xf / scale[b][:, None, :, None]).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn).view(
            nb * block, H, D)[:L]
    return x8, scale


def cache_bytes(x8: torch.Tensor, scale: torch.Tensor) -> int:
    """Bytes of an fp8 K and V cache shaped like x8, with their scales: what a decode streams."""
    return 2 * (x8.numel() * x8.element_size() + scale.numel() * scale.element_size())


def dequantize_kv(x8: torch.Tensor, scale: torch.Tensor, block: int = SCALE_BLOCK) -> torch.Tensor:
    """The float32 cache the fp8 one stands for: the reference's input."""
    return x8.float() * scale.repeat_interleave(block, 1)[:, :x8.shape[1], :, None]


@triton.jit
def _decode_fp8_split(Q, K, V, KS, VS, Lens, Part, Lse, stride_qb, stride_qs, stride_qh, stride_kb, stride_kn,
                      stride_kh, stride_vb, stride_vn, stride_vh, stride_sb, stride_sn, group, seq_q, n_splits,
                      split_len, sm_scale, HEAD_DIM: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr,
                      SCALE_BLOCK: tl.constexpr, KEYS_AS_ROWS: tl.constexpr):
    b, kvh, q, tok, head, valid, length, last_visible, K, V = kv_head_program(
        Q, K, V, Lens, stride_qb, stride_qs, stride_qh, stride_kb, stride_kh, stride_vb, stride_vh, group, seq_q,
        HEAD_DIM, BLOCK_H)
    split = tl.program_id(2)
    offs_d = tl.arange(0, HEAD_DIM)
    start = split * split_len
    end = tl.minimum(start + split_len, length)
    KS += b * stride_sb + kvh
    VS += b * stride_sb + kvh
    qk_scale = sm_scale * 1.4426950408889634
    if KEYS_AS_ROWS:
        # scores transposed, s^T = K q^T: the widened K tile is the MMA's register operand, so it
        # never goes back through shared memory; the query block is the small shared operand
        qt = tl.trans(q.to(tl.float16))
        acc = tl.zeros([HEAD_DIM, BLOCK_H], tl.float32)
        l_i = tl.zeros([BLOCK_H], tl.float32)
        m_i = tl.full([BLOCK_H], float("-inf"), tl.float32)
        for n0 in range(start, end, BLOCK_N):
            offs_n = n0 + tl.arange(0, BLOCK_N)
            in_range = offs_n < end
            k = tl.load(K + offs_n[:, None] * stride_kn + offs_d[None, :], mask=in_range[:, None], other=0.0)
            ks = tl.load(KS + (offs_n // SCALE_BLOCK) * stride_sn, mask=in_range, other=0.0)
            vs = tl.load(VS + (offs_n // SCALE_BLOCK) * stride_sn, mask=in_range, other=0.0)
            st = tl.dot(k.to(tl.float16), qt) * (ks * qk_scale)[:, None]
            keep = in_range[:, None] & (offs_n[:, None] <= last_visible[None, :])
            st = tl.where(keep, st, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(st, 0))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
            p = tl.math.exp2(st - m_safe[None, :])
            alpha = tl.math.exp2(m_i - m_safe)
            l_i = l_i * alpha + tl.sum(p, 0)
            vt = tl.load(V + offs_n[None, :] * stride_vn + offs_d[:, None], mask=in_range[None, :], other=0.0)
            acc = acc * alpha[None, :] + tl.dot(vt.to(tl.float16), (p * vs[:, None]).to(tl.float16))
            m_i = m_new
        acc = tl.trans(acc)
    else:
        acc, l_i, m_i = start_state(BLOCK_H, HEAD_DIM)
        q16 = q.to(tl.float16)
        for n0 in range(start, end, BLOCK_N):
            offs_n = n0 + tl.arange(0, BLOCK_N)
            in_range = offs_n < end
            k = tl.load(K + offs_n[None, :] * stride_kn + offs_d[:, None], mask=in_range[None, :], other=0.0)
            ks = tl.load(KS + (offs_n // SCALE_BLOCK) * stride_sn, mask=in_range, other=0.0)
            vs = tl.load(VS + (offs_n // SCALE_BLOCK) * stride_sn, mask=in_range, other=0.0)
            qk = tl.dot(q16, k.to(tl.float16)) * (ks * qk_scale)[None, :]
            keep = in_range[None, :] & (offs_n[None, :] <= last_visible[:, None])
            qk = tl.where(keep, qk, float("-inf"))
            v = tl.load(V + offs_n[:, None] * stride_vn + offs_d[None, :], mask=in_range[:, None], other=0.0)
            m_new = tl.maximum(m_i, tl.max(qk, 1))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
            p = tl.math.exp2(qk - m_safe[:, None])
            alpha = tl.math.exp2(m_i - m_safe)
            l_i = l_i * alpha + tl.sum(p, 1)
            acc = acc * alpha[:, None] + tl.dot((p * vs[None, :]).to(tl.float16), v.to(tl.float16))
            m_i = m_new
    out, lse = finish(acc, l_i, m_i)
    store_partial(Part, Lse, out, lse, b, tok, head, valid, group, seq_q, split, n_splits, HEAD_DIM)


def decode_fp8(q: torch.Tensor, k8: torch.Tensor, v8: torch.Tensor, k_scale: torch.Tensor, v_scale: torch.Tensor,
               seq_lens: torch.Tensor, n_splits: int | None = None, block_n: int | None = None, num_warps: int = 4,
               num_stages: int = 2, out: torch.Tensor | None = None, keys_as_rows: bool = True,
               kernel: str = "auto", tiles: int = 1) -> torch.Tensor:
    """q [B, Sq, Hq, D] bf16 against the e4m3 cache k8/v8 [B, L, Hkv, D] with scales [B, L/64, Hkv].

    kernel "regs" (decode_fp8_regs.py, Gluon: one warp a program, no shared memory in the key
    loop), "triton" (this file's kernel), or "auto": regs where it fits (a CUDA device, at most
    16 query rows per KV head, D 64 or 128) and its programs can fill the GPU, else triton.
    num_warps/num_stages/keys_as_rows are the triton kernel's, tiles (key tiles whose loads are
    issued before the first one is computed) the regs one's."""
    B, Sq, Hq, D = q.shape
    L, Hkv = k8.shape[1], k8.shape[2]
    assert k_scale.stride() == v_scale.stride() and k_scale.stride(2) == 1, "scales [B, L/64, Hkv] contiguous"
    assert kernel in ("auto", "regs", "triton"), kernel
    if kernel == "regs" or (kernel == "auto" and regs.fits(q, k8) and regs.fills_waves(
            q, k8, v8, k_scale, v_scale, seq_lens, block_n or REGS_BLOCK_N, SCALE_BLOCK, tiles)):
        return regs.decode_fp8_regs(q, k8, v8, k_scale, v_scale, seq_lens, n_splits, block_n or REGS_BLOCK_N, out,
                                    SCALE_BLOCK, tiles)
    group = Hq // Hkv
    block_h = int(widen_row_tile(group * Sq))
    block_n = block_n or 64
    n_splits = n_splits or choose_splits(B, Hkv, L, sm_count(q.device), block_n=block_n)
    split_len = triton.cdiv(triton.cdiv(L, n_splits), block_n) * block_n
    return run_splits(lambda part, lse: _decode_fp8_split[(B, Hkv, n_splits)](
        q, k8, v8, k_scale, v_scale, seq_lens, part, lse, q.stride(0), q.stride(1), q.stride(2),
        k8.stride(0), k8.stride(1), k8.stride(2), v8.stride(0), v8.stride(1), v8.stride(2),
        k_scale.stride(0), k_scale.stride(1), group, Sq, n_splits, split_len, 1.0 / math.sqrt(D),
        HEAD_DIM=D, BLOCK_H=block_h, BLOCK_N=block_n, SCALE_BLOCK=SCALE_BLOCK, KEYS_AS_ROWS=keys_as_rows, num_warps=num_warps,
        num_stages=num_stages), (B, Sq, Hq, D), n_splits, q, out)


# ---------------------------------------------------------------- check and bench
# Rows carry the cost model's family "decode" with kv_dtype "fp8" and the kernel first in `config`
# ("triton": this file's, timed by the model's decode_widen; "regs": decode_regs). No module-level
# FAMILY: decode.py already holds that key in measure.py's discovery; this module runs through its main().


def fp8_cache(B, L, Hkv, D):
    k, v = rnd(B, L, Hkv, D), rnd(B, L, Hkv, D)
    return (*quantize_kv(k), *quantize_kv(v))


def check(rec: Recorder, g: torch.Generator) -> None:
    """Poisoned outputs vs the float32 reference on the dequantized cache, ragged shapes."""
    for (B, Sq, Hq, Hkv, D, L, splits) in [(3, 1, 32, 8, 128, 3000, 8), (2, 4, 16, 2, 128, 1111, 3),
                                           (4, 1, 8, 8, 64, 515, None), (1, 2, 8, 1, 128, 4097, 16),
                                           (5, 1, 64, 8, 128, 2049, 1)]:
        q = rnd(B, Sq, Hq, D)
        k8, ks, v8, vs = fp8_cache(B, L, Hkv, D)
        lens = torch.randint(max(Sq, L // 3), L + 1, (B,), generator=g).to(DEV, torch.int32)
        ref = attention_ref(q, dequantize_kv(k8, ks), dequantize_kv(v8, vs), True, seq_lens=lens)
        variants = [dict(kernel="triton", keys_as_rows=True), dict(kernel="triton", keys_as_rows=False),
                    dict(kernel="triton", keys_as_rows=False, num_stages=4,  # the bench's tiles
                         block_n=int(widen_key_tile(Hq // Hkv * Sq)))]
        if regs.fits(q, k8):
            variants += [dict(kernel="regs", block_n=bn, tiles=t) for bn in (16, 32, 64) for t in (1, 2)]
        for kw in variants:
            out = torch.full_like(q, float("nan"))
            decode_fp8(q, k8, v8, ks, vs, lens, n_splits=splits, out=out, **kw)
            name = ", ".join(f"{k}={v}" for k, v in kw.items())
            rec.check(f"decode fp8-kv B{B} Sq{Sq} H{Hq}/{Hkv} d{D} L{L} splits={splits} {name}",
                      rel_err(out, ref), BF16_BOUND)


CONFIGS = [(bn, w, s) for bn in (64, 128) for w in (4, 8) for s in (2, 3, 4)]
# (block_n, warps, stages, keys_as_rows, splits per choose_splits): the triton fp8 kernel is bound by its
# instruction stream, not by bytes (docs/device-logs/h200-decode-fp8-notes-2026-12-02.md); the best of a
# full sweep (docs/device-logs/h200-decode-fp8-bitmove-2026-12-02.log) and its neighbours
CONFIGS8 = [(128, 4, s, False, m) for s in (3, 4) for m in (1, 2)]
CONFIGS_REGS = [(bn, t) for bn in (16, 32, 64) for t in (1, 2)]  # regs kernel: key tile, tiles per step


def tune(fn_of_cfg, kv_bytes, configs=CONFIGS) -> tuple:
    times = {}
    for c in configs:
        try:
            times[c] = timed(lambda: fn_of_cfg(c))[0]
        except Exception as e:  # noqa: BLE001 (a tile that does not fit in shared memory is no candidate)
            print(f"  {c}: {type(e).__name__}", flush=True)
    print("  " + ", ".join(f"{c}:{kv_bytes / t / 1e12:.2f}TB/s" for c, t in times.items()), flush=True)
    return min(times, key=times.get)


def bench(rec: Recorder, shapes=None) -> None:
    """bf16 decode and both fp8-KV kernels on the same shapes in the same run; configs tuned at 64 x 32k."""
    B, L, Hq, Hkv, D = 64, 32768, 64, 8, 128
    q = rnd(B, 1, Hq, D)
    lens = torch.full((B,), L, device=DEV, dtype=torch.int32)
    k, v = rnd(B, L, Hkv, D), rnd(B, L, Hkv, D)
    print("tune bf16 decode:", flush=True)
    cfg16 = tune(lambda c: bf16_decode.decode(q, k, v, lens, block_n=c[0], num_warps=c[1], num_stages=c[2]),
                 2 * B * L * Hkv * D * 2)
    k8, ks = quantize_kv(k)
    v8, vs = quantize_kv(v)
    del k, v
    print("tune fp8-kv decode, triton kernel:", flush=True)
    cfg8 = tune(lambda c: decode_fp8(q, k8, v8, ks, vs, lens, block_n=c[0], num_warps=c[1], num_stages=c[2],
                                     keys_as_rows=c[3], n_splits=c[4] * choose_splits(B, Hkv, L, sm_count(), c[0]),
                                     kernel="triton"), 2 * B * L * Hkv * D, CONFIGS8)
    print("tune fp8-kv decode, regs kernel:", flush=True)
    cfg_r = tune(lambda c: decode_fp8(q, k8, v8, ks, vs, lens, block_n=c[0], tiles=c[1], kernel="regs"),
                 2 * B * L * Hkv * D, CONFIGS_REGS)
    del q, k8, v8, ks, vs
    shapes = shapes or ([(b, 1, 64, 8, 128, L) for b in (1, 16, 64, 128) for L in (4096, 32768)]
                        + [(64, 1, 32, 8, 128, 32768), (16, 4, 64, 8, 128, 32768), (64, 1, 32, 1, 128, 32768)])
    for B, Sq, Hq, Hkv, D, L in shapes:
        q = rnd(B, Sq, Hq, D)
        lens = torch.full((B,), L, device=DEV, dtype=torch.int32)
        variant = "mha" if Hq == Hkv else ("mqa" if Hkv == 1 else "gqa")
        common = dict(family="decode", variant=variant, phase="decode", batch=B, seq=Sq, context=L - Sq, n_heads=Hq,
                      n_kv_heads=Hkv, head_dim=D, causal=True, window="", top_k="", block="", dtype="bf16")
        k, v = rnd(B, L, Hkv, D), rnd(B, L, Hkv, D)
        n16 = choose_splits(B, Hkv, L, sm_count(), block_n=cfg16[0])
        med, p20, p80 = timed(lambda: bf16_decode.decode(q, k, v, lens, n_splits=n16, block_n=cfg16[0],
                                                         num_warps=cfg16[1], num_stages=cfg16[2]))
        rec.add(**common, kv_dtype="bf16", config=str(cfg16), n_split=n16, median_s=med, p20_s=p20, p80_s=p80,
                kv_bytes=2 * B * L * Hkv * D * 2)
        k8, ks = quantize_kv(k)
        v8, vs = quantize_kv(v)
        del k, v
        fp8_bytes = cache_bytes(k8, ks)
        n8 = min(128, cfg8[4] * choose_splits(B, Hkv, L, sm_count(), block_n=cfg8[0]))
        bn8 = int(widen_key_tile(Hq // Hkv * Sq, cfg8[0]))
        med8, p20, p80 = timed(lambda: decode_fp8(q, k8, v8, ks, vs, lens, n_splits=n8, block_n=bn8,
                                                  num_warps=cfg8[1], num_stages=cfg8[2],
                                                  keys_as_rows=cfg8[3], kernel="triton"))
        rec.add(**common, kv_dtype="fp8", config=str(("triton", bn8, *cfg8[1:])), n_split=n8, median_s=med8,
                p20_s=p20, p80_s=p80, kv_bytes=fp8_bytes)
        line = f"  speed-up fp8/bf16 B{B} Sq{Sq} H{Hq}/{Hkv} L{L}: triton kernel {med / med8:.2f}x"
        if regs.fits(q, k8):
            resident = regs.programs_per_sm(q, k8, v8, ks, vs, lens, cfg_r[0], SCALE_BLOCK, cfg_r[1])
            nr = regs.choose_splits_regs(B, Hkv, L, sm_count(), cfg_r[0], resident)
            medr, p20, p80 = timed(lambda: decode_fp8(q, k8, v8, ks, vs, lens, n_splits=nr, block_n=cfg_r[0],
                                                      tiles=cfg_r[1], kernel="regs"))
            rec.add(**common, kv_dtype="fp8", config=str(("regs", *cfg_r)), n_split=nr, median_s=medr, p20_s=p20,
                    p80_s=p80, kv_bytes=fp8_bytes)
            line += f", regs kernel {med / medr:.2f}x ({resident} programs/SM, {nr} splits)"
        print(line, flush=True)
        del q, k8, v8, ks, vs
        torch.cuda.empty_cache()


# (B, new tokens, query heads, KV heads, head dim, cache length): the grid the knobs were fitted on
# (None: bench's own), and shapes none of it has (group 7 and 16, MHA at d 64, 2-3 and 8 new tokens,
# 8k-128k) to check the fitted knobs where they were not fitted
GRIDS = {"fitted": None,
         "unseen": [(32, 1, 32, 4, 128, 16384), (8, 1, 64, 8, 128, 8192), (48, 1, 28, 4, 128, 12288),
                    (24, 1, 16, 16, 64, 8192), (4, 2, 64, 8, 128, 65536), (32, 3, 32, 8, 128, 8192),
                    (8, 1, 128, 8, 128, 32768), (16, 8, 32, 8, 128, 16384), (2, 1, 64, 8, 128, 131072)]}


def main() -> int:
    return check_then_bench(__doc__, check, bench, GRIDS)


if __name__ == "__main__":
    raise SystemExit(main())
