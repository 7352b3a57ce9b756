"""fp8-KV GQA decode whose e4m3 tiles go from device memory straight into the MMA's registers, in Gluon.

Why (docs/device-logs/h200-decode-fp8-notes-2026-12-02.md): the Triton kernel (decode_fp8.py)
stages K and V through shared memory and reads V back one byte per instruction (LDS.U8: an 8-bit
V tile cannot be read as a transposed MMA operand); its instruction stream, not the bytes, sets
its speed. Here one warp is one program and nothing touches shared memory in the key loop:

* the reduction axes are permuted, each consistently on both operands, so that a lane's MMA
  fragment is contiguous in memory. Scores S = Q K^T (m16n8k16, rows = query heads, padded to 16):
  the head dimension is permuted for Q and K alike, so each lane's slice of a key is 16-byte loads.
  Output O^T = V^T P^T (rows = head dimension, columns = the 8 query heads of the KV head): the
  output's d is permuted (undone at the store) so each lane holds 16 contiguous bytes of a token,
  and P^T's fragment is the score accumulator's own registers (the tokens line up; FA2's reuse).
* the permutations are reshapes and transposes of the loaded tile in registers, not index
  arithmetic, so the loads stay 16 bytes wide; widening is the hardware's e4m3x2 -> f16x2; V's
  token pairs are interleaved with byte permutes in registers.
* the next tile's loads are issued before the current tile's MMAs (registers, one tile ahead).
* per-block scales (one per SCALE_BLOCK tokens) are uniform over a tile: one scalar each.

Same cache layout, scales, split-KV partials and combine as decode_fp8.py; rows of up to 16
(query tokens x heads per KV head), D in {64, 128}. decode_fp8.decode_fp8 dispatches here.
"""
from __future__ import annotations

import math

import torch
import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.ampere import mma_v2

from attn_dse.gpu.decode import run_splits


def _log2(x: int) -> int:
    assert x > 0 and x & (x - 1) == 0, x
    return x.bit_length() - 1


