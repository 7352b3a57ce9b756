"""Absorbed MLA decode over FlashMLA's 656-byte fp8 latent row for Hopper, in Gluon: one
warpgroup widens each key tile once in shared memory and runs every MMA as wgmma.

Why this shape (the Triton kernel of mla_decode_fp8.py ran heads-major mma.sync tiles and widened
each latent value once per block of heads: 0.56-0.73x the bf16 kernel at 16 heads): the MMAs run
tokens-major, so a tile's 64 tokens are the M of both products and the heads are the N (16 or
32, no padding to 64 rows):

    S^T [tokens, heads] = C [tokens, 512] . Qn^T + K_rope [tokens, 64] . Qr^T
    O^T [512, heads]   += C^T [512, tokens] . P^T [tokens, heads]

C is the tile widened once: TMA brings the e4m3 latent (and the bf16 RoPE key, untouched) into
shared memory; the warpgroup converts e4m3 pairs to fp16 (exact), multiplies each 128-column
group by its token's fp32 scale (as fp16: 2^-11) and stores the fp16 tile C, which both wgmmas
read, the second through its transpose (16-bit MMA operands may be M-major). The query (fp16
latent part, as the absorption GEMM can write it; bf16 RoPE part) and P^T are the small operands.

Pipelined: tile t's MMAs (async) read one C buffer while the same warps widen tile t + 1 into
the other, half beside the score MMAs and half beside P V; the single fp8 buffer then takes tile
t + 2 by TMA. Shared memory at 16 rows: 32 KB fp8 + 2 x 8 KB RoPE + 2 x 64 KB C + 18 KB query + 2 KB.

Measured on an H200 (2026-12-03): the first, unpipelined version of this kernel (widen, then
MMAs, one tile at a time, 3 TMA stages) passed every check and ran at 1.87-1.99 TB/s of fp8 rows,
about 105 TFLOP/s at 16 heads whatever the shape: 1.00-1.11x our bf16 kernel, latency-bound (one
warp a scheduler, each step waiting on the last; 8 warps were slower, 1.65 TB/s). The pipelined
version compiles for sm_90 without spills (215 registers, 4 warps) but had not yet run on a GPU
when this was written: `tests/gpu/test_mla_decode_fp8.py` checks it.

q_nope [B*Sq*H, 512] fp16, q_rope [B*Sq*H, 64] bf16 (rows: (token, head) pairs, token-major; the
Sq new tokens attend causally among themselves); the packed cache [B, L, 656] uint8; output
partials per split, merged by decode.run_splits. Tokens past a sequence's length must hold
finite values (their probabilities are zero, but 0 x NaN is NaN).
"""
from __future__ import annotations

import torch
import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import (fence_async_shared, mbarrier, tma, warpgroup_mma,
                                                              warpgroup_mma_wait)
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

from attn_dse.gpu.decode import run_splits
from attn_dse.gpu.mla_decode_fp8 import unpack

# Triton 3.6 (the device image) has only the old names, 3.9 only the new
_tma_load = tma.async_load if hasattr(tma, "async_load") else tma.async_copy_global_to_shared
_cta_barrier = gl.barrier if hasattr(gl, "barrier") else gl.thread_barrier

