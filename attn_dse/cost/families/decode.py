"""Split-KV decode (flash-decoding): the g*s_q query rows of one KV head are packed into MMA row
tiles (GQA packing), the keys are split across n_split CTAs to fill the cores, and each split
writes an fp32 partial output plus its log-sum-exp for a combine kernel. Few CTAs leave cores
idle: bandwidth is capped at active cores x one core's streaming rate.

An implementation's profile (`calibration/knobs.Profile`) may fix what its kernels do by
construction instead: the row tile each (split or unsplit) kernel computes whole, padded rows
included, and the CTA count below which it splits the keys. FlashAttention-2, for one, packs a
GQA group's query rows of a single-token decode into the query-length dimension, then runs its
prefill kernel (128 rows) unless fewer than 0.8 x 2 x SMs CTAs would run, when it runs its
split-KV kernel (64 rows); no row of either tile is skipped.
"""
from __future__ import annotations

import numpy as np

from attn_dse.cost import tiled
from attn_dse.cost.family import Family, get_family, register_family
from attn_dse.cost.measured import config, num

SPLITS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
GPU_BC, TPU_BC = (32, 64), (256, 512)
MMA_ROWS = 16  # mma.sync m16n8k16: the row granularity of small-M decode on GPUs
PARTIAL_BYTES = 4  # fp32 partial outputs of split-KV
SCORE_BLOCK_KEYS = 128  # the keys of the score block a `steps_per_score_block` kernel's step covers
WIDEN_KEYS = 128  # the key tile our fp8 Triton kernel is tuned to (gpu/decode_fp8.CONFIGS8)


def widen_row_tile(rows):
    """Our fp8 Triton kernel's row tile for a KV head's query rows (gpu/decode_fp8.py): a power of
    two, at least an m16 MMA, computed whole."""
    return np.maximum(MMA_ROWS, 2 ** np.ceil(np.log2(np.maximum(rows, 1)))).astype(int)


def widen_key_tile(rows, tuned=WIDEN_KEYS):
    """Its key tile for those rows: 32 keys where its row tile is 32, where with 128 keys the
    launcher's specializations of the group and the token count decide its spills (582-885 us at
    one cache, 661-680 with 32 keys: docs/MEASUREMENTS.md); the tuned tile otherwise."""
    return np.where(widen_row_tile(rows) == 32, 32, tuned)


def kv_width(spec):
    """Elements per key token per KV head streamed from memory (K = V for a shared latent)."""
    return spec.d_qk if spec.kv_shared else spec.d_qk + spec.d_v * (1 - spec.skip * (spec.phase == "decode"))


def grid(hw, fixed: dict, profile, kernel: Family) -> dict:
    """The mapping axes in search order (splits, Bc, stages, row tile); a pinned n_split or
    block_m may be any count (it is taken out of `fixed`). A profile's row tiles replace the
    searched ones, and the tiles a kernel is built with (`key_tiles`, `row_tiles`) replace both:
    a profile says what an implementation's own kernels do, not ours."""
    key_tiles = GPU_BC if hw.kind == "gpu" else TPU_BC
    row_tiles = (hw.mma_rows, MMA_ROWS) if hw.kind == "gpu" else (hw.mma_rows,)
    if profile.decode_block_m:
        row_tiles = tuple(sorted({profile.split_rows, profile.decode_block_m}))
    if kernel.key_tiles:
        key_tiles = kernel.key_tiles
    if kernel.row_tiles:
        row_tiles = kernel.row_tiles
    if "block_m" in fixed:  # a measured kernel's own row tile (heads per program), whatever it is
        row_tiles = (fixed.pop("block_m"),)
    splits = (fixed.pop("n_split"),) if "n_split" in fixed else SPLITS
    return {"n_split": splits, "block_n": key_tiles, "stages": tiled.STAGES, "block_m": row_tiles}


def profile_allows(profile, hw, B, hkv, m_rows, n_split, rows, split_searched: bool = True):
    """Where a profile fixes the kernels: the candidates that are the kernel the implementation
    runs (its own row tile for split and unsplit; splits only below its CTA threshold when the
    split count is left to it); everywhere True without a profile."""
    if not profile.decode_block_m:
        return True
    own = rows == np.where(n_split > 1, profile.split_rows, profile.decode_block_m)
    if not (split_searched and profile.split_below_ctas_per_core):
        return own
    unsplit = B * hkv * np.ceil(m_rows / profile.split_rows)
    return own & ((n_split == 1) | (unsplit < profile.split_below_ctas_per_core * hw.cores))