def k_load_layout(block_n: int, d: int) -> gl.DistributedLinearLayout:
    """K tile [block_n, d] as one warp loads it: lane (g, c) = (lane // 4, lane % 4) holds keys
    g + 8j, and of each the 16-byte pieces c, c + 4, ...; registers run along d first (16 B loads)."""
    regs = [[0, 1 << i] for i in range(4)] + [[0, 64 << i] for i in range(_log2(d // 64))]
    regs += [[8 << i, 0] for i in range(_log2(block_n // 8))]
    return gl.DistributedLinearLayout(reg_bases=regs, lane_bases=[[0, 16], [0, 32], [1, 0], [2, 0], [4, 0]],
                                      warp_bases=[], block_bases=[], shape=[block_n, d])


def v_load_layout(block_n: int, d: int) -> gl.DistributedLinearLayout:
    """V tile [block_n, d]: lane (g, c) holds d in [g d/8, (g+1) d/8) (16 B at d = 128) of the
    tokens 2c, 2c + 1, 2c + 8, 2c + 9 (+ 16 i): the k-slots of an m16n8k16 left operand."""
    regs = [[0, 1 << i] for i in range(_log2(d // 8))] + [[1, 0], [8, 0]]
    regs += [[16 << i, 0] for i in range(_log2(block_n // 16))]
    lanes = [[2, 0], [4, 0]] + [[0, (d // 8) << i] for i in range(3)]
    return gl.DistributedLinearLayout(reg_bases=regs, lane_bases=lanes, warp_bases=[], block_bases=[],
                                      shape=[block_n, d])


@gluon.jit
def _qk_order(x, ROWS: gl.constexpr, D: gl.constexpr):
    """Permute the head dimension of x [ROWS, D] (Q, or a K tile) so that what k_load_layout gives
    a lane is its m16n8k16 fragment: physical d = s_hi*64 + c*16 + s_lo*4 + h*2 + e becomes
    logical k = (s_hi*4 + s_lo)*16 + h*8 + c*2 + e (c: the lane's quad position)."""
    x = gl.reshape(x, [ROWS, D // 64, 4, 4, 2, 2])
    x = gl.permute(x, [0, 1, 3, 4, 2, 5])
    return gl.reshape(x, [ROWS, D])


# per pair of fp8 words (tokens 2k, 2k+1; 4 consecutive d each): byte-interleave the two tokens
# (prmt), then widen each token pair (k, k+1) at one d to an f16x2, the PV operand's register
_V_PAIRS_ASM = gl.constexpr("""{
.reg .b32 t0, t1;
.reg .b16 a0, a1, a2, a3;
prmt.b32 t0, $4, $5, 0x5140;
prmt.b32 t1, $4, $5, 0x7362;
mov.b32 {a0, a1}, t0;
mov.b32 {a2, a3}, t1;
cvt.rn.f16x2.e4m3x2 $0, a0;
cvt.rn.f16x2.e4m3x2 $1, a1;
cvt.rn.f16x2.e4m3x2 $2, a2;
cvt.rn.f16x2.e4m3x2 $3, a3;
}""")


@gluon.jit
def _v_operand(v8, BLOCK_N: gl.constexpr, HEAD_DIM: gl.constexpr):
    """The V tile [n, d] (v_load_layout) as the f16 left operand V^T [d', n] of O^T = V^T P^T."""
    mma: gl.constexpr = gl.NVMMADistributedLayout(version=[2, 0], warps_per_cta=[1, 1], instr_shape=[16, 8])
    a_op: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=mma, k_width=2)
    even, odd = gl.split(gl.permute(gl.reshape(v8, [BLOCK_N // 2, 2, HEAD_DIM]), [0, 2, 1]))
    lo, hi = gl.inline_asm_elementwise(_V_PAIRS_ASM, "=r,=r,=r,=r,r,r",
                                       [even.to(gl.int8, bitcast=True), odd.to(gl.int8, bitcast=True)],
                                       dtype=(gl.float16, gl.float16), is_pure=True, pack=4)
    # lo[k, 4i + b] = V[2k + b%2, 4i + b//2], hi the same at d + 2: relabel (a renaming, no data moves)
    v = gl.reshape(gl.join(lo, hi), [BLOCK_N // 2, HEAD_DIM // 4, 2, 2, 2])  # [k, i, b//2, b%2, lo/hi]
    v = gl.reshape(gl.permute(v, [0, 3, 1, 4, 2]), [BLOCK_N, HEAD_DIM])
    # d' = lo * 8 + g for d = g * D/8 + lo: each lane's d are one 16-byte piece of the token
    vt = gl.reshape(gl.permute(gl.reshape(v, [BLOCK_N, 8, HEAD_DIM // 8]), [0, 2, 1]), [BLOCK_N, HEAD_DIM])
    return gl.convert_layout(gl.permute(vt, [1, 0]), a_op)


@gluon.jit
def _tile(q, k8, v8, k_scale, v_scale, n0, end, last_visible, m_i, l_i, acc, HEAD_DIM: gl.constexpr,
          ROWS_O: gl.constexpr, BLOCK_N: gl.constexpr):
    """Fold one tile of BLOCK_N tokens from n0 into the running (m, l, O^T); k_scale carries log2(e)/sqrt(D)."""
    BLOCK_H: gl.constexpr = 16
    mma: gl.constexpr = gl.NVMMADistributedLayout(version=[2, 0], warps_per_cta=[1, 1], instr_shape=[16, 8])
    b_op: gl.constexpr = gl.DotOperandLayout(operand_index=1, parent=mma, k_width=2)
    cols_s: gl.constexpr = gl.SliceLayout(0, mma)
    kt = gl.permute(_qk_order(k8.to(gl.float16), BLOCK_N, HEAD_DIM), [1, 0])  # K^T [d', n]
    s = mma_v2(q, gl.convert_layout(kt, b_op), gl.zeros([BLOCK_H, BLOCK_N], gl.float32, layout=mma))
    s = s * k_scale
    offs_n = n0 + gl.arange(0, BLOCK_N, layout=cols_s)
    keep = (offs_n < end)[None, :] & (offs_n[None, :] <= last_visible[:, None])
    s = gl.where(keep, s, float("-inf"))
    m_new = gl.maximum(m_i, gl.max(s, 1))
    m_safe = gl.where(m_new == float("-inf"), 0.0, m_new)  # rows with nothing visible yet
    p = gl.exp2(s - m_safe[:, None])
    alpha = gl.exp2(m_i - m_safe)
    l_i = l_i * alpha + gl.sum(p, 1)
    p16 = (p * v_scale).to(gl.float16)
    if ROWS_O == 8:  # only the first 8 query rows are real: drop the padding rows of P and alpha
        p16 = gl.split(gl.permute(gl.reshape(p16, [2, 8, BLOCK_N]), [1, 2, 0]))[0]
        alpha = gl.split(gl.permute(gl.reshape(alpha, [2, 8]), [1, 0]))[0]
    pt = gl.convert_layout(gl.permute(p16, [1, 0]), b_op)  # P^T [n, rows]: the score accumulator's registers
    acc = acc * gl.convert_layout(alpha, cols_s)[None, :]
    return m_new, l_i, mma_v2(_v_operand(v8, BLOCK_N, HEAD_DIM), pt, acc)



@gluon.jit
def _decode_fp8_regs(Q, K, V, KS, VS, Lens, Part, Lse, stride_qb, stride_qs, stride_qh, stride_kb, stride_kn,
                     stride_kh, stride_vb, stride_vn, stride_vh, stride_sb, stride_sn, group, seq_q, n_splits,
                     split_len, qk_scale, HEAD_DIM: gl.constexpr, ROWS_O: gl.constexpr, BLOCK_N: gl.constexpr,
                     SCALE_BLOCK: gl.constexpr, K_LOAD: gl.constexpr, V_LOAD: gl.constexpr, TILES: gl.constexpr):
    BLOCK_H: gl.constexpr = 16  # the score MMA's rows (query rows of the KV head, padded)
    mma: gl.constexpr = gl.NVMMADistributedLayout(version=[2, 0], warps_per_cta=[1, 1], instr_shape=[16, 8])
    a_op: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=mma, k_width=2)
    rows_s: gl.constexpr = gl.SliceLayout(1, mma)  # per query row of S [BLOCK_H, BLOCK_N]
    cols_s: gl.constexpr = gl.SliceLayout(0, mma)  # per token of S; per query row of O^T [HEAD_DIM, ROWS_O]
    io: gl.constexpr = gl.BlockedLayout(size_per_thread=[1, 4], threads_per_warp=[1, 32], warps_per_cta=[1, 1],
                                        order=[1, 0])

    b = gl.program_id(0).to(gl.int64)  # int64: batch offsets pass 2**31 elements
    kvh = gl.program_id(1)
    split = gl.program_id(2)
    length = gl.load(Lens + b)
    start = split * split_len
    end = gl.minimum(start + split_len, length)

    # the query rows of this KV head (row = token * group + head-in-group), d permuted, as the A operand
    rows = gl.arange(0, BLOCK_H, layout=gl.SliceLayout(1, io))
    offs_d = gl.arange(0, HEAD_DIM, layout=gl.SliceLayout(0, io))
    tok = rows // group
    q_ptr = Q + b * stride_qb + tok * stride_qs + (kvh * group + rows % group) * stride_qh
    q = gl.load(q_ptr[:, None] + offs_d[None, :], mask=(rows < group * seq_q)[:, None], other=0.0)
    q = gl.convert_layout(_qk_order(q.to(gl.float16), BLOCK_H, HEAD_DIM), a_op)
    last_visible = length - seq_q + gl.arange(0, BLOCK_H, layout=rows_s) // group  # causal among new tokens

    offs_kn = gl.arange(0, BLOCK_N, layout=gl.SliceLayout(1, K_LOAD))
    k_ptr = (K + b * stride_kb + kvh * stride_kh + offs_kn[:, None] * stride_kn
             + gl.arange(0, HEAD_DIM, layout=gl.SliceLayout(0, K_LOAD))[None, :])
    offs_vn = gl.arange(0, BLOCK_N, layout=gl.SliceLayout(1, V_LOAD))
    v_ptr = (V + b * stride_vb + kvh * stride_vh + offs_vn[:, None] * stride_vn
             + gl.arange(0, HEAD_DIM, layout=gl.SliceLayout(0, V_LOAD))[None, :])
    KS += b * stride_sb + kvh
    VS += b * stride_sb + kvh

    m_i = gl.full([BLOCK_H], float("-inf"), gl.float32, layout=rows_s)
    l_i = gl.zeros([BLOCK_H], gl.float32, layout=rows_s)
    acc = gl.zeros([HEAD_DIM, ROWS_O], gl.float32, layout=mma)  # O^T, its d permuted (see the store)
    # no loads carried across iterations (the loaded bytes would sit one per register): the other
    # programs on the SM hide a tile's load latency, or, with TILES = 2, the second tile's loads
    # are issued before the first tile is computed
    for n0 in range(start, end, BLOCK_N * TILES):
        k8 = gl.load(k_ptr + n0 * stride_kn, mask=(n0 + offs_kn < end)[:, None])  # masked keys: -inf below
        v8 = gl.load(v_ptr + n0 * stride_vn, mask=(n0 + offs_vn < end)[:, None], other=0.0)
        ks = gl.load(KS + (n0 // SCALE_BLOCK) * stride_sn)
        vs = gl.load(VS + (n0 // SCALE_BLOCK) * stride_sn)
        if TILES == 2:
            n1 = n0 + BLOCK_N
            k8b = gl.load(k_ptr + n1 * stride_kn, mask=(n1 + offs_kn < end)[:, None])
            v8b = gl.load(v_ptr + n1 * stride_vn, mask=(n1 + offs_vn < end)[:, None], other=0.0)
            ksb = gl.load(KS + (n1 // SCALE_BLOCK) * stride_sn, mask=n1 < end, other=0.0)
            vsb = gl.load(VS + (n1 // SCALE_BLOCK) * stride_sn, mask=n1 < end, other=0.0)
        m_i, l_i, acc = _tile(q, k8, v8, ks * qk_scale, vs, n0, end, last_visible, m_i, l_i, acc, HEAD_DIM,
                              ROWS_O, BLOCK_N)
        if TILES == 2:
            m_i, l_i, acc = _tile(q, k8b, v8b, ksb * qk_scale, vsb, n1, end, last_visible, m_i, l_i, acc,
                                  HEAD_DIM, ROWS_O, BLOCK_N)

    if ROWS_O == 8:
        m_i = gl.split(gl.permute(gl.reshape(m_i, [2, 8]), [1, 0]))[0]
        l_i = gl.split(gl.permute(gl.reshape(l_i, [2, 8]), [1, 0]))[0]
    l_o = gl.convert_layout(l_i, cols_s)
    seen = l_o > 0
    l_safe = gl.where(seen, l_o, 1.0)
    out = acc / l_safe[None, :]
    # undo the output's d order (d' = lo * 8 + g holds d = g * D/8 + lo), rows first
    out = gl.reshape(gl.permute(gl.reshape(out, [HEAD_DIM // 8, 8, ROWS_O]), [1, 0, 2]), [HEAD_DIM, ROWS_O])
    out = gl.convert_layout(gl.permute(out, [1, 0]), io)
    lse = gl.convert_layout(gl.where(seen, gl.convert_layout(m_i, cols_s) + gl.log2(l_safe), float("-inf")),
                            gl.SliceLayout(1, io))
    # [B, seq_q, Hq, n_splits, (D)]: fp32 partials, or with one split the output itself (run_splits)
    r = gl.arange(0, ROWS_O, layout=gl.SliceLayout(1, io))
    valid = r < group * seq_q
    base = ((b * seq_q + r // group) * (group * gl.num_programs(1)) + kvh * group + r % group) * n_splits + split
    gl.store(Part + base[:, None] * HEAD_DIM + offs_d[None, :], out.to(Part.dtype.element_ty), mask=valid[:, None])
    gl.store(Lse + base, lse, mask=valid)


def fits(q, k8) -> bool:
    """Shapes this kernel takes: at most 16 query rows per KV head, D 64 or 128."""
    group = q.shape[2] // k8.shape[2]
    return q.is_cuda and group * q.shape[1] <= 16 and k8.shape[3] in (64, 128)


REGS_PER_SM = 65536  # 32-bit registers per SM, compute capability 9.0 (CUDA C Programming Guide, Table 21)
REG_UNIT = 256  # registers are given to a warp in units of 256 (CUDA Occupancy Calculator, cc 9.0)
BLOCKS_PER_SM = 32  # resident blocks per SM, cc 9.0 (CUDA C Programming Guide, Table 21)
_resident: dict = {}


def resident_programs(n_regs: int, num_warps: int, max_threads_per_sm: int) -> int:
    """Programs of a kernel with n_regs registers a thread that an SM holds at once (registers,
    threads, blocks; this kernel's 1 KB of shared memory never limits)."""
    per_warp = -(-n_regs * 32 // REG_UNIT) * REG_UNIT
    return max(1, min(REGS_PER_SM // (per_warp * num_warps), max_threads_per_sm // (32 * num_warps), BLOCKS_PER_SM))


def _fills(batch: int, kv_heads: int, max_len: int, sms: int, block_n: int, resident: int) -> dict:
    """Wave fill of each split count (programs / slots of the waves they take), splits of 8+ tiles."""
    slots = resident * sms
    candidates = range(1, max(1, min(256, max_len // (8 * block_n))) + 1)
    return {s: batch * kv_heads * s / (-(-batch * kv_heads * s // slots) * slots) for s in candidates}


def choose_splits_regs(batch: int, kv_heads: int, max_len: int, sms: int, block_n: int, resident: int,
                       slack: float = 0.05) -> int:
    """Splits whose programs fill the SMs' resident slots in whole waves: the fewest splits whose
    wave fill is within a fraction slack of the best. All splits are equally long: a partly
    filled last wave idles the GPU."""
    fill = _fills(batch, kv_heads, max_len, sms, block_n, resident)
    best = max(fill.values())
    return min(s for s in fill if fill[s] >= best * (1 - slack))


MIN_WAVE_FILL = 0.9  # below it the Triton kernel's 4-warp programs did better (B1 x 32k: 1.33x vs 1.14x)


def fills_waves(q, k8, v8, k_scale, v_scale, seq_lens, block_n: int, scale_block: int, tiles: int = 1) -> bool:
    """Whether some split count fills the GPU's resident slots (MIN_WAVE_FILL): with one warp a
    program, a single sequence cannot (8 KV heads x at most 128 splits of a 32k context)."""
    resident = programs_per_sm(q, k8, v8, k_scale, v_scale, seq_lens, block_n, scale_block, tiles)
    sms = torch.cuda.get_device_properties(q.device).multi_processor_count
    return max(_fills(q.shape[0], k8.shape[2], k8.shape[1], sms, block_n, resident).values()) >= MIN_WAVE_FILL


def _launch(q, k8, v8, k_scale, v_scale, seq_lens, part, lse, n_splits, split_len, block_n, scale_block, tiles,
            grid=None):
    B, Sq, Hq, D = q.shape
    Hkv = k8.shape[2]
    group = Hq // Hkv
    args = (q, k8, v8, k_scale, v_scale, seq_lens, part, lse, q.stride(0), q.stride(1), q.stride(2),
            k8.stride(0), k8.stride(1), k8.stride(2), v8.stride(0), v8.stride(1), v8.stride(2),
            k_scale.stride(0), k_scale.stride(1), group, Sq, n_splits, split_len, 1.4426950408889634 / math.sqrt(D))
    meta = dict(HEAD_DIM=D, ROWS_O=8 if group * Sq <= 8 else 16, BLOCK_N=block_n, SCALE_BLOCK=scale_block,
                K_LOAD=k_load_layout(block_n, D), V_LOAD=v_load_layout(block_n, D), TILES=tiles, num_warps=1)
    if grid is None:  # compile only: the kernel, for its register count
        return _decode_fp8_regs.warmup(*args, grid=(1, 1, 1), **meta)
    return _decode_fp8_regs[grid](*args, **meta)


def programs_per_sm(q, k8, v8, k_scale, v_scale, seq_lens, block_n: int, scale_block: int, tiles: int = 1) -> int:
    """Resident programs per SM of the kernel these inputs compile to (its registers, read once)."""
    key = (q.device, q.shape[3], q.shape[1] * q.shape[2] // k8.shape[2] <= 8, block_n, tiles)
    if key not in _resident:
        scratch = torch.empty(1, device=q.device, dtype=torch.float32)
        kernel = _launch(q, k8, v8, k_scale, v_scale, seq_lens, scratch, scratch, 2, block_n, block_n, scale_block,
                         tiles)
        kernel._init_handles()  # loads the binary: n_regs comes from the driver
        props = torch.cuda.get_device_properties(q.device)
        _resident[key] = resident_programs(kernel.n_regs, 1, props.max_threads_per_multi_processor)
    return _resident[key]


def decode_fp8_regs(q, k8, v8, k_scale, v_scale, seq_lens, n_splits: int | None = None, block_n: int = 32,
                    out=None, scale_block: int = 64, tiles: int = 1):
    """q [B, Sq, Hq, D] bf16 against the e4m3 cache k8/v8 [B, L, Hkv, D], scales [B, L/scale_block, Hkv]."""
    B, Sq, Hq, D = q.shape
    L, Hkv = k8.shape[1], k8.shape[2]
    assert fits(q, k8), "decode_fp8_regs: at most 16 query rows per KV head, head_dim 64 or 128"
    assert scale_block % block_n == 0 and block_n % 16 == 0, "a tile lies inside one scale block"
    assert k8.stride(3) == 1 and v8.stride(3) == 1 and k_scale.stride() == v_scale.stride()
    if n_splits is None:
        resident = programs_per_sm(q, k8, v8, k_scale, v_scale, seq_lens, block_n, scale_block, tiles)
        n_splits = choose_splits_regs(B, Hkv, L, torch.cuda.get_device_properties(q.device).multi_processor_count,
                                      block_n, resident)
    split_len = triton.cdiv(triton.cdiv(L, n_splits), block_n) * block_n
    return run_splits(lambda part, lse: _launch(q, k8, v8, k_scale, v_scale, seq_lens, part, lse, n_splits, split_len,
                                                block_n, scale_block, tiles, grid=(B, Hkv, n_splits)),
                      (B, Sq, Hq, D), n_splits, q, out)