BLOCK_N = 64  # tokens per tile: one warpgroup's wgmma M
ROW_BYTES = 656  # FlashMLA's row (mla_decode_fp8.row_bytes): e4m3 latent, 4 fp32 scales, bf16 RoPE
SCALE_WORD = gl.constexpr(512 // 4)  # the first scale's fp32 word in a row
ROW_WORDS = gl.constexpr(ROW_BYTES // 4)  # fp32 words a row


@gluon.jit
def _fetch(c_desc, kp_desc, row, bar, c_dst, kp_dst, pred):
    """TMA of one tile: its e4m3 latent into the (single) fp8 buffer, its RoPE key into a stage."""
    mbarrier.expect(bar, c_desc.block_type.nbytes + kp_desc.block_type.nbytes, pred=pred)
    _tma_load(c_desc, [row, 0], bar, c_dst, pred=pred)
    _tma_load(kp_desc, [row, 0], bar, kp_dst, pred=pred)


@gluon.jit
def _widen(c8, deq, Scale, b, L, n0, end, g: gl.constexpr, GROUP: gl.constexpr, layout: gl.constexpr):
    """Group g of the e4m3 tile starting at token n0, widened to fp16 and scaled by each token's
    fp32 scale (word SCALE_WORD + g of the ROW_WORDS of its row), into `deq`. A token at or past `end` gets a
    zero scale: its (finite) values stay out."""
    tok = n0 + gl.arange(0, c8.shape[0], layout=gl.SliceLayout(1, layout))
    scale = gl.load(Scale + (b * L + tok).to(gl.int64) * ROW_WORDS + SCALE_WORD + g, mask=tok < end, other=0.0)
    part = c8.slice(g * GROUP, GROUP, dim=1).load(layout)
    deq.slice(g * GROUP, GROUP, dim=1).store(part.to(gl.float16) * scale.to(gl.float16)[:, None])


@gluon.jit
def _widen_half(c8, deq, Scale, b, L, n0, end, half: gl.constexpr, GROUP: gl.constexpr, layout: gl.constexpr):
    _widen(c8, deq, Scale, b, L, n0, end, 2 * half, GROUP, layout)
    _widen(c8, deq, Scale, b, L, n0, end, 2 * half + 1, GROUP, layout)


@gluon.jit
def _mla_fp8_split(qn_desc, qp_desc, c_desc, kp_desc, Scale, Lens, Part, Lse, L, n_heads, seq_q, n_splits,
                   split_len, qk_scale, DEQ_LAYOUT: gl.constexpr, P_LAYOUT: gl.constexpr, num_warps: gl.constexpr):
    BLOCK_H: gl.constexpr = qn_desc.block_type.shape[0]  # (token, head) rows of a program: the MMAs' N
    D_LAT: gl.constexpr = qn_desc.block_type.shape[1]
    BLOCK_N: gl.constexpr = c_desc.block_type.shape[0]
    GROUP: gl.constexpr = D_LAT // 4
    WG: gl.constexpr = num_warps // 4  # warpgroups: they split S^T's heads and O^T's latent rows
    s_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, WG],
                                                       instr_shape=[16, BLOCK_H // WG, 16])
    o_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[num_warps, 1],
                                                       instr_shape=[16, BLOCK_H, 16])
    # widening: each thread takes 16 consecutive e4m3 bytes of a token's group (one 16-byte load)
    w_layout: gl.constexpr = gl.BlockedLayout([1, 16], [4, 8], [num_warps, 1], [1, 0])

    hb = gl.program_id(0)  # the fastest-varying: a sequence's head blocks share its keys in L2
    b = gl.program_id(1)
    split = gl.program_id(2)
    n_rows = seq_q * n_heads
    length = gl.load(Lens + b)
    start = split * split_len
    end = gl.minimum(start + split_len, length)
    n_tiles = gl.cdiv(end - start, BLOCK_N)  # <= 0 for a split past the end of a short sequence

    qn_smem = gl.allocate_shared_memory(qn_desc.dtype, qn_desc.block_type.shape, qn_desc.layout)
    qp_smem = gl.allocate_shared_memory(qp_desc.dtype, qp_desc.block_type.shape, qp_desc.layout)
    c8 = gl.allocate_shared_memory(c_desc.dtype, c_desc.block_type.shape, c_desc.layout)
    kp_smem = gl.allocate_shared_memory(kp_desc.dtype, [2] + kp_desc.block_type.shape, kp_desc.layout)
    deq_smem = gl.allocate_shared_memory(gl.float16, [2, BLOCK_N, D_LAT], DEQ_LAYOUT)
    p_smem = gl.allocate_shared_memory(gl.float16, [BLOCK_N, BLOCK_H], P_LAYOUT)
    bars = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())  # the tile, the query
    for i in gl.static_range(2):
        mbarrier.init(bars.index(i), count=1)
    fence_async_shared()

    row0 = b * n_rows + hb * BLOCK_H  # rows past this sequence's last are masked at the store
    mbarrier.expect(bars.index(1), qn_desc.block_type.nbytes + qp_desc.block_type.nbytes)
    _tma_load(qn_desc, [row0, 0], bars.index(1), qn_smem)
    _tma_load(qp_desc, [row0, 0], bars.index(1), qp_smem)
    # the pipeline: tile t's MMAs read deq[t % 2] while tile t + 1 is widened into the other
    # buffer from the fp8 buffer, which then takes tile t + 2 by TMA
    _fetch(c_desc, kp_desc, b * L + start, bars.index(0), c8, kp_smem.index(0), n_tiles > 0)
    mbarrier.wait(bars.index(0), 0, pred=n_tiles > 0)
    if n_tiles > 0:
        _widen_half(c8, deq_smem.index(0), Scale, b, L, start, end, 0, GROUP, w_layout)
        _widen_half(c8, deq_smem.index(0), Scale, b, L, start, end, 1, GROUP, w_layout)
    _cta_barrier()  # every warp is done reading the fp8 buffer
    _fetch(c_desc, kp_desc, b * L + start + BLOCK_N, bars.index(0), c8, kp_smem.index(1), n_tiles > 1)
    fence_async_shared()

    rows = hb * BLOCK_H + gl.arange(0, BLOCK_H, layout=gl.SliceLayout(0, s_layout))
    last_visible = length - seq_q + rows // n_heads  # causal among the new tokens
    m_i = gl.full([BLOCK_H], float("-inf"), gl.float32, layout=gl.SliceLayout(0, s_layout))
    l_i = gl.zeros([BLOCK_H], gl.float32, layout=gl.SliceLayout(0, s_layout))
    acc = gl.zeros([D_LAT, BLOCK_H], gl.float32, layout=o_layout)
    s_init = gl.zeros([BLOCK_N, BLOCK_H], gl.float32, layout=s_layout)
    mbarrier.wait(bars.index(1), 0)
    _cta_barrier()  # tile 0 widened, in every warp's view
    for t in range(n_tiles):
        cur = t % 2
        n0 = start + t * BLOCK_N
        deq = deq_smem.index(cur)
        nxt = deq_smem.index(1 - cur)
        more = t + 1 < n_tiles
        s = warpgroup_mma(deq, qn_smem.permute((1, 0)), s_init, use_acc=False, is_async=True)
        s = warpgroup_mma(kp_smem.index(cur), qp_smem.permute((1, 0)), s, is_async=True)
        mbarrier.wait(bars.index(0), (t + 1) & 1, pred=more)  # tile t + 1 has landed
        if more:  # beside the score MMAs
            _widen_half(c8, nxt, Scale, b, L, n0 + BLOCK_N, end, 0, GROUP, w_layout)
        s = warpgroup_mma_wait(0, deps=[s])
        toks = n0 + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(1, s_layout))
        keep = (toks < end)[:, None] & (toks[:, None] <= last_visible[None, :])
        s = gl.where(keep, s * qk_scale, float("-inf"))
        m_new = gl.maximum(m_i, gl.max(s, axis=0))
        m_safe = gl.where(m_new == float("-inf"), 0.0, m_new)
        p = gl.exp2(s - m_safe[None, :])
        alpha = gl.exp2(m_i - m_safe)
        l_i = l_i * alpha + gl.sum(p, axis=0)
        m_i = m_new
        acc = acc * gl.convert_layout(alpha, gl.SliceLayout(0, o_layout))[None, :]
        p_smem.store(p.to(gl.float16))
        fence_async_shared()
        _cta_barrier()  # P^T is in shared memory
        acc = warpgroup_mma(deq.permute((1, 0)), p_smem, acc, is_async=True)
        if more:  # beside the P V MMAs
            _widen_half(c8, nxt, Scale, b, L, n0 + BLOCK_N, end, 1, GROUP, w_layout)
        _cta_barrier()  # every warp is done reading the fp8 buffer and this tile's RoPE stage
        _fetch(c_desc, kp_desc, b * L + n0 + 2 * BLOCK_N, bars.index(0), c8, kp_smem.index(cur), t + 2 < n_tiles)
        acc = warpgroup_mma_wait(0, deps=[acc])
        fence_async_shared()
        _cta_barrier()  # the next tile widened, this one's P and C free
    for i in gl.static_range(2):
        mbarrier.invalidate(bars.index(i))

    seen = l_i > 0  # a split past the end of a short sequence sees no token
    l_safe = gl.where(seen, l_i, 1.0)
    out = acc / gl.convert_layout(l_safe, gl.SliceLayout(0, o_layout))[None, :]
    rows_o = hb * BLOCK_H + gl.arange(0, BLOCK_H, layout=gl.SliceLayout(0, o_layout))
    lat = gl.arange(0, D_LAT, layout=gl.SliceLayout(1, o_layout))
    gl.store(Part + ((b * n_rows + rows_o) * n_splits + split).to(gl.int64)[None, :] * D_LAT + lat[:, None],
             out.to(Part.dtype.element_ty), mask=(rows_o < n_rows)[None, :])
    gl.store(Lse + (b * n_rows + rows) * n_splits + split, gl.where(seen, m_i + gl.log2(l_safe), float("-inf")),
             mask=rows < n_rows)


