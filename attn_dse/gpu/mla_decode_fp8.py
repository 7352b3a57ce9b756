"""Absorbed MLA decode over an fp8 latent cache in FlashMLA's 656-byte row, in Triton.

The cache row of one token (flashmla_row.py): the 512 latent values as e4m3, 4 fp32 scales (one
per 128 values), the 64 RoPE key values in bf16: 656 B, against 1152 B for the bf16 latent.

The kernel is the split-KV algorithm of the bf16 kernel (mla_decode.py) with the 512-wide
latent handled as its 4 scale groups of 128 columns: per key tile, group g's e4m3 columns are
widened to fp16 (exact: every e4m3 value is an fp16 value; the hardware converts e4m3 pairs to
fp16 in one instruction), its fp32 partial score q_g . c_g is multiplied by the tokens' scale
s_g, and the 4 partials plus the bf16 RoPE score make the score. For P V the scale runs along
the tokens, so it goes on the probabilities: out_g += (P * s_g) . c_g, one fp32 accumulator per
group. No dequantized tile is ever stored; the MMAs take fp16 (latent) and bf16 (RoPE)
operands and accumulate in fp32, in the heads-major orientation of the bf16 kernel's "heads"
layout (S [heads, tokens], O [heads, latent]). The absorbed query goes in as fp16 (the absorption
GEMM can write it so; a bf16 one is rounded here, 2^-11 relative, exact within fp16's range):
TMA puts it in shared memory as is, where a widening in the kernel kept it in registers and
every tile configuration spilled. The RoPE score is computed in q_rope's dtype: bf16 in
production, fp16 in the CPU interpreter's test, where Triton 3.9 multiplies bf16 tiles wrongly
(tl.dot). Splits are merged by the bf16 kernel's combine (decode.run_splits).

Measured on an H200 (2026-12-02, docs/device-logs/h200-mla-decode-fp8-2026-12-02.log): correct
(26/26 checks), but SLOWER than the bf16 kernel: 0.56-0.73x at 16 heads, 0.28-0.68x at 32,
0.12-0.41x at 128. Its best tile reads 1.15 TB/s of fp8 rows where the bf16 kernel streams
3.3 TB/s: the heads-major tiles run on mma.sync (HMMA), and each latent value is widened once
per 16-32-head block. Beating bf16 needs the widened tile in shared memory feeding wgmma for all
heads at once (the Gluon kernel's structure, mla_decode_wgmma.py); this one is the reference
point for that work, not a kernel to deploy.

Queries q_nope [B, Sq, H, 512] (W_UK already applied; fp16, or bf16 rounded to it) and q_rope
[B, Sq, H, 64] (bf16); the Sq
new tokens (Sq > 1: speculative decoding) sit at the end of each sequence and attend causally
among themselves; rows of a program are (token, head) pairs, token-major. Output [B, Sq, H, 512]
in q_nope's dtype.
Tokens past a sequence's length must hold finite values (as in the bf16 kernel: their
probabilities are zero, but 0 x NaN is NaN).

    python -m attn_dse.gpu.mla_decode_fp8 --out DIR    (checks, then bf16 vs fp8 in one run)

Rows carry the cost model's family "mla_decode" with kv_dtype "fp8" and kv_bytes = B x L x 656
(by which the model knows the layout); its family mla_decode_widen times them.
No module-level FAMILY: mla_decode.py holds that key in measure.py's discovery.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

from attn_dse.gpu.decode import run_splits
from attn_dse.gpu.decode_fp8 import tune
from attn_dse.gpu.flashmla_row import D_LATENT, D_ROPE, N_GROUPS, dequantize, quantize_latent, row_bytes, unpack
from attn_dse.gpu.harness import check_then_bench, DEV, Recorder, rel_err, rnd, sm_count, timed
from attn_dse.gpu.mla_decode import MLA_CONFIGS, choose_splits, is_hopper, run_mla
from attn_dse.gpu.reference import mla_decode_ref
from attn_dse.gpu.mla_decode import FAMILY as MLA_FAMILY  # no FAMILY here: mla_decode.py holds the key

SM_SCALE = 1 / math.sqrt(192)  # DeepSeek's softmax scale (d_nope + d_rope), as in mla_decode.py
# Relative error against float32 on the dequantized cache: the fp16 query (2^-11), P * s in fp16
# (2^-11), the bf16 RoPE operands and the bf16 output (2^-9) give ~1e-3; 1e-2 leaves room for
# long sums, and a wrong scale, group or mask errs by O(1).
FP8_MLA_BOUND = 1e-2


@triton.jit
def _latent_group(c_desc, Scale, row0, rows, in_range, stride_s, g: tl.constexpr, GROUP: tl.constexpr):
    """Group g of a key tile: its e4m3 columns widened to fp16 [BLOCK_N, GROUP], their scales [BLOCK_N]."""
    c = c_desc.load([row0, g * GROUP]).to(tl.float16)
    return c, tl.load(Scale + rows * stride_s + g, mask=in_range, other=0.0)


@triton.jit
def _store_group(Part, base, valid, out, g: tl.constexpr, GROUP: tl.constexpr, D_LAT: tl.constexpr):
    cols = g * GROUP + tl.arange(0, GROUP)
    tl.store(Part + base[:, None] * D_LAT + cols[None, :], out.to(Part.dtype.element_ty), mask=valid[:, None])


@triton.jit(do_not_specialize=["L", "n_heads", "seq_q", "n_splits", "split_len"])
def _mla_fp8_split(qn_desc, qp_desc, c_desc, kp_desc, Scale, stride_s, Lens, Part, Lse, L, n_heads, seq_q,
                   n_splits, split_len, sm_scale, D_LAT: tl.constexpr, BLOCK_H: tl.constexpr,
                   BLOCK_N: tl.constexpr):
    GROUP: tl.constexpr = D_LAT // 4
    hb = tl.program_id(0)  # fastest-varying: a sequence's head blocks run together and share its keys in L2
    b = tl.program_id(1).to(tl.int64)
    split = tl.program_id(2)
    n_rows = seq_q * n_heads
    rows = hb * BLOCK_H + tl.arange(0, BLOCK_H)  # (token, head) pairs, token-major
    valid = rows < n_rows
    length = tl.load(Lens + b)
    last_visible = length - seq_q + rows // n_heads  # causal among the new tokens
    start = split * split_len
    end = tl.minimum(start + split_len, length)
    q0 = (b * n_rows + hb * BLOCK_H).to(tl.int32)  # rows past the block's last are masked at the store
    qk_scale = sm_scale * 1.4426950408889634
    l_i = tl.zeros([BLOCK_H], tl.float32)
    m_i = tl.full([BLOCK_H], float("-inf"), tl.float32)
    # S [heads, tokens] and O [heads, latent]: each group's fp16 tile is the right operand of both MMAs
    q_0 = qn_desc.load([q0, 0])  # fp16, straight into shared memory: widened in the kernel, the
    q_1 = qn_desc.load([q0, GROUP])  # query went to registers and spilled (sm_90 SASS, every tile)
    q_2 = qn_desc.load([q0, 2 * GROUP])
    q_3 = qn_desc.load([q0, 3 * GROUP])
    qp = qp_desc.load([q0, 0])
    o_0 = tl.zeros([BLOCK_H, GROUP], tl.float32)
    o_1 = tl.zeros([BLOCK_H, GROUP], tl.float32)
    o_2 = tl.zeros([BLOCK_H, GROUP], tl.float32)
    o_3 = tl.zeros([BLOCK_H, GROUP], tl.float32)
    for n0 in tl.range(start, end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        in_range = offs_n < end
        row0 = (b * L + n0).to(tl.int32)
        grow = b * L + offs_n
        c_0, s_0 = _latent_group(c_desc, Scale, row0, grow, in_range, stride_s, 0, GROUP)
        c_1, s_1 = _latent_group(c_desc, Scale, row0, grow, in_range, stride_s, 1, GROUP)
        c_2, s_2 = _latent_group(c_desc, Scale, row0, grow, in_range, stride_s, 2, GROUP)
        c_3, s_3 = _latent_group(c_desc, Scale, row0, grow, in_range, stride_s, 3, GROUP)
        s = tl.dot(qp, tl.trans(kp_desc.load([row0, 0]).to(qp.dtype)))
        s += tl.dot(q_0, tl.trans(c_0)) * s_0[None, :]
        s += tl.dot(q_1, tl.trans(c_1)) * s_1[None, :]
        s += tl.dot(q_2, tl.trans(c_2)) * s_2[None, :]
        s += tl.dot(q_3, tl.trans(c_3)) * s_3[None, :]
        keep = in_range[None, :] & (offs_n[None, :] <= last_visible[:, None])
        s = tl.where(keep, s * qk_scale, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.math.exp2(s - m_safe[:, None])
        alpha = tl.math.exp2(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, 1)
        o_0 = tl.dot((p * s_0[None, :]).to(tl.float16), c_0, o_0 * alpha[:, None])
        o_1 = tl.dot((p * s_1[None, :]).to(tl.float16), c_1, o_1 * alpha[:, None])
        o_2 = tl.dot((p * s_2[None, :]).to(tl.float16), c_2, o_2 * alpha[:, None])
        o_3 = tl.dot((p * s_3[None, :]).to(tl.float16), c_3, o_3 * alpha[:, None])
        m_i = m_new
    seen = l_i > 0  # a split past the end of a short sequence sees no token
    l_safe = tl.where(seen, l_i, 1.0)[:, None]
    base = (b * n_rows + rows) * n_splits + split
    _store_group(Part, base, valid, o_0 / l_safe, 0, GROUP, D_LAT)
    _store_group(Part, base, valid, o_1 / l_safe, 1, GROUP, D_LAT)
    _store_group(Part, base, valid, o_2 / l_safe, 2, GROUP, D_LAT)
    _store_group(Part, base, valid, o_3 / l_safe, 3, GROUP, D_LAT)
    tl.store(Lse + base, tl.where(seen, m_i + tl.math.log2(tl.where(seen, l_i, 1.0)), float("-inf")), mask=valid)


DEFAULT = {16: ("heads", 16, 32, 8, 2), 32: ("heads", 32, 16, 8, 2), 128: ("heads", 32, 16, 8, 2)}
# on Hopper the warp-specialized Gluon kernel: 1.48-1.57x our bf16 kernel at 16 heads on an H100
# (docs/device-logs/h100-mla-fp8-ws-ab-2026-12-05.log), where the Triton one is 0.56-0.73x on an H200.
# "wsr" (1.55-1.59x, h100-mla-fp8-wsr-ab-2026-12-05.log) is offered to the tuning, not the default:
# the family's knobs were fitted on "ws" rows and predict "wsr" 8% slow
HOPPER_DEFAULT = {16: ("ws", 16, 64, 2, 1), 32: ("ws", 32, 64, 2, 1), 128: ("ws", 32, 64, 2, 1)}


def default_config(rows: int, hopper: bool = False) -> tuple:
    """(layout, block_h, block_n, num_warps, num_stages) by query rows per sequence (Sq x H)."""
    return (HOPPER_DEFAULT if hopper else DEFAULT)[16 if rows <= 16 else 32 if rows <= 32 else 128]


def mla_decode_fp8(q_nope: torch.Tensor, q_rope: torch.Tensor, packed: torch.Tensor, seq_lens: torch.Tensor,
                   config: tuple | None = None, n_splits: int | None = None, sm_scale: float = SM_SCALE,
                   out: torch.Tensor | None = None) -> torch.Tensor:
    """q_nope [B, Sq, H, d_latent], q_rope [B, Sq, H, d_rope] (bf16) against the packed cache
    [B, L, row_bytes] (`quantize_latent`); seq_lens [B] int32 count the new tokens."""
    B, Sq, H, D = q_nope.shape
    R = q_rope.shape[-1]
    L = packed.shape[1]
    lat, scale, rope = unpack(packed, D, R)
    layout, block_h, block_n, num_warps, num_stages = config or default_config(Sq * H, is_hopper(packed))
    if layout in ("wgmma", "ws", "wsr"):  # the Gluon kernels: the tile widened once in shared memory, wgmma tokens-major
        from attn_dse.gpu.mla_decode_fp8_wgmma import mla_decode_fp8_wgmma
        n_splits = n_splits or choose_splits(B, triton.cdiv(Sq * H, block_h), L, block_n, sm_count(packed.device))
        # "ws", "wsr" (warp-specialized): the last two fields are the TMA stages and the widened buffers
        buffers = ("ws", num_warps, num_stages, layout == "wsr") if layout != "wgmma" else num_stages
        return mla_decode_fp8_wgmma(q_nope, q_rope, packed, seq_lens, n_splits, sm_scale, block_h, num_warps,
                                    buffers, out)
    if layout != "heads":
        raise ValueError(f"the fp8 kernels have the 'heads', 'wgmma', 'ws' and 'wsr' layouts, not {layout!r}")
    if num_warps == 4 and num_stages == 1:  # as in mla_decode.py: Triton 3.6 miscompiled this on an H100
        raise ValueError("4 warps need num_stages >= 2")
    head_blocks = triton.cdiv(Sq * H, block_h)
    n_splits = n_splits or choose_splits(B, head_blocks, L, block_n, sm_count(packed.device))
    split_len = triton.cdiv(triton.cdiv(L, n_splits), block_n) * block_n
    W, G = packed.shape[-1], D // N_GROUPS
    qn2, qp2 = q_nope.reshape(B * Sq * H, D).to(torch.float16), q_rope.reshape(B * Sq * H, R)
    descs = (TensorDescriptor.from_tensor(qn2, [block_h, G]), TensorDescriptor.from_tensor(qp2, [block_h, R]),
             TensorDescriptor(lat.reshape(B * L, D), [B * L, D], [W, 1], [block_n, G]),
             TensorDescriptor(rope.reshape(B * L, R), [B * L, R], [W // 2, 1], [block_n, R]))
    scale2 = scale.reshape(B * L, N_GROUPS)
    return run_splits(lambda part, lse: _mla_fp8_split[(head_blocks, B, n_splits)](
        *descs, scale2, scale2.stride(0), seq_lens, part, lse, L, H, Sq, n_splits, split_len, sm_scale,
        D_LAT=D, BLOCK_H=block_h, BLOCK_N=block_n, num_warps=num_warps,
        num_stages=num_stages), (B, Sq, H, D), n_splits, q_nope, out)


def mla_fp8_ref(q_nope, q_rope, packed, seq_lens, sm_scale: float = SM_SCALE) -> torch.Tensor:
    """The float32 reference on the dequantized cache."""
    D, R = q_nope.shape[-1], q_rope.shape[-1]
    return mla_decode_ref(q_nope, q_rope, dequantize(packed, D, R), seq_lens, D, sm_scale)


# ---------------------------------------------------------------- check and bench
FP8_CONFIGS = {  # (layout, block_h, block_n, num_warps, num_stages), by query rows per sequence: the
    # tiles that compile for sm_90 without spills (Triton 3.9's SASS, 220-254 registers; (32, 32) spills
    # 8 bytes). Tokens-major tiles (S^T = C Q^T) and 64-head blocks all spilled 0.5-2 KB a thread:
    # the 4 widened key groups stay in registers from the scores to P V, beside the accumulators
    16: [("heads", 16, 32, 8, 2), ("heads", 16, 16, 8, 3), ("heads", 16, 32, 8, 3), ("heads", 16, 64, 8, 2),
         ("heads", 16, 16, 4, 2)],
    32: [("heads", 32, 16, 8, 2), ("heads", 32, 32, 8, 2), ("heads", 16, 32, 8, 2), ("heads", 16, 32, 8, 3)],
    128: [("heads", 32, 16, 8, 2), ("heads", 32, 32, 8, 2), ("heads", 16, 32, 8, 3)]}
# the Gluon kernel (mla_decode_fp8_wgmma.py; 64-token tiles; stages: widened buffers, 2 double-buffered
# by TMA, 1 loaded through registers, two programs an SM)
# ("ws", block_h, 64, stages, buffers): the warp-specialized kernel, its TMA stages and widened buffers;
# "wsr": the same with the RoPE key loaded into the consumer's registers, which leaves room for two
# buffers beside two stages at 16 rows (219 KB; it spills with one buffer, and at 32 rows)
WS_CONFIGS = {16: [("ws", 16, 64, 2, 1), ("ws", 16, 64, 3, 1), ("wsr", 16, 64, 2, 2)],
              32: [("ws", 32, 64, 2, 1)]}  # (32, 3, 1) takes 233 KB of shared memory; (32, 1, 2) spills
WGMMA_CONFIGS = {16: [("wgmma", 16, 64, 4, 1), ("wgmma", 16, 64, 4, 2), ("wgmma", 16, 64, 8, 2)],
                 32: [("wgmma", 32, 64, 4, 1), ("wgmma", 16, 64, 4, 1), ("wgmma", 32, 64, 8, 2),
                      ("wgmma", 16, 64, 4, 2)]}  # (32, 4 warps, 2 stages) spills
for _rows in FP8_CONFIGS:
    FP8_CONFIGS[_rows] = WS_CONFIGS[min(_rows, 32)] + WGMMA_CONFIGS[min(_rows, 32)] + FP8_CONFIGS[_rows]
BF16_CONFIGS = {16: MLA_CONFIGS[16], 32: [("tokens", 32, 64, 4, 2), ("tokens", 16, 64, 4, 2), ("tokens", 32, 32, 4, 4)],
                128: MLA_CONFIGS[128]}
SPLIT_FACTORS = (1, 2)  # splits x choose_splits: small fp8 programs fit several to an SM


def _key(H: int) -> int:
    return 16 if H <= 16 else 32 if H <= 32 else 128


def latent_cache(B, L, D=D_LATENT, R=D_ROPE):
    return quantize_latent(rnd(B, L, D), rnd(B, L, R))


def check(rec: Recorder, g: torch.Generator, layouts: tuple | None = None) -> None:
    """Poisoned outputs vs float32 on the dequantized cache: ragged lengths, Sq 1 and 2, one
    split and many, every configuration the tuning may pick (of `layouts` alone, if given; then
    without the bf16 kernel's H=32 configs, checked here otherwise)."""
    for (B, Sq, H, L, splits) in [(2, 1, 128, 3001, None), (3, 2, 16, 700, 5), (1, 2, 128, 5000, None),
                                  (4, 1, 32, 2049, 1), (2, 2, 16, 1500, None), (3, 1, 16, 4097, 33)]:
        qn, qp, packed = rnd(B, Sq, H, D_LATENT), rnd(B, Sq, H, D_ROPE), latent_cache(B, L)
        lens = torch.randint(L // 2, L + 1, (B,), generator=g).to(DEV, torch.int32)
        ref = mla_fp8_ref(qn, qp, packed, lens)
        out = torch.empty(B, Sq, H, D_LATENT, device=DEV, dtype=torch.bfloat16)
        for cfg in [c for c in FP8_CONFIGS[_key(Sq * H)] if layouts is None or c[0] in layouts]:
            out.fill_(float("nan"))
            try:
                mla_decode_fp8(qn, qp, packed, lens, cfg, n_splits=splits, out=out)
                err = rel_err(out, ref)
            except Exception as e:  # noqa: BLE001 (a kernel that does not build or run fails its check)
                print(f"  {cfg}: {type(e).__name__}: {e}", flush=True)
                err = float("inf")
            rec.check(f"mla_decode fp8-kv B{B} Sq{Sq} H{H} L{L} splits={splits} {cfg}", err, FP8_MLA_BOUND)
    if layouts is not None:
        return
    B, H, L = 3, 32, 1800
    qn, qp, kv = rnd(B, H, D_LATENT), rnd(B, H, D_ROPE), rnd(B, L, D_LATENT + D_ROPE)
    lens = torch.randint(L // 2, L + 1, (B,), generator=g).to(DEV, torch.int32)
    ref = mla_decode_ref(qn, qp, kv, lens, D_LATENT, SM_SCALE)
    for cfg in BF16_CONFIGS[32]:
        out = torch.full((B, 1, H, D_LATENT), float("nan"), device=DEV, dtype=torch.bfloat16)
        run_mla(qn, qp, kv, lens, cfg, out=out)
        rec.check(f"mla_decode bf16 B{B} H{H} L{L} {cfg}", rel_err(out[:, 0], ref), FP8_MLA_BOUND)


def _bf16(qn, qp, kv, lens, cfg, n_splits):
    """The bf16 kernel on Sq new tokens: their (token, head) rows folded into the heads (the
    causal mask among the Sq tokens hides Sq - 1 keys of 4k+, no change in the work)."""
    B, Sq, H, D = qn.shape
    return run_mla(qn.reshape(B, Sq * H, D), qp.reshape(B, Sq * H, -1), kv, lens, cfg, n_splits=n_splits)


def _splits(B, rows, L, cfg, factor=1):
    return min(128, factor * choose_splits(B, triton.cdiv(rows, cfg[1]), L, cfg[2], sm_count()))


def tune_pair(H: int, B: int = 64, L: int = 8192) -> tuple:
    """Fastest bf16 and fp8 configurations for H heads (Sq 1) at B x L."""
    qn, qp = rnd(B, 1, H, D_LATENT), rnd(B, 1, H, D_ROPE)
    kv = rnd(B, L, D_LATENT + D_ROPE)
    lens = torch.full((B,), L, device=DEV, dtype=torch.int32)
    print(f"tune bf16 mla H={H}:", flush=True)
    cfg16 = tune(lambda c: _bf16(qn, qp, kv, lens, c, _splits(B, H, L, c)), B * L * 1152, BF16_CONFIGS[_key(H)])
    packed = quantize_latent(kv[..., :D_LATENT], kv[..., D_LATENT:])
    del kv
    print(f"tune fp8 mla H={H}:", flush=True)
    cands = [(c, f) for c in FP8_CONFIGS[_key(H)] for f in SPLIT_FACTORS]
    qn = qn.half()  # as the absorption GEMM would write it
    cfg8 = tune(lambda c: mla_decode_fp8(qn, qp, packed, lens, c[0], n_splits=_splits(B, H, L, c[0], c[1])),
                B * L * row_bytes(), cands)
    return cfg16, cfg8


def bench(rec: Recorder) -> None:
    """bf16 and fp8-KV MLA decode on the same shapes in one run, each with its tuned configuration."""
    for H in (16, 32, 128):
        cfg16, (cfg8, factor) = tune_pair(H)
        for Sq in (1, 2):
            for L in (4096, 32768):
                for B in (1, 16, 64, 128):
                    qn, qp = rnd(B, Sq, H, D_LATENT), rnd(B, Sq, H, D_ROPE)
                    lens = torch.full((B,), L, device=DEV, dtype=torch.int32)
                    common = dict(family=MLA_FAMILY, variant="mla", phase="decode", batch=B, seq=Sq, context=L - Sq,
                                  n_heads=H, n_kv_heads=1, head_dim=D_LATENT + D_ROPE, causal=True, window="",
                                  top_k="", block="", dtype="bf16")
                    kv = rnd(B, L, D_LATENT + D_ROPE)
                    n16 = _splits(B, Sq * H, L, cfg16)
                    med, p20, p80 = timed(lambda: _bf16(qn, qp, kv, lens, cfg16, n16))
                    rec.add(**common, kv_dtype="bf16", config=str(cfg16), n_split=n16, median_s=med, p20_s=p20,
                            p80_s=p80, kv_bytes=B * L * 2 * (D_LATENT + D_ROPE))
                    packed = quantize_latent(kv[..., :D_LATENT], kv[..., D_LATENT:])
                    del kv
                    qn = qn.half()  # as the absorption GEMM would write it
                    n8 = _splits(B, Sq * H, L, cfg8, factor)
                    med8, p20, p80 = timed(lambda: mla_decode_fp8(qn, qp, packed, lens, cfg8, n_splits=n8))
                    rec.add(**common, kv_dtype="fp8", config=str(cfg8), n_split=n8, median_s=med8, p20_s=p20,
                            p80_s=p80, kv_bytes=B * L * row_bytes())
                    print(f"  speed-up fp8/bf16 H{H} Sq{Sq} B{B} L{L}: {med / med8:.2f}x", flush=True)
                    del packed
                    torch.cuda.empty_cache()


def main() -> int:
    return check_then_bench(__doc__, check, bench)


if __name__ == "__main__":
    raise SystemExit(main())
