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

Three ways to feed the buffers:
- warp-specialized (`_mla_fp8_ws`, config layout "ws"): a loader warp brings each tile by TMA
  into a ring of stages (2 or 3), a widening warpgroup widens it into a free fp16 buffer C, and
  the consumer warpgroup runs the MMAs and the softmax on C; each buffer is released by its last
  reader through mbarriers. The widening of tile t + 1 runs on warps of its own beside tile t's
  MMAs. Shared memory at 16 rows, 2 stages, 1 buffer: 2 x 41 KB + 64 KB + 20 KB = 166 KB.
  On an H100 (docs/device-logs/h100-mla-fp8-ws-ab-2026-12-05.log), 16 heads, at B64 and
  B128 x 32k: 2.65-2.71 TB/s of fp8 rows, 1.55-1.57x our bf16 kernel (3.0 TB/s of bf16 rows) in the
  same run, where the kernels below reach 1.19-1.21x. Two buffers with a single stage
  (1.85 TB/s), a third stage (no faster) and two widening warpgroups (no faster) lost: a tile
  has to be in flight while the last one is widened. Two buffers and two stages (235 KB) do not fit
  as they are; the RoPE key loaded by the consumer straight into its score MMA's register operand
  (a tile ahead; layout "wsr") frees the stages' 16 KB of it: two buffers and two stages in 219 KB.
  In one A/B run on an H100 (docs/device-logs/h100-mla-fp8-wsr-ab-2026-12-05.log) "wsr" read
  2.66-2.73 TB/s at B64 and B128 x 32k against 2.61-2.66 for "ws": 1.57-1.59x our bf16 kernel
  (2.99-3.04 TB/s). Tried and not kept: each latent half handed to the score MMA as it is widened
  (0.97-0.98x, H200, h200-mla-fp8-ws-halves-ab-2026-12-05.log) and stages of half a tile, released
  as each half is widened, four of them (no faster than "wsr", h100-mla-fp8-wsr-ab log). The same
  kernel reads 2.74-2.78 TB/s on an H200, whose HBM is 1.4x faster: the per-tile shared-memory
  traffic (~230 KB a 64-token tile, below) bounds it at 16 heads, not the HBM.
The two earlier kernels (the config's stages field):
- 2 buffers (`_mla_fp8_split`), pipelined: tile t's MMAs (async) read one C buffer while the
  same warps widen tile t + 1 into the other, half beside the score MMAs and half beside P V; a
  single fp8 buffer takes tile t + 2 by TMA, with its scales (a 16-byte box of each row) and
  RoPE key in a stage of their own. Shared memory at 16 rows: 32 KB fp8 + 2 x (8 KB RoPE + 1 KB
  scales + 64 KB C) + 18 KB query + 2 KB: the program holds its SM alone.
- 1 buffer (`_mla_fp8_split_regs`): rows through registers, two programs an SM.

Measured on an H200 (docs/device-logs/h200-mla-decode-fp8-*-2026-12-03.*), 16 heads, fp8 rows
read per second at B64 x 32k, against 3.4 TB/s of bf16 rows for our bf16 kernel:
- a first, unpipelined version (widen, then MMAs, 3 TMA stages; not kept): 1.87-1.99 TB/s;
- the pipelined version loading scales with plain loads in the widening: 1.55 TB/s, slower;
- scales by TMA: 1.69-1.79 TB/s; 1 buffer, two programs an SM: 1.74-1.88 TB/s with twice the
  splits (1.29-1.31 with one program an SM);
- the widening's stores contiguous (8 bytes a thread, one 16-byte store; before: 16 bytes a
  thread, two stores in bank conflict): 1.06x (2 buffers) and 1.12x (1 buffer) faster in one
  A/B run; 1 buffer now 1.95-2.01 TB/s, 1.01-1.12x our bf16 kernel at 16 heads (v8 log).
Every version runs at about the same time a tile whatever the heads (94-116 TFLOP/s at 16
heads, 182-191 at 32): the per-tile shared-memory work (the widening's stores, the A operand
reads of N = 16 wgmmas, ~230 KB a tile) bounds it, not the overlap. Short of the 1.6x the fp8
bytes allow.

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
from attn_dse.gpu.flashmla_row import row_bytes, unpack

# Triton 3.6 (the device image) has only the old names, 3.9 only the new
_tma_load = tma.async_load if hasattr(tma, "async_load") else tma.async_copy_global_to_shared
_cta_barrier = gl.barrier if hasattr(gl, "barrier") else gl.thread_barrier

BLOCK_N = 64  # tokens per tile: one warpgroup's wgmma M
LOG2E = 1.4426950408889634
ROW_BYTES = row_bytes()  # FlashMLA's 656-byte row: e4m3 latent, 4 fp32 scales, bf16 RoPE
TILE_N, ROW = gl.constexpr(BLOCK_N), gl.constexpr(ROW_BYTES)  # as the kernels see them
WIDEN_REGS = gl.constexpr(96)  # the warp-specialized kernel's widening warpgroup (its loader warp: 24)
WS_MAXNREG = 168  # registers a thread at launch (3 warpgroups: 384 threads of the SM's 64K registers)