def _nvmma(block: list, dtype) -> gl.NVMMASharedLayout:
    return gl.NVMMASharedLayout.get_default_for(block, dtype)


def descriptors(q_nope2, q_rope2, packed2, block_h: int):
    """TMA descriptors: the query's two parts [rows, 512] fp16 / [rows, 64] bf16, and the cache's
    e4m3 latent [B*L, 512] and bf16 RoPE key [B*L, 64], both with the 656-byte row stride."""
    D, R = q_nope2.shape[1], q_rope2.shape[1]
    lat, _, rope = unpack(packed2, D, R)
    n = packed2.shape[0]
    return (TensorDescriptor(q_nope2, list(q_nope2.shape), [D, 1], [block_h, D], _nvmma([block_h, D], gl.float16)),
            TensorDescriptor(q_rope2, list(q_rope2.shape), [R, 1], [block_h, R], _nvmma([block_h, R], gl.bfloat16)),
            TensorDescriptor(lat, [n, D], [ROW_BYTES, 1], [BLOCK_N, D], _nvmma([BLOCK_N, D], gl.float8e4nv)),
            TensorDescriptor(rope, [n, R], [ROW_BYTES // 2, 1], [BLOCK_N, R], _nvmma([BLOCK_N, R], gl.bfloat16)))


def mla_decode_fp8_wgmma(q_nope: torch.Tensor, q_rope: torch.Tensor, packed: torch.Tensor, seq_lens: torch.Tensor,
                         n_splits: int, sm_scale: float, block_h: int = 16, num_warps: int = 4,
                         out: torch.Tensor | None = None) -> torch.Tensor:
    """q_nope [B, Sq, H, 512] (fp16, or rounded to it), q_rope [B, Sq, H, 64] (bf16) against the
    packed cache [B, L, 656]; seq_lens [B] int32 count the new tokens. block_h: (token, head) rows
    a program computes (16 or 32), num_warps: 4 or 8 (one or two warpgroups widening and
    multiplying)."""
    B, Sq, H, D = q_nope.shape
    R = q_rope.shape[-1]
    L = packed.shape[1]
    if packed.shape[-1] != ROW_BYTES or (D, R) != (512, 64):
        raise ValueError(f"the wgmma fp8 kernel takes FlashMLA's row (512 + 64, 656 B), not {D} + {R}, "
                         f"{packed.shape[-1]} B")
    split_len = triton.cdiv(triton.cdiv(L, n_splits), BLOCK_N) * BLOCK_N
    qn2 = q_nope.reshape(B * Sq * H, D).to(torch.float16)
    qp2 = q_rope.reshape(B * Sq * H, R).to(torch.bfloat16)
    packed2 = packed.reshape(B * L, ROW_BYTES)
    descs = descriptors(qn2, qp2, packed2, block_h)
    scale = packed2.view(torch.float32)
    grid = (triton.cdiv(Sq * H, block_h), B, n_splits)
    return run_splits(lambda part, lse: _mla_fp8_split[grid](
        *descs, scale, seq_lens, part, lse, L, H, Sq, n_splits, split_len, sm_scale * 1.4426950408889634,
        DEQ_LAYOUT=_nvmma([BLOCK_N, D], gl.float16), P_LAYOUT=_nvmma([BLOCK_N, block_h], gl.float16),
        num_warps=num_warps), (B, Sq, H, D), n_splits, q_nope, out)
