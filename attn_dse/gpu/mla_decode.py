"""Absorbed MLA decode in Triton: the latent (d_c = 512) plus its RoPE key (64) is read once per
token for all heads of a head block; V is the latent itself. Split-KV plus the shared combine.

q_nope [B, H, 512] (already multiplied by W_UK), q_pe [B, H, 64], kv [B, L, 576] (bf16);
output [B, H, 512] in the latent (W_UV is applied after). Score = q_nope.c + q_pe.k_pe.

Two layouts of the same algorithm (`layout=`):
- "tokens": scores as S^T [tokens, heads] = C Q^T and the output as O^T [latent, heads] = C^T P^T.
  The heads are the N side of the tensor-core instruction, so 16 heads (a tensor-parallel
  shard) need no padding to 64 rows: the default for few heads, which are memory-bound.
- "heads": S [heads, tokens] and O [heads, latent], FlashAttention's orientation, the default
  for 64 or more heads off Hopper. With 8 warps Triton gives each warpgroup half of the output
  columns and computes the whole score tile in both (seen in the SASS), which caps it near
  280 TF/s. The tokens layout avoids that duplication with 128-token tiles, but then only one
  stage fits in shared memory (64 x 576 query + 128 x 576 keys) and it ran no faster.
- "wgmma": the same orientation written in Gluon with the split across warpgroups stated
  (`mla_decode_wgmma.py`), 440 TF/s on an H100.
- "seesaw": Gluon, FlashMLA's seesaw (`mla_decode_seesaw.py`): the warpgroups take the key tiles
  in turn, each softmax beside the other's matmuls; 1.08-1.17x "wgmma" on an H200: the default for
  64 or more heads on Hopper.
Tiles come in through tensor descriptors (TMA), straight into shared memory: loaded through
registers, the 64 x 576 query and the key tiles spilled the 255-register budget.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

from attn_dse.gpu.decode import run_splits

from attn_dse.gpu.harness import BF16_BOUND, DEV, Recorder, rel_err, rnd, sm_count, timed
from attn_dse.gpu.reference import mla_decode_ref
from attn_dse.cost.families.mla_decode import GLUON_LATENT, MANY_HEADS, MlaDecode


@triton.jit
def _mla_split(qn_desc, qp_desc, c_desc, kp_desc, Lens, Part, Lse, L, n_heads, n_splits, split_len, sm_scale,
               D_LAT: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr, TOKENS_MAJOR: tl.constexpr):
    b = tl.program_id(0)
    hb = tl.program_id(1)
    split = tl.program_id(2)
    heads = hb * BLOCK_H + tl.arange(0, BLOCK_H)
    hmask = heads < n_heads
    qn = qn_desc.load([b * n_heads + hb * BLOCK_H, 0])  # rows past the last head are masked at the store
    qp = qp_desc.load([b * n_heads + hb * BLOCK_H, 0])
    length = tl.load(Lens + b)
    start = split * split_len
    end = tl.minimum(start + split_len, length)
    m_i = tl.full([BLOCK_H], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_H], tl.float32)
    qk_scale = sm_scale * 1.4426950408889634
    # Every tile holds at least one visible token, so the running max is finite after the first.
    if TOKENS_MAJOR:
        acc = tl.zeros([D_LAT, BLOCK_H], tl.float32)
        for n0 in tl.range(start, end, BLOCK_N):
            c = c_desc.load([b * L + n0, 0])  # tokens past `end` belong to the next split or sequence:
            kp = kp_desc.load([b * L + n0, 0])  # their scores are masked below
            s = tl.dot(kp, tl.trans(qp), tl.dot(c, tl.trans(qn))) * qk_scale
            s = tl.where((n0 + tl.arange(0, BLOCK_N) < end)[:, None], s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 0))
            p = tl.math.exp2(s - m_new[None, :])
            alpha = tl.math.exp2(m_i - m_new)
            l_i = l_i * alpha + tl.sum(p, 0)
            acc = tl.dot(tl.trans(c), p.to(c.dtype), acc * alpha[None, :])
            m_i = m_new
        out = tl.trans(acc)
    else:
        acc = tl.zeros([BLOCK_H, D_LAT], tl.float32)
        for n0 in tl.range(start, end, BLOCK_N):
            c = c_desc.load([b * L + n0, 0])
            kp = kp_desc.load([b * L + n0, 0])
            s = tl.dot(qp, tl.trans(kp), tl.dot(qn, tl.trans(c))) * qk_scale
            s = tl.where((n0 + tl.arange(0, BLOCK_N) < end)[None, :], s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            p = tl.math.exp2(s - m_new[:, None])
            alpha = tl.math.exp2(m_i - m_new)
            l_i = l_i * alpha + tl.sum(p, 1)
            acc = tl.dot(p.to(c.dtype), c, acc * alpha[:, None])
            m_i = m_new
        out = acc
    seen = l_i > 0  # a split past the end of a short sequence sees no token
    l_safe = tl.where(seen, l_i, 1.0)
    out = out / l_safe[:, None]
    base = (b * n_heads + heads) * n_splits + split
    tl.store(Part + base[:, None] * D_LAT + tl.arange(0, D_LAT)[None, :], out.to(Part.dtype.element_ty),
             mask=hmask[:, None])
    tl.store(Lse + base, tl.where(seen, m_i + tl.math.log2(l_safe), float("-inf")), mask=hmask)


def default_config(n_heads: int, hopper: bool = False) -> dict:
    """The configurations measured fastest (docs/MEASUREMENTS.md): 128 heads are compute-bound
    and run best in the Gluon seesaw kernel on Hopper (H200, 2026-12-04; the split-tile Gluon
    kernel before it on an H100), else in the heads layout; a 16-head shard is memory-bound, and
    the tokens layout needs no padding of its heads."""
    if n_heads > MANY_HEADS and hopper:
        from attn_dse.gpu.mla_decode_seesaw import FIXED
        return {"layout": "seesaw", **FIXED}
    if n_heads > MANY_HEADS:
        return {"layout": "heads", "block_h": 64, "block_n": 64, "num_warps": 8, "num_stages": 2}
    return {"layout": "tokens", "block_h": 16 if n_heads <= 16 else 32, "block_n": 64, "num_warps": 4,
            "num_stages": 2}


def is_hopper(t: torch.Tensor) -> bool:
    return t.is_cuda and torch.cuda.get_device_capability(t.device) == (9, 0)


def choose_splits(batch: int, head_blocks: int, max_len: int, block_n: int, sms: int) -> int:
    """As many splits as fill the SMs in one wave (a program fills an SM's shared memory), none
    shorter than two key tiles, at most 64: a second, partial wave cost 15% at 64 x 8k tokens,
    and 132 splits of one 32k sequence took 40.2 us against 39.2 us for 64 (H100, 16 heads)."""
    return max(1, min(sms // (batch * head_blocks), max_len // (2 * block_n), 64))


def mla_decode(q_nope: torch.Tensor, q_pe: torch.Tensor, kv: torch.Tensor, seq_lens: torch.Tensor,
               n_splits: int | None = None, block_h: int | None = None, block_n: int | None = None,
               num_warps: int | None = None, num_stages: int | None = None, layout: str | None = None,
               sm_scale: float | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
    B, H, D = q_nope.shape
    R = q_pe.shape[-1]
    L = kv.shape[1]
    cfg = default_config(H, is_hopper(kv) and D <= GLUON_LATENT)
    layout = layout or cfg["layout"]
    if layout not in ("tokens", "heads", "wgmma", "seesaw"):
        raise ValueError(f"layout must be 'tokens', 'heads', 'wgmma' or 'seesaw', not {layout!r}")
    scale = sm_scale or 1.0 / math.sqrt(192)  # DeepSeek's softmax scale uses d_nope + d_rope = 192
    if layout in ("wgmma", "seesaw"):
        if not is_hopper(kv):
            raise ValueError(f"layout {layout!r} runs on Hopper GPUs (sm_90) only; use 'heads' or 'tokens'")
        if layout == "wgmma":
            from attn_dse.gpu.mla_decode_wgmma import FIXED, mla_decode_wgmma as kernel
        else:
            from attn_dse.gpu.mla_decode_seesaw import FIXED, mla_decode_seesaw as kernel
        asked = {"block_h": block_h, "block_n": block_n, "num_warps": num_warps, "num_stages": num_stages}
        if any(v is not None and v != FIXED[k] for k, v in asked.items()):
            raise ValueError(f"the {layout} layout's tiles are fixed at {FIXED}, not {asked}")
        # splits of at least two 64-token tiles (the seesaw's pairs of 32)
        n_splits = n_splits or choose_splits(B, triton.cdiv(H, FIXED["block_h"]), L, 64, sm_count(kv.device))
        return kernel(q_nope, q_pe, kv, seq_lens, n_splits, scale, out)
    block_h = block_h or cfg["block_h"]
    block_n = block_n or cfg["block_n"]
    num_warps = num_warps or cfg["num_warps"]
    num_stages = num_stages or cfg["num_stages"]
    if num_warps == 4 and num_stages == 1:  # Triton 3.6 on an H100: wrong results, then an illegal address
        raise ValueError("4 warps need num_stages >= 2 (with 1 stage Triton 3.6 miscompiles this kernel)")
    block_h = min(block_h, max(16, triton.next_power_of_2(H)))
    head_blocks = triton.cdiv(H, block_h)
    n_splits = n_splits or choose_splits(B, head_blocks, L, block_n, sm_count(kv.device))
    split_len = triton.cdiv(triton.cdiv(L, n_splits), block_n) * block_n
    qn2, qp2 = q_nope.reshape(B * H, D), q_pe.reshape(B * H, R)
    kv2 = kv.reshape(B * L, D + R)
    descs = (TensorDescriptor.from_tensor(qn2, [block_h, D]), TensorDescriptor.from_tensor(qp2, [block_h, R]),
             TensorDescriptor(kv2, [B * L, D], [D + R, 1], [block_n, D]),
             TensorDescriptor(kv2[:, D:], [B * L, R], [D + R, 1], [block_n, R]))
    return run_splits(lambda part, lse: _mla_split[(B, head_blocks, n_splits)](
        *descs, seq_lens, part, lse, L, H, n_splits, split_len, scale, D_LAT=D, BLOCK_H=block_h, BLOCK_N=block_n,
        TOKENS_MAJOR=layout == "tokens", num_warps=num_warps, num_stages=num_stages),
        (B, 1, H, D), n_splits, kv, out)[:, 0]


# ---------------------------------------------------------------- check and bench
FAMILY = MlaDecode.name  # the cost model's family these measurements calibrate


def check(rec: Recorder, g: torch.Generator) -> None:
    """Outputs poisoned with NaN, then compared with the float32 reference over ragged shapes."""
    for (B, H, L) in [(2, 128, 3001), (3, 16, 700), (1, 128, 5000), (4, 16, 2049), (2, 96, 1500), (3, 64, 2500)]:
        qn, qp, kv = rnd(B, H, 512), rnd(B, H, 64), rnd(B, L, 576)
        lens = torch.randint(L // 2, L + 1, (B,), generator=g).to(DEV, torch.int32)
        out = torch.full((B, 1, H, 512), float("nan"), device=DEV, dtype=torch.bfloat16)
        for cfg in MLA_CONFIGS[128 if H > 16 else 16]:  # every configuration the tuning may pick
            if cfg[0] in ("wgmma", "seesaw") and not is_hopper(kv):
                continue
            out.fill_(float("nan"))
            run_mla(qn, qp, kv, lens, cfg, out=out)
            rec.check(f"mla_decode B{B} H{H} L{L} {cfg}",
                      rel_err(out[:, 0], mla_decode_ref(qn, qp, kv, lens, 512, 1 / math.sqrt(192))), BF16_BOUND)


MLA_CONFIGS = {  # (layout, block_h, block_n, num_warps, num_stages); 4 warps need 2 stages (1 crashed);
    # the Gluon layouts (Hopper only) have fixed tiles: their other fields are what they run with
    128: [("seesaw", 64, 32, 8, 2), ("wgmma", 64, 64, 8, 2), ("heads", 64, 64, 8, 2), ("tokens", 64, 128, 8, 1)],
    16: [("tokens", 16, 64, 4, 2), ("tokens", 16, 32, 4, 4), ("tokens", 16, 128, 8, 1)]}
MLA_CONFIGS[64] = MLA_CONFIGS[128]  # a two-way tensor-parallel shard of DeepSeek-V3's 128 heads


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



def measure_mla(rec: Recorder) -> None:
    shapes = {128: [(1, 4096), (1, 32768), (8, 8192), (16, 32768), (32, 4096), (64, 1024), (64, 4096), (64, 16384),
                    (128, 4096), (128, 8192), (4, 65536), (256, 2048)],
              # two GPUs' shard: memory-bound at 64 heads a sequence, where 128 are compute-bound
              64: [(1, 32768), (8, 8192), (16, 32768), (32, 32768), (64, 4096), (64, 16384), (128, 8192)],
              16: [(1, 32768), (8, 8192), (16, 32768), (64, 4096), (64, 16384), (128, 8192)]}
    for H, sizes in shapes.items():
        cfg = tune_mla(H)
        for B, L in sizes:
            qn, qp, kv = rnd(B, H, 512), rnd(B, H, 64), rnd(B, L, 576)
            lens = torch.full((B,), L, device=DEV, dtype=torch.int32)
            med, p20, p80 = timed(lambda: run_mla(qn, qp, kv, lens, cfg))
            rec.add(family=FAMILY, variant="mla", phase="decode", batch=B, seq=1, context=L - 1, n_heads=H,
                    n_kv_heads=1, head_dim=576, causal=True, window="", top_k="", block="", dtype="bf16",
                    config=str(cfg), n_split=choose_splits(B, triton.cdiv(H, cfg[1]), L, 64 if cfg[0] == "seesaw" else cfg[2],
                                                            sm_count()), median_s=med,
                    p20_s=p20, p80_s=p80, kv_bytes=B * L * 576 * 2)
            del kv




def bench(rec: Recorder) -> None:
    measure_mla(rec)