@gluon.jit
def _fetch(c_desc, kp_desc, sc_desc, row, bar, c_dst, kp_dst, sc_dst, pred):
    """TMA of one tile: its e4m3 latent into the (single) fp8 buffer, its RoPE key and its
    scales into a stage."""
    mbarrier.expect(bar, c_desc.block_type.nbytes + kp_desc.block_type.nbytes + sc_desc.block_type.nbytes,
                    pred=pred)
    _tma_load(c_desc, [row, 0], bar, c_dst, pred=pred)
    _tma_load(kp_desc, [row, 0], bar, kp_dst, pred=pred)
    _tma_load(sc_desc, [row, 0], bar, sc_dst, pred=pred)


@gluon.jit
def _widen(c8, deq, sc, n0, end, g: gl.constexpr, GROUP: gl.constexpr, layout: gl.constexpr):
    """Group g of the e4m3 tile starting at token n0, widened to fp16 and scaled by each token's
    fp32 scale (column g of the tile's scales `sc`, in shared memory), into `deq`. A token at or
    past `end` gets a zero scale: its (finite) values stay out."""
    tok = n0 + gl.arange(0, c8.shape[0], layout=gl.SliceLayout(1, layout))
    scale = gl.where((tok < end)[:, None], sc.slice(g, 1, dim=1).load(layout), 0.0)
    part = c8.slice(g * GROUP, GROUP, dim=1).load(layout)
    deq.slice(g * GROUP, GROUP, dim=1).store(part.to(gl.float16) * scale.to(gl.float16))


@gluon.jit
def _widen_half(c8, deq, sc, n0, end, half: gl.constexpr, GROUP: gl.constexpr, layout: gl.constexpr):
    _widen(c8, deq, sc, n0, end, 2 * half, GROUP, layout)
    _widen(c8, deq, sc, n0, end, 2 * half + 1, GROUP, layout)


@gluon.jit
def _program(Lens, split_len):
    """This program's share: head block hb (the fastest-varying: a sequence's head blocks share
    its keys in L2), sequence b and split; the sequence's length and the split's tokens
    [start, end) in n_tiles key tiles (<= 0 for a split past the end of a short sequence)."""
    hb = gl.program_id(0)
    b = gl.program_id(1)
    split = gl.program_id(2)
    length = gl.load(Lens + b)
    start = split * split_len
    end = gl.minimum(start + split_len, length)
    return hb, b, split, length, start, end, gl.cdiv(end - start, TILE_N)


@gluon.jit
def _softmax_start(hb, length, seq_q, n_heads, BLOCK_H: gl.constexpr, D_LAT: gl.constexpr, s_layout: gl.constexpr,
                   o_layout: gl.constexpr):
    """Each row's last visible token (the Sq new tokens attend causally among themselves), and
    the empty running max, sum and O^T."""
    rows = hb * BLOCK_H + gl.arange(0, BLOCK_H, layout=gl.SliceLayout(0, s_layout))
    last_visible = length - seq_q + rows // n_heads
    m_i = gl.full([BLOCK_H], float("-inf"), gl.float32, layout=gl.SliceLayout(0, s_layout))
    l_i = gl.zeros([BLOCK_H], gl.float32, layout=gl.SliceLayout(0, s_layout))
    return last_visible, m_i, l_i, gl.zeros([D_LAT, BLOCK_H], gl.float32, layout=o_layout)


@gluon.jit
def _online_softmax(s, m_i, l_i, acc, n0, end, last_visible, qk_scale, p_smem, o_layout: gl.constexpr):
    """One tile of the online softmax over S^T [tokens, rows]: tokens at or past `end` and past
    each row's last visible token masked, the running max and sum updated, O^T rescaled, and P^T
    stored (fp16) for the P V wgmma. Returns (max, sum, O^T)."""
    toks = n0 + gl.arange(0, s.shape[0], layout=gl.SliceLayout(1, s.type.layout))
    keep = (toks < end)[:, None] & (toks[:, None] <= last_visible[None, :])
    s = gl.where(keep, s * qk_scale, float("-inf"))
    m_new = gl.maximum(m_i, gl.max(s, axis=0))
    m_safe = gl.where(m_new == float("-inf"), 0.0, m_new)
    p = gl.exp2(s - m_safe[None, :])
    alpha = gl.exp2(m_i - m_safe)
    l_i = l_i * alpha + gl.sum(p, axis=0)
    acc = acc * gl.convert_layout(alpha, gl.SliceLayout(0, o_layout))[None, :]
    p_smem.store(p.to(gl.float16))
    fence_async_shared()
    return m_new, l_i, acc


