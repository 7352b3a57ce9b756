"""Prefill attention forward for Hopper in Gluon, warp-specialized by hand (FlashAttention-3's
structure): one producer warp issues the TMA loads, two consumer warpgroups of 64 query rows
each run the matmuls and the softmax, and each consumer overlaps its own softmax with its
matmuls (the intra-warpgroup overlap Triton's automatic pass could not build, prefill.py).

Per key tile j, a consumer warpgroup:
    issue S_j = Q K_j^T          (async wgmma, both operands in shared memory)
    issue O  += P_{j-1} V_{j-1}  (async wgmma, P from registers)
    wait for S_j (P V still running), release K_j; softmax of S_j -> P_j, alpha_j, l
    wait for P V, release V_{j-1}; O *= alpha_j
so the tensor cores have work queued while the softmax's exps run. Ping-pong between the two
consumers (one's matmuls while the other's softmax) is left to the warp schedulers; an explicit
one (two turn barriers) is a config option that won at no 16k shape. Tiles every row sees whole
run in a loop without mask code, the others (the diagonal, the sequence's end) in a second
loop: one loop with a branch kept the mask's indices live and spilled. The output leaves
through the query's buffer by TMA where the block lies within its batch.

Persistent: one program an SM takes blocks of 128 query rows two at a time (`_block`), with two
query buffers so the next block's queries and first key tiles load while the consumers finish
the current one. Causal, a pair is a head's longest and shortest block left, so every pair costs
the same and the programs' totals stay within a pair of each other.

Measured on an H200 against SDPA's cuDNN in the same run (docs/MEASUREMENTS.md, "Gluon
prefill"), d 128, GQA 32/8: 16k tokens 643 TFLOP/s non-causal (cuDNN 620), 659 causal (593);
B16 x 1k 647 (608) and 481 (471).

Layout as prefill.py: q [B, Sq, Hq, D], k/v [B, Sk, Hkv, D], contiguous, queries the last Sq
positions; bf16 or fp16; head dim 128. The loads and stores view them as 2-D [B * S, H * D]
(TMA); rows past a batch's end belong to the next batch: keys there are masked (each row's last
visible key), query rows there are not stored.
"""
from __future__ import annotations

import math

import torch
import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import (fence_async_shared, mbarrier, tma, warpgroup_mma,
                                                              warpgroup_mma_wait)
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

# Gluon is experimental and renames things: Triton 3.6 (the device image) has only the old name
_tma_load = tma.async_load if hasattr(tma, "async_load") else tma.async_copy_global_to_shared
_tma_store = tma.async_store if hasattr(tma, "async_store") else tma.async_copy_shared_to_global

ROWS = 64  # one consumer warpgroup's query rows (one wgmma M): a program's block is 2 x 64
CONFIG = (128, 2, False)  # BLOCK_N, stages, ping-pong: fastest causal at 16k (docs/device-logs/h200-prefill-gluon-*)
# registers: 9 warps (the default partition: consumer 0; consumer 1; the producer warp) launch
# with 168 a thread; the producer drops to 24, consumer 1 takes 240, consumer 0 what is left
NUM_WARPS, MAXNREG = 4, 168
CONSUMER_REGS = gl.constexpr(240)


@gluon.jit
def _blocks(pid, n_programs, n_items):
    """How many blocks program pid takes: the pairs of blocks pid, pid + n_programs, ... (the
    last pair is one block where n_items is odd)."""
    n_pairs = (n_items + 1) // 2
    mine = gl.cdiv(n_pairs - pid, n_programs)
    return 2 * mine - ((n_items % 2 == 1) & ((n_pairs - 1 - pid) % n_programs == 0)).to(gl.int32)