def decode_candidate(spec, hw, c, knobs, fam, n_split, bc, stages, rows, detail: bool, split_searched: bool,
                     kernel: Family, key_searched: bool = True) -> dict:
    """One candidate mapping timed with family knobs `fam`; `kernel` (a family) says how its
    programs use a core (`resident`) and whether its widening of a narrow cache is vector work of
    its own or part of its MMA rate (`widens_in_mma`)."""
    B, S, hq, hkv, b = spec.batch, spec.seq, spec.h_q, spec.h_kv, spec.bytes_per_element
    keys = spec.kv_read_tokens + S
    m_rows = hq / hkv * S  # GQA packing: a KV head's query rows share its K/V loads
    m_tiles = np.ceil(m_rows / rows)
    # small-M decode uses the narrowest MMA (mma.sync m16 on GPUs); TPU MXUs pad to full rows, and
    # so do a kernel that computes its row tile whole and an implementation whose profile says so
    own_rows = bool(kernel.row_tiles)  # a kernel built with its row tiles
    whole = knobs.profile.decode_block_m or own_rows
    pad = MMA_ROWS if hw.kind == "gpu" and not whole else rows
    kept = 1 - spec.skip
    padded = B * hkv * np.ceil(m_rows / pad) * pad * keys  # padded rows are wasted work
    flops = 2 * padded * (spec.d_qk + spec.d_v * kept)
    exps = padded * kept
    kv_token = kv_width(spec) * spec.kv_bytes
    unique_kv = B * hkv * keys * kv_token
    raw_kv = unique_kv * m_tiles
    hbm_kv = unique_kv + (raw_kv - unique_kv) * (1 - knobs.l2_reuse)
    q_o = B * S * hq * (spec.d_qk + spec.d_v) * b + spec.extra_io_bytes
    partial = np.where(n_split > 1, 2 * B * hq * S * (spec.d_v + 2) * PARTIAL_BYTES * n_split, 0.0)
    ctas = B * hkv * m_tiles * n_split
    iterations = B * hkv * m_tiles * np.ceil(keys / bc)
    if kernel.steps_per_score_block:  # the step once per 16 x 128 block of its score tile
        iterations = iterations * rows / MMA_ROWS * bc / SCORE_BLOCK_KEYS
    # the partials, written by the splits and read back by the combine, stay in L2 where they fit
    hbm_rate = c.hbm_bytes_per_s * fam.memory_efficiency
    rate = hbm_rate if hw.cache is None else np.where(partial / 2 <= hw.cache.capacity_bytes, c.cache_bytes_per_s, hbm_rate)
    combine = np.where(n_split > 1, partial / rate + knobs.launch_overhead_s, 0.0)
    # each CTA dequantizes the elements it loads, unless widening is part of its MMA operand path
    dequant = 0.0 if kernel.widens_in_mma else raw_kv / spec.kv_bytes * spec.dequant_vector_flops
    runs = tiled.fits_on_chip(hw, spec, rows, bc, stages) & (
        rows == kernel.row_tile(m_rows) if own_rows  # the one row tile the kernel takes for this row count
        else profile_allows(knobs.profile, hw, B, hkv, m_rows, n_split, rows, split_searched))
    if own_rows and key_searched and len(kernel.key_tiles) > 1:  # and the key tile it takes with that row tile
        runs = runs & (bc == kernel.key_tile(rows))
    est = tiled.finish(hw, c, knobs, fam, flops, exps, q_o + hbm_kv, raw_kv, q_o, ctas, iterations,
                       tiled.tile_bytes(spec, rows, bc, stages), runs, stages, detail, extra_s=combine,
                       vector_flops=dequant, kernel=kernel)
    if detail:
        est["hbm"] = est["hbm"] + partial
    return est


def estimate_decode(name: str, spec, hw, c, knobs, fixed=None):
    """The decode model with the knobs of family `name` (MLA and sparse decode share it)."""
    fixed = dict(fixed or {})
    fam = knobs.family(name)
    kernel = get_family(name)
    split_searched = "n_split" not in fixed  # a pinned split count is the caller's, not the kernel's heuristic
    key_searched = "block_n" not in fixed  # a pinned key tile is what a measured row ran

    def time_of(spec, block_m, block_n, n_split, stages, detail=True):
        return decode_candidate(spec, hw, c, knobs, fam, n_split, block_n, stages, block_m, detail, split_searched,
                                kernel, key_searched)

    mappings = grid(hw, fixed, knobs.profile, kernel)
    return tiled.search(time_of, spec, mappings, fixed, {"n_split": SPLITS, "block_n": GPU_BC})