@gluon.jit
def _mla_fp8_split(qn_desc, qp_desc, c_desc, kp_desc, sc_desc, Lens, Part, Lse, L, n_heads, seq_q, n_splits,
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
    # widening: each thread takes 8 consecutive e4m3 bytes of a token's group and stores them as
    # one 16-byte fp16 store, a row's 16 threads side by side (16 bytes a thread, two stores:
    # 0.89-0.95x the speed, the stores' banks in conflict)
    w_layout: gl.constexpr = gl.BlockedLayout([1, 8], [2, 16], [num_warps, 1], [1, 0])

    hb, b, split, length, start, end, n_tiles = _program(Lens, split_len)
    n_rows = seq_q * n_heads

    qn_smem = gl.allocate_shared_memory(qn_desc.dtype, qn_desc.block_type.shape, qn_desc.layout)
    qp_smem = gl.allocate_shared_memory(qp_desc.dtype, qp_desc.block_type.shape, qp_desc.layout)
    c8 = gl.allocate_shared_memory(c_desc.dtype, c_desc.block_type.shape, c_desc.layout)
    kp_smem = gl.allocate_shared_memory(kp_desc.dtype, [2] + kp_desc.block_type.shape, kp_desc.layout)
    sc_smem = gl.allocate_shared_memory(sc_desc.dtype, [2] + sc_desc.block_type.shape, sc_desc.layout)
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
    _fetch(c_desc, kp_desc, sc_desc, b * L + start, bars.index(0), c8, kp_smem.index(0), sc_smem.index(0),
           n_tiles > 0)
    mbarrier.wait(bars.index(0), 0, pred=n_tiles > 0)
    if n_tiles > 0:
        _widen_half(c8, deq_smem.index(0), sc_smem.index(0), start, end, 0, GROUP, w_layout)
        _widen_half(c8, deq_smem.index(0), sc_smem.index(0), start, end, 1, GROUP, w_layout)
    _cta_barrier()  # every warp is done reading the fp8 buffer
    _fetch(c_desc, kp_desc, sc_desc, b * L + start + BLOCK_N, bars.index(0), c8, kp_smem.index(1),
           sc_smem.index(1), n_tiles > 1)
    fence_async_shared()

    last_visible, m_i, l_i, acc = _softmax_start(hb, length, seq_q, n_heads, BLOCK_H, D_LAT, s_layout, o_layout)
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
            _widen_half(c8, nxt, sc_smem.index(1 - cur), n0 + BLOCK_N, end, 0, GROUP, w_layout)
        s = warpgroup_mma_wait(0, deps=[s])
        m_i, l_i, acc = _online_softmax(s, m_i, l_i, acc, n0, end, last_visible, qk_scale, p_smem, o_layout)
        _cta_barrier()  # P^T is in shared memory
        acc = warpgroup_mma(deq.permute((1, 0)), p_smem, acc, is_async=True)
        if more:  # beside the P V MMAs
            _widen_half(c8, nxt, sc_smem.index(1 - cur), n0 + BLOCK_N, end, 1, GROUP, w_layout)
        _cta_barrier()  # every warp is done reading the fp8 buffer and this tile's RoPE stage
        _fetch(c_desc, kp_desc, sc_desc, b * L + n0 + 2 * BLOCK_N, bars.index(0), c8, kp_smem.index(cur),
               sc_smem.index(cur), t + 2 < n_tiles)
        acc = warpgroup_mma_wait(0, deps=[acc])
        fence_async_shared()
        _cta_barrier()  # the next tile widened, this one's P and C free
    for i in gl.static_range(2):
        mbarrier.invalidate(bars.index(i))
    _store_out(Part, Lse, acc, m_i, l_i, b, n_rows, hb, split, n_splits, BLOCK_H, D_LAT, s_layout, o_layout)


@gluon.jit
def _store_out(Part, Lse, acc, m_i, l_i, b, n_rows, hb, split, n_splits, BLOCK_H: gl.constexpr, D_LAT: gl.constexpr,
               s_layout: gl.constexpr, o_layout: gl.constexpr):
    """A split's normalized output O^T and its log-sum-exp, for decode.run_splits to merge."""
    seen = l_i > 0  # a split past the end of a short sequence sees no token
    l_safe = gl.where(seen, l_i, 1.0)
    out = acc / gl.convert_layout(l_safe, gl.SliceLayout(0, o_layout))[None, :]
    rows_o = hb * BLOCK_H + gl.arange(0, BLOCK_H, layout=gl.SliceLayout(0, o_layout))
    lat = gl.arange(0, D_LAT, layout=gl.SliceLayout(1, o_layout))
    gl.store(Part + ((b * n_rows + rows_o) * n_splits + split).to(gl.int64)[None, :] * D_LAT + lat[:, None],
             out.to(Part.dtype.element_ty), mask=(rows_o < n_rows)[None, :])
    rows = hb * BLOCK_H + gl.arange(0, BLOCK_H, layout=gl.SliceLayout(0, s_layout))
    gl.store(Lse + (b * n_rows + rows) * n_splits + split, gl.where(seen, m_i + gl.log2(l_safe), float("-inf")),
             mask=rows < n_rows)


@gluon.jit
def _row_loads(Lat, Scale, Rope, b, L, n0, end, GROUP: gl.constexpr, D_LAT: gl.constexpr, D_ROPE: gl.constexpr,
               w_layout: gl.constexpr, r_layout: gl.constexpr):
    """The cache rows of the tile at token n0, global memory to registers: the 4 e4m3 groups
    (each thread 8 consecutive bytes of a row's group), their fp32 scales and the bf16 RoPE
    key. Tokens at or past `end` load nothing (zero values, zero scales)."""
    first = (b * L + n0).to(gl.int64)  # the tile's first row: offsets within the tile stay 32-bit
    tok = gl.arange(0, TILE_N, layout=gl.SliceLayout(1, w_layout))
    live = (n0 + tok) < end
    lat = Lat + first * ROW + (tok * ROW)[:, None] + gl.arange(0, GROUP, layout=gl.SliceLayout(0, w_layout))[None, :]
    sc = Scale + first * (ROW // 4) + tok * (ROW // 4) + D_LAT // 4
    x0 = gl.load(lat, mask=live[:, None], other=0.0)
    x1 = gl.load(lat + GROUP, mask=live[:, None], other=0.0)
    x2 = gl.load(lat + 2 * GROUP, mask=live[:, None], other=0.0)
    x3 = gl.load(lat + 3 * GROUP, mask=live[:, None], other=0.0)
    s0 = gl.load(sc, mask=live, other=0.0)
    s1 = gl.load(sc + 1, mask=live, other=0.0)
    s2 = gl.load(sc + 2, mask=live, other=0.0)
    s3 = gl.load(sc + 3, mask=live, other=0.0)
    tok_r = gl.arange(0, TILE_N, layout=gl.SliceLayout(1, r_layout))
    rope = Rope + first * (ROW // 2) + (tok_r * (ROW // 2) + (D_LAT + 16) // 2)[:, None] \
        + gl.arange(0, D_ROPE, layout=gl.SliceLayout(0, r_layout))[None, :]
    r = gl.load(rope, mask=((n0 + tok_r) < end)[:, None], other=0.0)
    return x0, x1, x2, x3, s0, s1, s2, s3, r


@gluon.jit
def _store_group(deq, x, scale, g: gl.constexpr, GROUP: gl.constexpr):
    deq.slice(g * GROUP, GROUP, dim=1).store(x.to(gl.float16) * scale.to(gl.float16)[:, None])


@gluon.jit
def _mla_fp8_split_regs(qn_desc, qp_desc, Lat, Scale, Rope, Lens, Part, Lse, L, n_heads, seq_q, n_splits, split_len,
                        qk_scale, DEQ_LAYOUT: gl.constexpr, KP_LAYOUT: gl.constexpr, P_LAYOUT: gl.constexpr,
                        num_warps: gl.constexpr):
    """One widened buffer, two programs an SM: each tile's rows go from global memory through
    registers (widened there) into the single buffer, then both MMAs run on it, one step after
    another. With 92 KB of shared memory (16 rows) two programs share an SM and hide each other's
    waits, where the double-buffered kernel above holds the SM alone. (Loading the next tile
    into registers during the MMAs spilled 1.7 KB a thread: each e4m3 value took a register.)"""
    BLOCK_H: gl.constexpr = qn_desc.block_type.shape[0]
    D_LAT: gl.constexpr = qn_desc.block_type.shape[1]
    D_ROPE: gl.constexpr = qp_desc.block_type.shape[1]
    GROUP: gl.constexpr = D_LAT // 4
    s_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                       instr_shape=[16, BLOCK_H, 16])
    o_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                       instr_shape=[16, BLOCK_H, 16])
    w_layout: gl.constexpr = gl.BlockedLayout([1, 8], [2, 16], [4, 1], [1, 0])  # as in _mla_fp8_split
    r_layout: gl.constexpr = gl.BlockedLayout([1, 8], [4, 8], [4, 1], [1, 0])

    hb, b, split, length, start, end, n_tiles = _program(Lens, split_len)
    n_rows = seq_q * n_heads

    qn_smem = gl.allocate_shared_memory(qn_desc.dtype, qn_desc.block_type.shape, qn_desc.layout)
    qp_smem = gl.allocate_shared_memory(qp_desc.dtype, qp_desc.block_type.shape, qp_desc.layout)
    deq = gl.allocate_shared_memory(gl.float16, [TILE_N, D_LAT], DEQ_LAYOUT)
    kp_smem = gl.allocate_shared_memory(gl.bfloat16, [TILE_N, D_ROPE], KP_LAYOUT)
    p_smem = gl.allocate_shared_memory(gl.float16, [TILE_N, BLOCK_H], P_LAYOUT)
    bar = gl.allocate_shared_memory(gl.int64, [1, 1], mbarrier.MBarrierLayout())
    mbarrier.init(bar.index(0), count=1)
    fence_async_shared()
    row0 = b * n_rows + hb * BLOCK_H
    mbarrier.expect(bar.index(0), qn_desc.block_type.nbytes + qp_desc.block_type.nbytes)
    _tma_load(qn_desc, [row0, 0], bar.index(0), qn_smem)
    _tma_load(qp_desc, [row0, 0], bar.index(0), qp_smem)

    last_visible, m_i, l_i, acc = _softmax_start(hb, length, seq_q, n_heads, BLOCK_H, D_LAT, s_layout, o_layout)
    s_init = gl.zeros([TILE_N, BLOCK_H], gl.float32, layout=s_layout)
    mbarrier.wait(bar.index(0), 0)
    for t in range(n_tiles):
        n0 = start + t * TILE_N
        x0, x1, x2, x3, s0, s1, s2, s3, r = _row_loads(Lat, Scale, Rope, b, L, n0, end, GROUP, D_LAT,
                                                       D_ROPE, w_layout, r_layout)
        _store_group(deq, x0, s0, 0, GROUP)
        _store_group(deq, x1, s1, 1, GROUP)
        _store_group(deq, x2, s2, 2, GROUP)
        _store_group(deq, x3, s3, 3, GROUP)
        kp_smem.store(r)
        fence_async_shared()
        _cta_barrier()  # the tile is widened, in every warp's view
        s = warpgroup_mma(deq, qn_smem.permute((1, 0)), s_init, use_acc=False, is_async=True)
        s = warpgroup_mma(kp_smem, qp_smem.permute((1, 0)), s, is_async=True)
        s = warpgroup_mma_wait(0, deps=[s])
        m_i, l_i, acc = _online_softmax(s, m_i, l_i, acc, n0, end, last_visible, qk_scale, p_smem, o_layout)
        _cta_barrier()  # P^T is in shared memory
        acc = warpgroup_mma(deq.permute((1, 0)), p_smem, acc, is_async=True)
        acc = warpgroup_mma_wait(0, deps=[acc])
        _cta_barrier()  # the buffer, the RoPE key and P are free for the next tile
    mbarrier.invalidate(bar.index(0))
    _store_out(Part, Lse, acc, m_i, l_i, b, n_rows, hb, split, n_splits, BLOCK_H, D_LAT, s_layout, o_layout)


@gluon.jit
def _ws_load(qn_desc, qp_desc, c_desc, kp_desc, sc_desc, qn_smem, qp_smem, c8, kp_smem, sc_smem, bars, b, L, row0,
             start, n_tiles, ROPE_REGS: gl.constexpr):
    """The loader warp: the query once, then each tile's e4m3 latent, RoPE key and scales into
    the ring of stages, a stage reused once the widening warps and the consumer release it."""
    q_ready, ready, free, c_ready, c_free = bars
    STAGES: gl.constexpr = c8.type.shape[0]
    mbarrier.expect(q_ready.index(0), qn_desc.block_type.nbytes + qp_desc.block_type.nbytes)
    _tma_load(qn_desc, [row0, 0], q_ready.index(0), qn_smem)
    _tma_load(qp_desc, [row0, 0], q_ready.index(0), qp_smem)
    for t in range(n_tiles):
        st = t % STAGES
        mbarrier.wait(free.index(st), ((t // STAGES) & 1) ^ 1)  # a fresh barrier passes phase 1
        row = b * L + start + t * TILE_N
        if ROPE_REGS:  # the consumer loads the RoPE key itself
            mbarrier.expect(ready.index(st), c_desc.block_type.nbytes + sc_desc.block_type.nbytes)
            _tma_load(c_desc, [row, 0], ready.index(st), c8.index(st))
            _tma_load(sc_desc, [row, 0], ready.index(st), sc_smem.index(st))
        else:
            _fetch(c_desc, kp_desc, sc_desc, row, ready.index(st), c8.index(st), kp_smem.index(st),
                   sc_smem.index(st), True)


@gluon.jit
def _ws_widen(c8, sc_smem, deq_smem, bars, start, end, n_tiles):
    """The widening warpgroup: each landed e4m3 tile, scaled, into a free fp16 buffer C (two
    widening warpgroups, each half the rows, ran no faster on an H100)."""
    q_ready, ready, free, c_ready, c_free = bars
    STAGES: gl.constexpr = c8.type.shape[0]
    BUFS: gl.constexpr = deq_smem.type.shape[0]
    GROUP: gl.constexpr = c8.type.shape[2] // 4
    w_layout: gl.constexpr = gl.BlockedLayout([1, 8], [2, 16], [4, 1], [1, 0])  # as in _mla_fp8_split
    for t in range(n_tiles):
        st = t % STAGES
        cb = t % BUFS
        mbarrier.wait(ready.index(st), (t // STAGES) & 1)
        mbarrier.wait(c_free.index(cb), ((t // BUFS) & 1) ^ 1)
        for g in gl.static_range(4):
            _widen(c8.index(st), deq_smem.index(cb), sc_smem.index(st), start + t * TILE_N, end, g, GROUP, w_layout)
        fence_async_shared()  # the fp16 stores, before the wgmmas read them
        _cta_barrier()  # every warp of the group has widened its part
        mbarrier.arrive(free.index(st), count=1)
        mbarrier.arrive(c_ready.index(cb), count=1)


@gluon.jit
def _ws_consume(qn_smem, qp_smem, kp_smem, deq_smem, p_smem, bars, Part, Lse, Rope, b, hb, split, n_splits, length,
                seq_q, n_heads, n_rows, L, end, start, n_tiles, qk_scale, STAGES: gl.constexpr,
                ROPE_REGS: gl.constexpr):
    """The consumer warpgroup: per tile, S^T = C Qn^T + K_rope Qr^T, the online softmax, and
    O^T += C^T P^T, each buffer released as soon as its last reader is done; then the split's
    output."""
    q_ready, ready, free, c_ready, c_free = bars
    BUFS: gl.constexpr = deq_smem.type.shape[0]
    BLOCK_H: gl.constexpr = qn_smem.type.shape[0]
    D_LAT: gl.constexpr = qn_smem.type.shape[1]
    s_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                       instr_shape=[16, BLOCK_H, 16])
    o_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                       instr_shape=[16, BLOCK_H, 16])
    last_visible, m_i, l_i, acc = _softmax_start(hb, length, seq_q, n_heads, BLOCK_H, D_LAT, s_layout, o_layout)
    s_init = gl.zeros([TILE_N, BLOCK_H], gl.float32, layout=s_layout)
    if ROPE_REGS:  # the RoPE key straight into the score MMA's left operand, a tile ahead
        r_op: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=s_layout, k_width=2)
        D_ROPE: gl.constexpr = qp_smem.type.shape[1]
        tok_r = gl.arange(0, TILE_N, layout=gl.SliceLayout(1, r_op))
        rope = Rope + (b.to(gl.int64) * L + start) * (ROW // 2) + (tok_r * (ROW // 2) + (D_LAT + 16) // 2)[:, None] \
            + gl.arange(0, D_ROPE, layout=gl.SliceLayout(0, r_op))[None, :]
        r_next = gl.load(rope, mask=((start + tok_r) < end)[:, None], other=0.0)
    mbarrier.wait(q_ready.index(0), 0)
    st = 0  # the stage and its phase, counted (t % 3 and t // 3 spilled at 3 stages)
    phase = 0
    for t in range(n_tiles):
        cb = t % BUFS
        if ROPE_REGS:
            r = r_next
            rope += TILE_N * (ROW // 2)
            r_next = gl.load(rope, mask=((start + (t + 1) * TILE_N + tok_r) < end)[:, None], other=0.0)
        else:
            mbarrier.wait(ready.index(st), phase)  # the RoPE key (its phase holds: we release it)
        mbarrier.wait(c_ready.index(cb), (t // BUFS) & 1)
        deq = deq_smem.index(cb)
        s = warpgroup_mma(deq, qn_smem.permute((1, 0)), s_init, use_acc=False, is_async=True)
        s = warpgroup_mma(r if ROPE_REGS else kp_smem.index(st), qp_smem.permute((1, 0)), s, is_async=True)
        s = warpgroup_mma_wait(0, deps=[s])
        if not ROPE_REGS:
            mbarrier.arrive(free.index(st), count=1)
        m_i, l_i, acc = _online_softmax(s, m_i, l_i, acc, start + t * TILE_N, end, last_visible, qk_scale, p_smem,
                                        o_layout)
        _cta_barrier()  # P^T is in shared memory
        acc = warpgroup_mma(deq.permute((1, 0)), p_smem, acc, is_async=True)
        acc = warpgroup_mma_wait(0, deps=[acc])
        mbarrier.arrive(c_free.index(cb), count=1)
        st += 1
        if st == STAGES:
            st = 0
            phase ^= 1
    _store_out(Part, Lse, acc, m_i, l_i, b, n_rows, hb, split, n_splits, BLOCK_H, D_LAT, s_layout, o_layout)


@gluon.jit
def _mla_fp8_ws(qn_desc, qp_desc, c_desc, kp_desc, sc_desc, Rope, Lens, Part, Lse, L, n_heads, seq_q, n_splits,
                split_len, qk_scale, DEQ_LAYOUT: gl.constexpr, P_LAYOUT: gl.constexpr, STAGES: gl.constexpr,
                BUFS: gl.constexpr, ROPE_REGS: gl.constexpr):
    """Warp-specialized: a loader warp (TMA into STAGES stages of e4m3 latent, RoPE key and
    scales), a widening warpgroup (each stage into one of BUFS fp16 buffers C) and the consumer
    warpgroup (the MMAs and the softmax), so the widening of the next tile runs beside this
    tile's MMAs on warps of its own, where _mla_fp8_split issues both from the same warps."""
    hb, b, split, length, start, end, n_tiles = _program(Lens, split_len)
    n_rows = seq_q * n_heads
    qn_smem = gl.allocate_shared_memory(qn_desc.dtype, qn_desc.block_type.shape, qn_desc.layout)
    qp_smem = gl.allocate_shared_memory(qp_desc.dtype, qp_desc.block_type.shape, qp_desc.layout)
    c8 = gl.allocate_shared_memory(c_desc.dtype, [STAGES] + c_desc.block_type.shape, c_desc.layout)
    sc_smem = gl.allocate_shared_memory(sc_desc.dtype, [STAGES] + sc_desc.block_type.shape, sc_desc.layout)
    if ROPE_REGS:  # no RoPE key in shared memory (16 KB at 2 stages): room for a second buffer C
        kp_smem = sc_smem
    else:
        kp_smem = gl.allocate_shared_memory(kp_desc.dtype, [STAGES] + kp_desc.block_type.shape, kp_desc.layout)
    deq_smem = gl.allocate_shared_memory(gl.float16, [BUFS, TILE_N, qn_desc.block_type.shape[1]], DEQ_LAYOUT)
    p_smem = gl.allocate_shared_memory(gl.float16, [TILE_N, qn_desc.block_type.shape[0]], P_LAYOUT)
    q_ready = gl.allocate_shared_memory(gl.int64, [1, 1], mbarrier.MBarrierLayout())
    ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    free = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    c_ready = gl.allocate_shared_memory(gl.int64, [BUFS, 1], mbarrier.MBarrierLayout())
    c_free = gl.allocate_shared_memory(gl.int64, [BUFS, 1], mbarrier.MBarrierLayout())
    mbarrier.init(q_ready.index(0), count=1)
    for i in gl.static_range(STAGES):
        mbarrier.init(ready.index(i), count=1)
        mbarrier.init(free.index(i), count=1 if ROPE_REGS else 2)  # the widening; the consumer (RoPE key)
    for i in gl.static_range(BUFS):
        mbarrier.init(c_ready.index(i), count=1)
        mbarrier.init(c_free.index(i), count=1)
    fence_async_shared()
    bars = (q_ready, ready, free, c_ready, c_free)
    row0 = b * n_rows + hb * qn_desc.block_type.shape[0]
    gl.warp_specialize([
        (_ws_consume, (qn_smem, qp_smem, kp_smem, deq_smem, p_smem, bars, Part, Lse, Rope, b, hb, split, n_splits,
                       length, seq_q, n_heads, n_rows, L, end, start, n_tiles, qk_scale, STAGES, ROPE_REGS)),
        (_ws_widen, (c8, sc_smem, deq_smem, bars, start, end, n_tiles)),
        (_ws_load, (qn_desc, qp_desc, c_desc, kp_desc, sc_desc, qn_smem, qp_smem, c8, kp_smem, sc_smem, bars, b, L,
                    row0, start, n_tiles, ROPE_REGS)),
    ], [4, 1], [WIDEN_REGS, 24])


def _nvmma(block: list, dtype) -> gl.NVMMASharedLayout:
    return gl.NVMMASharedLayout.get_default_for(block, dtype)


def descriptors(q_nope2, q_rope2, packed2, block_h: int):
    """TMA descriptors: the query's two parts [rows, 512] fp16 / [rows, 64] bf16, and the cache's
    e4m3 latent [B*L, 512], bf16 RoPE key [B*L, 64] and fp32 scales [B*L, 4], all with the
    656-byte row stride (a box of 4 scales is TMA's 16-byte minimum)."""
    D, R = q_nope2.shape[1], q_rope2.shape[1]
    lat, scales, rope = unpack(packed2, D, R)
    n = packed2.shape[0]
    G = scales.shape[-1]
    return (TensorDescriptor(q_nope2, list(q_nope2.shape), [D, 1], [block_h, D], _nvmma([block_h, D], gl.float16)),
            TensorDescriptor(q_rope2, list(q_rope2.shape), [R, 1], [block_h, R], _nvmma([block_h, R], gl.bfloat16)),
            TensorDescriptor(lat, [n, D], [ROW_BYTES, 1], [BLOCK_N, D], _nvmma([BLOCK_N, D], gl.float8e4nv)),
            TensorDescriptor(rope, [n, R], [ROW_BYTES // 2, 1], [BLOCK_N, R], _nvmma([BLOCK_N, R], gl.bfloat16)),
            TensorDescriptor(scales, [n, G], [ROW_BYTES // 4, 1], [BLOCK_N, G], _nvmma([BLOCK_N, G], gl.float32)))


def mla_decode_fp8_wgmma(q_nope: torch.Tensor, q_rope: torch.Tensor, packed: torch.Tensor, seq_lens: torch.Tensor,
                         n_splits: int, sm_scale: float, block_h: int = 16, num_warps: int = 4, buffers: int = 2,
                         out: torch.Tensor | None = None) -> torch.Tensor:
    """q_nope [B, Sq, H, 512] (fp16, or rounded to it), q_rope [B, Sq, H, 64] (bf16) against the
    packed cache [B, L, 656]; seq_lens [B] int32 count the new tokens. block_h: (token, head) rows
    a program computes (16 or 32); buffers: widened tiles in shared memory, 2 (TMA, pipelined;
    num_warps 4 or 8: one or two warpgroups widening and multiplying) or 1 (rows loaded into
    registers a tile ahead, two programs an SM; 4 warps), or ("ws", stages, buffers): the
    warp-specialized kernel, its TMA stages and widened buffers."""
    B, Sq, H, D = q_nope.shape
    R = q_rope.shape[-1]
    L = packed.shape[1]
    if packed.shape[-1] != ROW_BYTES or (D, R) != (512, 64):
        raise ValueError(f"the wgmma fp8 kernel takes FlashMLA's row (512 + 64, 656 B), not {D} + {R}, "
                         f"{packed.shape[-1]} B")
    ws = isinstance(buffers, tuple)  # ("ws", stages, buffers, rope_regs): the warp-specialized kernel
    if not ws and (buffers not in (1, 2) or (buffers == 1 and num_warps != 4)):
        raise ValueError(f"the wgmma fp8 kernel runs 2 buffers (4 or 8 warps) or 1 buffer (4 warps), "
                         f"not {buffers} with {num_warps} warps")
    split_len = triton.cdiv(triton.cdiv(L, n_splits), BLOCK_N) * BLOCK_N
    qn2 = q_nope.reshape(B * Sq * H, D).to(torch.float16)
    qp2 = q_rope.reshape(B * Sq * H, R).to(torch.bfloat16)
    packed2 = packed.reshape(B * L, ROW_BYTES)
    descs = descriptors(qn2, qp2, packed2, block_h)
    grid = (triton.cdiv(Sq * H, block_h), B, n_splits)
    common = dict(DEQ_LAYOUT=_nvmma([BLOCK_N, D], gl.float16), P_LAYOUT=_nvmma([BLOCK_N, block_h], gl.float16))
    scalars = (L, H, Sq, n_splits, split_len, sm_scale * LOG2E)  # after seq_lens and the outputs (part, lse)
    if ws:
        _, stages, bufs, rope_regs = buffers
        kernel = lambda part, lse: _mla_fp8_ws[grid](  # noqa: E731
            *descs, packed2.view(torch.bfloat16), seq_lens, part, lse, *scalars, STAGES=stages, BUFS=bufs,
            ROPE_REGS=rope_regs, num_warps=4, maxnreg=WS_MAXNREG, **common)
    elif buffers == 2:
        kernel = lambda part, lse: _mla_fp8_split[grid](  # noqa: E731
            *descs, seq_lens, part, lse, *scalars, num_warps=num_warps, **common)
    else:
        lat, scales, rope = unpack(packed2, D, R)
        kernel = lambda part, lse: _mla_fp8_split_regs[grid](  # noqa: E731
            *descs[:2], lat, packed2.view(torch.float32), packed2.view(torch.bfloat16), seq_lens, part, lse,
            *scalars, KP_LAYOUT=_nvmma([BLOCK_N, R], gl.bfloat16), num_warps=num_warps, **common)
    return run_splits(kernel, (B, Sq, H, D), n_splits, q_nope, out)


def sm90_build(block_h: int = 16, stages: int = 2, bufs: int = 1, rope_regs: bool = False) -> dict:
    """The warp-specialized kernel compiled for sm_90 without a GPU (harness.sm90_build): SASS,
    registers, stack, shared memory. Run with TRITON_INTERPRET unset."""
    from triton.experimental.gluon._runtime import GluonASTSource

    from attn_dse.gpu.harness import sm90_build as build
    from attn_dse.gpu.harness import tensordesc

    def desc(dtype, shape, gdtype):
        return tensordesc(dtype, shape, _nvmma(shape, gdtype))

    sig = {"qn_desc": desc("fp16", [block_h, 512], gl.float16), "qp_desc": desc("bf16", [block_h, 64], gl.bfloat16),
           "c_desc": desc("fp8e4nv", [BLOCK_N, 512], gl.float8e4nv),
           "kp_desc": desc("bf16", [BLOCK_N, 64], gl.bfloat16), "sc_desc": desc("fp32", [BLOCK_N, 4], gl.float32),
           "Rope": "*bf16", "Lens": "*i32", "Part": "*fp32", "Lse": "*fp32", "L": "i32", "n_heads": "i32", "seq_q": "i32",
           "n_splits": "i32", "split_len": "i32", "qk_scale": "fp32", "DEQ_LAYOUT": "constexpr",
           "P_LAYOUT": "constexpr", "STAGES": "constexpr", "BUFS": "constexpr",
           "ROPE_REGS": "constexpr"}
    src = GluonASTSource(fn=_mla_fp8_ws, signature=sig, constexprs={
        "DEQ_LAYOUT": _nvmma([BLOCK_N, 512], gl.float16), "P_LAYOUT": _nvmma([BLOCK_N, block_h], gl.float16),
        "STAGES": stages, "BUFS": bufs, "ROPE_REGS": rope_regs})
    return build(src, 4, maxnreg=WS_MAXNREG)