@gluon.jit
def _block(k, pid, n_programs, n_m, seq_q, seq_k, n_heads, ROWS_: gl.constexpr, BLOCK_N: gl.constexpr,
           CAUSAL: gl.constexpr):
    """Program pid's k-th block: (batch, query head, the block's first row, key tiles it sees).
    A program takes two neighbouring blocks at a time, and a head's blocks are neighbours in
    the order longest, shortest, second longest, second shortest, ...: causal, each pair's key
    tiles add up to the same, so the programs' totals stay within a pair of each other, and the
    programs in flight share a few heads' K and V in L2 (heads fastest would stream every
    head's at once)."""
    t = 2 * (pid + (k // 2) * n_programs) + k % 2
    j = t % n_m
    m = gl.where(j % 2 == 0, n_m - 1 - j // 2, j // 2)
    first_m = m * 2 * ROWS_
    hi = seq_k
    if CAUSAL:
        hi = gl.minimum(seq_k, first_m + (seq_k - seq_q) + 2 * ROWS_)
    bh = t // n_m
    return bh // n_heads, bh % n_heads, first_m, gl.cdiv(hi, BLOCK_N)


@gluon.jit
def _produce(q_desc, k_desc, v_desc, q_smem, k_smem, v_smem, bars, pid, n_programs, n_m, n_items, n_heads, group,
             seq_q, seq_k, CAUSAL: gl.constexpr):
    """The producer warp, for each of the program's blocks: both consumers' queries into one of
    two query buffers, then each key tile's K and V into the ring (the next block's queries and
    first tiles load while the consumers finish the current one)."""
    q_ready, q_empty, k_ready, k_empty, v_ready, v_empty, turn = bars
    STAGES: gl.constexpr = k_smem.type.shape[0]
    ROWS_: gl.constexpr = q_desc.block_type.shape[0]
    D: gl.constexpr = q_desc.block_type.shape[1]
    BLOCK_N: gl.constexpr = k_desc.block_type.shape[0]
    j = 0  # key tiles loaded so far: the ring's position
    for n in range(_blocks(pid, n_programs, n_items)):
        b, h, first_m, n_tiles = _block(n, pid, n_programs, n_m, seq_q, seq_k, n_heads, ROWS_, BLOCK_N, CAUSAL)
        qb = n % 2
        mbarrier.wait(q_empty.index(qb), ((n // 2) & 1) ^ 1)  # a fresh barrier passes phase 1
        mbarrier.expect(q_ready.index(qb), 2 * q_desc.block_type.nbytes)
        for w in gl.static_range(2):
            _tma_load(q_desc, [b * seq_q + first_m + w * ROWS_, h * D], q_ready.index(qb), q_smem.index(2 * qb + w))
        kv_row = b * seq_k
        kv_col = (h // group) * D
        for i in range(n_tiles):
            st = j % STAGES
            phase = (j // STAGES) & 1
            mbarrier.wait(k_empty.index(st), phase ^ 1)
            mbarrier.expect(k_ready.index(st), k_desc.block_type.nbytes)
            _tma_load(k_desc, [kv_row + i * BLOCK_N, kv_col], k_ready.index(st), k_smem.index(st))
            mbarrier.wait(v_empty.index(st), phase ^ 1)
            mbarrier.expect(v_ready.index(st), v_desc.block_type.nbytes)
            _tma_load(v_desc, [kv_row + i * BLOCK_N, kv_col], v_ready.index(st), v_smem.index(st))
            j += 1


@gluon.jit
def _scores(s, last_key, start_n, BLOCK_N: gl.constexpr, s_layout: gl.constexpr):
    """Scores of keys past each row's last visible key (start_n: the tile's first) to -inf."""
    cols = gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, s_layout))
    return gl.where(cols[None, :] <= (last_key - start_n)[:, None], s, float("-inf"))


@gluon.jit
def _step(q, k_smem, v_smem, bars, half: gl.constexpr, j, r, p, m_i, l_i, acc, zero_s, last_key, qk_scale,
          MASK: gl.constexpr, PINGPONG: gl.constexpr):
    """Key tile j of a consumer's block (r: its place in the ring, counted over the program's
    blocks): S_j = Q K_j^T issued, then O += P_{j-1} V_{j-1} beside it; the softmax of S_j while
    P V runs; O rescaled once P V is done. Returns (P_j, m, l, O). zero_s: zeros in the scores'
    layout (acc carries O's)."""
    q_ready, q_empty, k_ready, k_empty, v_ready, v_empty, turn = bars
    STAGES: gl.constexpr = k_smem.type.shape[0]
    BLOCK_N: gl.constexpr = k_smem.type.shape[1]
    dtype: gl.constexpr = k_smem.dtype
    s_layout: gl.constexpr = zero_s.type.layout
    o_layout: gl.constexpr = acc.type.layout
    p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
    st = r % STAGES
    prev = (r - 1) % STAGES
    mbarrier.wait(k_ready.index(st), (r // STAGES) & 1)
    mbarrier.wait(v_ready.index(prev), ((r - 1) // STAGES) & 1)
    p_op = gl.convert_layout(p.to(dtype), p_layout)
    if PINGPONG:
        mbarrier.wait(turn.index(half), (r & 1) ^ half ^ 1)
    s_tok = warpgroup_mma(q, k_smem.index(st).permute((1, 0)), zero_s, use_acc=False, is_async=True)
    acc_tok = warpgroup_mma(p_op, v_smem.index(prev), acc, is_async=True)
    if PINGPONG:
        mbarrier.arrive(turn.index(1 - half), count=1)
    s = warpgroup_mma_wait(1, deps=[s_tok])
    mbarrier.arrive(k_empty.index(st), count=1)
    if MASK:
        s = _scores(s, last_key, j * BLOCK_N, BLOCK_N, s_layout)
    m_new = gl.maximum(m_i, gl.max(s, axis=1) * qk_scale)
    p = gl.exp2(s * qk_scale - m_new[:, None])
    alpha = gl.exp2(m_i - m_new)
    l_i = l_i * alpha + gl.sum(p, axis=1)
    acc, p_op = warpgroup_mma_wait(0, deps=[acc_tok, p_op])
    mbarrier.arrive(v_empty.index(prev), count=1)
    acc = acc * gl.convert_layout(alpha, gl.SliceLayout(1, o_layout))[:, None]
    return p, m_new, l_i, acc


@gluon.jit
def _consume(O, o_desc, LSE, q_smem, k_smem, v_smem, bars, half: gl.constexpr, pid, n_programs, n_m, n_items,
             n_heads, seq_q, seq_k, qk_scale, CAUSAL: gl.constexpr, STORE_LSE: gl.constexpr,
             PINGPONG: gl.constexpr, EVEN_M: gl.constexpr):
    """One consumer warpgroup: rows half * 64 ... + 63 of each of the program's blocks."""
    BLOCK_N: gl.constexpr = k_smem.type.shape[1]
    ROWS_: gl.constexpr = q_smem.type.shape[1]
    r = 0  # key tiles consumed so far: the ring's position
    for n in range(_blocks(pid, n_programs, n_items)):
        b, h, first_m, n_tiles = _block(n, pid, n_programs, n_m, seq_q, seq_k, n_heads, ROWS_, BLOCK_N, CAUSAL)
        _attend(O, o_desc, LSE, q_smem, k_smem, v_smem, bars, half, n, r, seq_q, seq_k, b, h, first_m, n_tiles,
                n_heads, qk_scale, CAUSAL, STORE_LSE, PINGPONG, EVEN_M)
        r += n_tiles


@gluon.jit
def _attend(O, o_desc, LSE, q_smem, k_smem, v_smem, bars, half: gl.constexpr, n, r0, seq_q, seq_k, b, h, first_m,
            n_tiles, n_heads, qk_scale, CAUSAL: gl.constexpr, STORE_LSE: gl.constexpr, PINGPONG: gl.constexpr,
            EVEN_M: gl.constexpr):
    """The consumer's 64 rows first_m + half * 64 ... of block n of the program (its key tiles
    from ring position r0). Tiles from n_full on hold keys some of its rows must not see (past
    the row's position, causal, or past the sequence): they are masked by each row's last
    visible key."""
    q_ready, q_empty, k_ready, k_empty, v_ready, v_empty, turn = bars
    STAGES: gl.constexpr = k_smem.type.shape[0]
    BLOCK_N: gl.constexpr = k_smem.type.shape[1]
    D: gl.constexpr = k_smem.type.shape[2]
    ROWS_: gl.constexpr = q_smem.type.shape[1]
    dtype: gl.constexpr = k_smem.dtype
    s_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                       instr_shape=[16, BLOCK_N, 16])
    o_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, D, 16])
    p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
    rows_s: gl.constexpr = gl.SliceLayout(1, s_layout)
    rows_o: gl.constexpr = gl.SliceLayout(1, o_layout)

    qb = n % 2
    q = q_smem.index(2 * qb + half)
    first = first_m + half * ROWS_
    rows = first + gl.arange(0, ROWS_, layout=rows_s)
    past = seq_k - seq_q  # queries are the last seq_q positions
    if CAUSAL:
        last_key = gl.minimum(rows + past, seq_k - 1)
        n_full = gl.minimum(first + past + 1, seq_k) // BLOCK_N
    else:
        last_key = gl.full([ROWS_], seq_k - 1, gl.int32, layout=rows_s)
        n_full = seq_k // BLOCK_N
    zero_s = gl.zeros([ROWS_, BLOCK_N], gl.float32, layout=s_layout)
    acc = gl.zeros([ROWS_, D], gl.float32, layout=o_layout)
    mbarrier.wait(q_ready.index(qb), (n // 2) & 1)

    # tile 0: every row sees key 0, so no max stays at -inf
    st0 = r0 % STAGES
    mbarrier.wait(k_ready.index(st0), (r0 // STAGES) & 1)
    if PINGPONG:  # consumer 0 issues first (a fresh barrier passes phase 1), then they alternate
        mbarrier.wait(turn.index(half), (r0 & 1) ^ half ^ 1)
    s = warpgroup_mma(q, k_smem.index(st0).permute((1, 0)), zero_s, use_acc=False, is_async=True)
    if PINGPONG:
        mbarrier.arrive(turn.index(1 - half), count=1)
    s = warpgroup_mma_wait(0, deps=[s])
    mbarrier.arrive(k_empty.index(st0), count=1)
    if n_full < 1:
        s = _scores(s, last_key, 0, BLOCK_N, s_layout)
    m_i = gl.max(s, axis=1) * qk_scale
    p = gl.exp2(s * qk_scale - m_i[:, None])
    l_i = gl.sum(p, axis=1)
    # the tiles every row sees whole run without mask code, then those that need it
    for j in range(1, gl.maximum(n_full, 1)):
        p, m_i, l_i, acc = _step(q, k_smem, v_smem, bars, half, j, r0 + j, p, m_i, l_i, acc, zero_s, last_key,
                                 qk_scale, False, PINGPONG)
    for j in range(gl.maximum(n_full, 1), n_tiles):
        p, m_i, l_i, acc = _step(q, k_smem, v_smem, bars, half, j, r0 + j, p, m_i, l_i, acc, zero_s, last_key,
                                 qk_scale, True, PINGPONG)
    r_last = r0 + n_tiles - 1
    last = r_last % STAGES
    mbarrier.wait(v_ready.index(last), (r_last // STAGES) & 1)
    acc = warpgroup_mma(gl.convert_layout(p.to(dtype), p_layout), v_smem.index(last), acc)
    mbarrier.arrive(v_empty.index(last), count=1)

    out = acc / gl.convert_layout(l_i, rows_o)[:, None]
    q_row0 = b * seq_q
    if EVEN_M:  # through the query's buffer (its last reader, the last QK^T, is done) by TMA
        q.store(out.to(dtype))
        fence_async_shared()
        _tma_store(o_desc, [q_row0 + first, h * D], q)
        tma.store_wait(0)
    else:  # the block's last rows belong to the next batch: masked stores
        rows_out = first + gl.arange(0, ROWS_, layout=rows_o)
        cols = gl.arange(0, D, layout=gl.SliceLayout(0, o_layout))
        ptrs = O + (q_row0 + rows_out).to(gl.int64)[:, None] * (n_heads * D) + h * D + cols[None, :]
        gl.store(ptrs, out.to(dtype), mask=(rows_out < seq_q)[:, None])
    mbarrier.arrive(q_empty.index(qb), count=1)  # the buffer may take the block after next's queries
    if STORE_LSE:
        lse_base = (b * n_heads + h).to(gl.int64) * seq_q
        gl.store(LSE + lse_base + rows, m_i + gl.log2(l_i), mask=rows < seq_q)


@gluon.jit
def _prefill_wgmma(q_desc, k_desc, v_desc, O, o_desc, LSE, n_heads, group, seq_q, seq_k, n_items, qk_scale,
                   CAUSAL: gl.constexpr, STORE_LSE: gl.constexpr, STAGES: gl.constexpr, PINGPONG: gl.constexpr,
                   EVEN_M: gl.constexpr):
    """q_desc: [B * Sq, Hq * D] in blocks of [64, D]; k_desc, v_desc: [B * Sk, Hkv * D] in
    blocks of [BLOCK_N, D]; O as q, LSE [B, Hq, Sq] float32 (log2 domain). The work is n_items
    = B * Hq * cdiv(Sq, 128) blocks of 128 query rows; a program takes pairs of them in turn
    (`_blocks`, `_block`)."""
    ROWS_: gl.constexpr = q_desc.block_type.shape[0]
    dtype: gl.constexpr = q_desc.dtype
    n_m = gl.cdiv(seq_q, 2 * ROWS_)

    q_smem = gl.allocate_shared_memory(dtype, [4] + q_desc.block_type.shape, q_desc.layout)  # 2 blocks x 2 halves
    k_smem = gl.allocate_shared_memory(dtype, [STAGES] + k_desc.block_type.shape, k_desc.layout)
    v_smem = gl.allocate_shared_memory(dtype, [STAGES] + v_desc.block_type.shape, v_desc.layout)
    q_ready = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
    q_empty = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
    k_ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    k_empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    v_ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    v_empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    turn = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())  # consumer h may issue its matmuls
    for i in gl.static_range(2):
        mbarrier.init(q_ready.index(i), count=1)
        mbarrier.init(q_empty.index(i), count=2)  # both consumers' outputs have left the buffer
        mbarrier.init(turn.index(i), count=1)
    for i in gl.static_range(STAGES):
        mbarrier.init(k_ready.index(i), count=1)
        mbarrier.init(v_ready.index(i), count=1)
        mbarrier.init(k_empty.index(i), count=2)  # both consumers release each tile
        mbarrier.init(v_empty.index(i), count=2)
    bars = (q_ready, q_empty, k_ready, k_empty, v_ready, v_empty, turn)

    pid = gl.program_id(0)
    n_programs = gl.num_programs(0)
    gl.warp_specialize([
        (_consume, (O, o_desc, LSE, q_smem, k_smem, v_smem, bars, 0, pid, n_programs, n_m, n_items, n_heads,
                    seq_q, seq_k, qk_scale, CAUSAL, STORE_LSE, PINGPONG, EVEN_M)),  # spelled out: a tuple sum
        (_consume, (O, o_desc, LSE, q_smem, k_smem, v_smem, bars, 1, pid, n_programs, n_m, n_items, n_heads,
                    seq_q, seq_k, qk_scale, CAUSAL, STORE_LSE, PINGPONG, EVEN_M)),  # drops constexprs (Triton 3.6)
        (_produce, (q_desc, k_desc, v_desc, q_smem, k_smem, v_smem, bars, pid, n_programs, n_m, n_items, n_heads, group,
                    seq_q, seq_k, CAUSAL)),
    ], [4, 1], [CONSUMER_REGS, 24])


def _smem_layout(block: list, dtype: torch.dtype):
    return gl.NVMMASharedLayout.get_default_for(block, gl.bfloat16 if dtype == torch.bfloat16 else gl.float16)


def refusal(q, k, v, window, out=None) -> str | None:
    """Why _prefill_wgmma cannot take these inputs (None: it can): head dim 128, no window, bf16
    or fp16, contiguous tensors (TMA's 2-D views), on a Hopper GPU (Gluon has no interpreter)."""
    if window is not None or q.shape[-1] != 128:
        return "the Gluon prefill takes head dim 128 without a window"
    if q.dtype not in (torch.bfloat16, torch.float16):
        return f"the Gluon prefill takes bf16 or fp16, not {q.dtype}"
    if not all(t.is_contiguous() for t in (q, k, v) + (() if out is None else (out,))):
        return "the Gluon prefill takes contiguous q, k, v and out"
    if not q.is_cuda or torch.cuda.get_device_capability(q.device)[0] != 9:
        return "the Gluon prefill runs on Hopper (sm_90) GPUs only"
    return None


def prefill_wgmma(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True,
                  out: torch.Tensor | None = None, lse: torch.Tensor | None = None, config: tuple | None = None,
                  window: int | None = None, programs: int | None = None):
    """Attention forward for q [B, Sq, Hq, 128], k/v [B, Sk, Hkv, 128] (Sq <= Sk, queries last);
    lse as prefill.prefill's; config: (BLOCK_N, stages, ping-pong), CONFIG by default; programs:
    how many run (each takes every programs-th pair of 128-row query blocks; one an SM by
    default, at most a pair each). A window, or inputs it cannot take, raise ValueError
    with the reason (`refusal`)."""
    why = refusal(q, k, v, window, out)
    if why:
        raise ValueError(why)
    block_n, stages, pingpong = config or CONFIG
    B, Sq, Hq, D = q.shape
    Sk, Hkv = k.shape[1], k.shape[2]
    o = torch.empty_like(q) if out is None else out
    q_block, kv_block = [ROWS, D], [block_n, D]
    q_desc = TensorDescriptor(q, [B * Sq, Hq * D], [Hq * D, 1], q_block, _smem_layout(q_block, q.dtype))
    k_desc = TensorDescriptor(k, [B * Sk, Hkv * D], [Hkv * D, 1], kv_block, _smem_layout(kv_block, q.dtype))
    v_desc = TensorDescriptor(v, [B * Sk, Hkv * D], [Hkv * D, 1], kv_block, _smem_layout(kv_block, q.dtype))
    o_desc = TensorDescriptor(o, [B * Sq, Hq * D], [Hq * D, 1], q_block, _smem_layout(q_block, q.dtype))
    n_items = B * Hq * triton.cdiv(Sq, 2 * ROWS)
    grid = (min(triton.cdiv(n_items, 2), programs or torch.cuda.get_device_properties(q.device).multi_processor_count),)
    _prefill_wgmma[grid](q_desc, k_desc, v_desc, o, o_desc, lse, Hq, Hq // Hkv, Sq, Sk, n_items,
                         1.4426950408889634 / math.sqrt(D), CAUSAL=causal, STORE_LSE=lse is not None, STAGES=stages,
                         PINGPONG=pingpong, EVEN_M=Sq % (2 * ROWS) == 0, num_warps=NUM_WARPS, maxnreg=MAXNREG)
    return o


def sm90_build(causal: bool = False, config: tuple | None = None) -> dict:
    """The kernel compiled for sm_90 without a GPU (harness.sm90_build): SASS, registers, stack,
    shared memory. Run with TRITON_INTERPRET unset."""
    from triton.experimental.gluon._runtime import GluonASTSource

    from attn_dse.gpu.harness import sm90_build as build
    from attn_dse.gpu.harness import tensordesc
    block_n, stages, pingpong = config or CONFIG

    def desc(rows):
        return tensordesc("bf16", [rows, 128], _smem_layout([rows, 128], torch.bfloat16))

    sig = {"q_desc": desc(ROWS), "k_desc": desc(block_n), "v_desc": desc(block_n), "O": "*bf16", "o_desc": desc(ROWS),
           "LSE": "*fp32", "n_heads": "i32", "group": "i32", "seq_q": "i32", "seq_k": "i32", "n_items": "i32",
           "qk_scale": "fp32",
           "CAUSAL": "constexpr", "STORE_LSE": "constexpr", "STAGES": "constexpr",
           "PINGPONG": "constexpr", "EVEN_M": "constexpr"}
    src = GluonASTSource(fn=_prefill_wgmma, signature=sig,
                         constexprs={"CAUSAL": causal, "STORE_LSE": True, "STAGES": stages, "PINGPONG": pingpong,
                                     "EVEN_M": True})
    return build(src, NUM_WARPS, maxnreg=MAXNREG)