@register_family
class Decode(Family):
    """Split-KV decode over a cache in the MMA dtype; over a narrower one (fp8, ...) two kernels
    compete per point, as our dispatch picks between them: `decode_regs` where a KV head's query
    rows fit one MMA row tile, and `decode_widen` for any row count. A row's `kernel` (a family
    name, pinned in the mapping) times that kernel alone."""

    name = "decode"
    order = 80
    compute_efficiency, memory_efficiency = 0.5, 0.9

    def claims(self, spec):
        return spec.phase == "decode"

    def estimate(self, spec, hw, c, knobs, fixed=None):
        fixed = dict(fixed or {})
        pinned = fixed.pop("kernel", None)
        if pinned is not None:
            return estimate_decode(pinned, spec, hw, c, knobs, fixed)
        narrow = np.asarray(spec.kv_bytes < spec.bytes_per_element)
        if not narrow.any():
            return estimate_decode(self.name, spec, hw, c, knobs, fixed)
        regs = estimate_decode(DecodeRegs.name, spec, hw, c, knobs, fixed)
        wide = estimate_decode(DecodeWiden.name, spec, hw, c, knobs, fixed)
        fits = np.asarray(spec.h_q / spec.h_kv * spec.seq <= MMA_ROWS)
        best = tiled.pick(fits & (regs.time_s <= wide.time_s), regs, wide)
        return best if narrow.all() else tiled.pick(narrow, best, estimate_decode(self.name, spec, hw, c, knobs, fixed))

    def kernel_of(self, row):
        """Our fp8 bench names the kernel first in a row's configuration ("regs", "triton")."""
        cfg = config(row)
        return NARROW_KERNELS.get(cfg[0], self.name) if cfg and isinstance(cfg[0], str) else self.name

    def workload_for(self, row):
        """A measured GQA/MHA/MQA decode step (sliding-window where the row has a window), with
        the kernel that timed it pinned."""
        from attn_dse.workloads import attention
        hq, hkv, d = int(num(row, "n_heads")), int(num(row, "n_kv_heads")), int(num(row, "head_dim"))
        window = num(row, "window")
        wl = attention("swa", n_heads=hq, n_kv_heads=hkv, head_dim=d, window=window) if window \
            else attention("gqa", n_heads=hq, n_kv_heads=hkv, head_dim=d)
        kw = decode_args(row)
        kernel = self.kernel_of(row)
        if kernel == Decode.name:
            return wl, kw
        mapping = {**(kw["mapping"] or {}), "kernel": kernel}
        if kernel == DecodeWiden.name:  # the key tile it ran: ("triton", block_n, ...)
            mapping["block_n"] = float(config(row)[1])
        return wl, {**kw, "mapping": mapping}


def decode_args(row: dict) -> dict:
    """predict() arguments of a measured decode row; a recorded split count is pinned, and a
    recorded KV-cache format (fp8, ...) is the cache the kernel streamed."""
    from attn_dse.cost.measured import flag
    n_split = num(row, "n_split")
    return dict(phase="decode", batch=num(row, "batch"), seq=num(row, "seq"), context=num(row, "context"),
                dtype=row.get("dtype") or "bf16", kv_dtype=row.get("kv_dtype") or None, causal=flag(row, "causal"),
                mapping={"n_split": n_split} if n_split else None)


class NarrowDecode(Decode):
    """A decode kernel over a narrow cache, offered by the decode family (it claims no shape)."""

    def claims(self, spec):
        return False

    def kernel_of(self, row):
        return self.name


@register_family
class DecodeRegs(NarrowDecode):
    """Loads the narrow K/V straight into MMA fragments in registers, one warp a program, no
    shared memory in the key loop (our Gluon kernel, gpu/decode_fp8_regs.py): at most MMA_ROWS
    query rows per KV head. One warp issues from one of an SM's four schedulers, so an SM reaches
    its rates only with several programs on it: the kernel's 249 registers a thread leave room for
    8 (decode_fp8_regs.resident_programs), which is `resident`."""

    name = "decode_regs"
    order = 81
    resident = 8


@register_family
class DecodeWiden(NarrowDecode):
    """Widens each K/V tile it loads to the MMA dtype as the MMA's register operand and runs the
    general tiled MMAs (our Triton fp8 kernel, gpu/decode_fp8.py): any number of query rows per
    KV head. Its 255 registers a thread (and spills) make it bound by its instruction stream, not
    its bytes: measured, its time follows the padded query rows (B16 x 32k with 4 new tokens:
    2.4x the time of 1 token over the same cache), so its widening is part of its (low) MMA rate,
    not separate vector work. It is built with fixed tiles, which the model times instead of
    searching."""

    name = "decode_widen"
    order = 82
    compute_efficiency, memory_efficiency = 0.15, 0.65
    widens_in_mma = True
    # built with one row tile (widen_row_tile) and the key tile it runs with that row tile
    # (widen_key_tile); the GPU kernel takes both from here
    key_tiles = (32, WIDEN_KEYS)
    row_tiles = (16, 32, 64, 128, 256)
    # its scores cost a step of their own for each 16 x 128 block, whatever the head dim (the
    # softmax over the block and its probabilities widened for the PV MMA): measured, a d 64 tile
    # takes 0.7x the time of a d 128 one, where the MMAs alone would take 0.5x; and 32-key tiles
    # cost per score what 128-key ones do (a step per key tile, fitted on 128-key rows, put the
    # 2026-12-04 run's 32-key rows 31% over)
    own_tile_overhead = True
    steps_per_score_block = True

    def row_tile(self, m_rows):
        return widen_row_tile(m_rows)

    def key_tile(self, rows):
        return widen_key_tile(rows)


NARROW_KERNELS = {"regs": DecodeRegs.name, "triton": DecodeWiden.name}  # our rows' kernel names
