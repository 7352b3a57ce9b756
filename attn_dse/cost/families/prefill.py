"""Fused prefill (FlashAttention-style): each CTA owns Br query rows of one head and streams the
key/value tiles it needs (Bc keys each) through on-chip memory.

Modelled: tile fit (SMEM or VMEM, and the register file for the fp32 accumulators),
diagonal-tile waste of causal and window masks, K/V re-reads across query tiles and the share L2
absorbs, wave quantization of CTAs over cores, the exp unit beside the matmul units.
"""
from __future__ import annotations

import numpy as np

from attn_dse.cost import tiled
from attn_dse.cost.family import Family, get_family, register_family
from attn_dse.cost.measured import config, flag, num

GPU_TILES = ((32, 32), (64, 32), (64, 64), (64, 128), (128, 64), (128, 128), (128, 176), (192, 128))
TPU_TILES = ((128, 128), (256, 256), (256, 512), (512, 512), (512, 1024), (1024, 1024))


def search(spec, hw, c, knobs, family: str, fixed=None, backward: str | None = None):
    """The fastest (Br, Bc) tile and pipeline depth per point: the axes are the index into the
    tile list (on a GPU the family's `gpu_tiles`, else GPU_TILES) and the stages; pinned
    block_m/block_n keep the tiles that have them. backward: the family of a training step's
    backward kernel, timed over its tiles with its knobs."""
    kernel = get_family(backward or family)
    tiles = np.array(getattr(kernel, "gpu_tiles", GPU_TILES) if hw.kind == "gpu" else TPU_TILES, dtype=np.float64)
    fixed = dict(fixed or {})
    keep = np.ones(len(tiles), bool)
    for col, key in enumerate(("block_m", "block_n")):
        if key in fixed:
            value = fixed.pop(key)
            keep &= tiles[:, col] == value
            if not keep.any():
                tiled.no_mapping(key, value, choices())
    if fixed.get("n_split", 1) != 1:  # a prefill CTA owns its query rows' whole key range
        tiled.no_mapping("n_split", fixed["n_split"], {"n_split": (1,)})
    fixed.pop("n_split", None)
    fam = knobs.family(backward or family)

    def time_of(spec, tile, stages, detail=True):
        br, bc = tiles[tile.astype(int), 0], tiles[tile.astype(int), 1]
        return prefill_candidate(spec, hw, c, knobs, fam, br, bc, stages, detail, backward is not None, kernel)

    def fields(chosen):
        index = chosen["tile"].astype(int)
        return {"block_m": tiles[index, 0], "block_n": tiles[index, 1], "n_split": np.ones(len(index)),
                "stages": chosen["stages"]}

    axes = {"tile": np.flatnonzero(keep), "stages": tiled.STAGES}
    return tiled.search(time_of, spec, axes, fixed, choices(), fields)


def prefill_candidate(spec, hw, c, knobs, fam, br, bc, stages, detail=True, backward=False,
                      kernel=tiled.PLAIN) -> dict:
    """One tile mapping. `backward`: the FlashAttention-2 backward over the same tiles: S = QK^T
    recomputed, P from the saved log-sum-exp, then dV += P^T dO, dP = dO V^T, dK += dS^T Q and
    dQ += dS K: 3 d_qk + 2 d_v wide matmuls per pair against the forward's d_qk + d_v; it reads
    Q, O and dO, writes dQ (accumulated in fp32 through L2), dK and dV."""
    B, S, hq, hkv, b = spec.batch, spec.seq, spec.h_q, spec.h_kv, spec.bytes_per_element
    keys = spec.kv_read_tokens + S
    n_qt = np.ceil(S / br)
    dense = n_qt * br * np.ceil(keys / bc) * bc  # every tile of a full score matrix
    masked = np.asarray(spec.pairs) < S * keys if spec.tile_pairs is None else False
    # masked tiles on the diagonal (and the window's far edge) are computed whole
    edges = 1 + np.isfinite(spec.window)
    waste = np.where(masked, edges * S * np.maximum(br, bc) / 2, 0.0)
    computed = np.minimum((spec.pairs if spec.tile_pairs is None else spec.tile_pairs) * n_qt * br / S + waste, dense)
    kept = 1 - spec.skip
    width = 3 * spec.d_qk + 2 * spec.d_v * kept if backward else spec.d_qk + spec.d_v * kept
    flops = 2 * B * hq * computed * width
    exps = B * hq * computed * kept
    kv_token = (spec.d_qk if spec.kv_shared else spec.d_qk + spec.d_v) * spec.kv_bytes
    raw_kv = B * hq * computed / br * kv_token  # each query tile streams its key tiles
    unique_kv = B * hkv * keys * kv_token
    ctas = B * hq * n_qt
    hit = tiled.l2_hit(hw, knobs, np.minimum(ctas, hw.cores) / n_qt / (hq / hkv), keys * kv_token)
    hbm_kv = unique_kv + np.maximum(raw_kv - unique_kv, 0) * (1 - hit)
    q_o = B * S * hq * (spec.d_qk + spec.d_v) * b + spec.extra_io_bytes
    if backward:  # Q, O, dO read; dQ written through an fp32 accumulator; dK, dV written
        q_o = q_o + B * S * hq * (spec.d_v * b + spec.d_qk * (4 + 4 + b)) + unique_kv
    iterations = B * hq * computed / (br * bc)  # K/V-tile steps over all CTAs
    dequant = raw_kv / spec.kv_bytes * spec.dequant_vector_flops  # each CTA dequantizes the tiles it loads
    return tiled.finish(hw, c, knobs, fam, flops, exps, q_o + hbm_kv, raw_kv, q_o, ctas, iterations,
                        tiled.tile_bytes(spec, br, bc, stages), tiled.fits_on_chip(hw, spec, br, bc, stages),
                        stages, detail, vector_flops=dequant, kernel=kernel)


def choices():
    return {"block_m": sorted({t[0] for t in GPU_TILES}), "block_n": sorted({t[1] for t in GPU_TILES})}


@register_family
class Prefill(Family):
    name = "prefill"
    order = 90
    compute_efficiency, memory_efficiency = 0.75, 0.9

    def claims(self, spec):
        return spec.phase != "decode"

    def estimate(self, spec, hw, c, knobs, fixed=None):
        """Pinned (a row's kernel): that kernel. Otherwise as our dispatch (`prefill(kernel="auto")`)
        picks, per point: the Gluon kernel where it takes the shape, else the Triton
        warp-specialized one, else our one-warpgroup kernel, each warp-specialized kernel only
        where the implementation's knobs were fitted on its measurements (on this hardware's
        kind: the kernels are Hopper's) and no tile is pinned."""
        fixed = dict(fixed or {})
        fixed.pop("backward", None)
        kernel = fixed.pop("kernel", None)
        if kernel is not None or "block_m" in fixed or "block_n" in fixed:
            return search(spec, hw, c, knobs, kernel or self.name, fixed)
        best = search(spec, hw, c, knobs, self.name, fixed)
        for other in (PrefillWs, PrefillGluon):  # the last that takes a point runs it
            where = other.takes(spec, knobs)
            if where.any():
                best = tiled.pick(where, search(spec, hw, c, knobs, other.name, fixed), best)
        return best

    def estimate_backward(self, spec, hw, c, knobs, fixed=None):
        """A training step's backward kernel: the pinned one (mapping "backward"), else as
        `backward(kernel="auto")` picks per point: the Gluon kernel where it takes the shape and
        the knobs were fitted on it, else our Triton kernels (family backward). The forward's
        pinned tiles are the forward's."""
        fixed = {k: v for k, v in (fixed or {}).items() if k not in ("kernel", "block_m", "block_n")}
        kernel = fixed.pop("backward", None)
        if kernel is not None:
            return search(spec, hw, c, knobs, self.name, fixed, backward=kernel)
        best = search(spec, hw, c, knobs, self.name, fixed, backward=Backward.name)
        where = BackwardGluon.takes(spec, knobs)
        if where.any():
            best = tiled.pick(where, search(spec, hw, c, knobs, self.name, fixed, backward=BackwardGluon.name), best)
        return best

    def forward_kernel(self, row):
        """Our bench names the warp-specialized kernels first in a row's config: ("ws", ...) for
        the Triton one, ("gluon", ...) for the Gluon one."""
        cfg = config(row)
        named = {"ws": PrefillWs.name, "gluon": PrefillGluon.name}
        return named.get(cfg[0], self.name) if cfg else self.name

    def backward_kernel(self, row):
        """A training row's backward kernel: the Gluon one where the config names it last
        (backward.train_config), else our Triton kernels."""
        cfg = config(row)
        return BackwardGluon.name if cfg and cfg[-1] == BackwardGluon.name else Backward.name

    def kernel_of(self, row):
        """A forward's kernel; a training step's backward kernel (what the step's fit adds)."""
        return self.backward_kernel(row) if row.get("phase") == "train" else self.forward_kernel(row)

    def workload_for(self, row):
        """A measured prefill (or a training step, forward + backward, where phase is train): GQA,
        or sliding-window GQA where the row has a window. The tiles the kernel ran with, where the
        record names them ((block_m, block_n, warps, stages), ("ws", block_m, block_n, warps,
        stages) or ("gluon", block_m, block_n, stages, ping-pong) with the kernel), are pinned,
        and so is the kernel: the model is checked on the mapping that ran."""
        from attn_dse.workloads import attention
        hq, hkv, d = int(num(row, "n_heads")), int(num(row, "n_kv_heads")), int(num(row, "head_dim"))
        window = num(row, "window")
        wl = attention("swa", n_heads=hq, n_kv_heads=hkv, head_dim=d, window=window) if window \
            else attention("gqa", n_heads=hq, n_kv_heads=hkv, head_dim=d)
        cfg = config(row)
        kernel = self.forward_kernel(row)
        mapping = {"kernel": kernel}  # the kernel that ran, never the dispatch's pick
        if kernel != self.name:
            mapping.update(block_m=float(cfg[1]), block_n=float(cfg[2]))
        elif len(cfg) == 4:
            mapping.update(block_m=float(cfg[0]), block_n=float(cfg[1]))
        phase = "train" if row.get("phase") == "train" else "prefill"
        if phase == "train":
            mapping["backward"] = self.backward_kernel(row)
        return wl, dict(phase=phase, batch=num(row, "batch"), seq=num(row, "seq"),
                        dtype=row.get("dtype") or "bf16", causal=flag(row, "causal"), mapping=mapping)


@register_family
class PrefillWs(Prefill):
    """Our warp-specialized prefill (gpu/prefill.py `_prefill_ws`): a TMA producer warpgroup and
    two consumer warpgroups of block_m / 2 rows, so one consumer's softmax runs beside the other's
    matmuls: its exps are hidden by construction (`exp_overlap` 1), where the implementation's
    fitted overlap (our one-warpgroup kernels) stays near 0. Each key-tile step hands a K and a V
    buffer from the producer to both consumers and back through barriers: a cost per step of its
    own (`own_tile_overhead`), which a 32-key tile (d 256) pays 4x per score. Its tiles are the
    kernel's configs (128 x 128 at d 128, 128 x 32 at d 256; block_m 128 or 256). A row's kernel
    pins it; it claims no shape: the prefill family times the shapes it takes with it where its
    knobs were fitted (`takes`), as our dispatch runs it."""

    name = "prefill_ws"
    order = 91
    exp_overlap = 1.0
    own_tile_overhead = True
    gpu_tiles = ((128, 32), (128, 64), (128, 128), (256, 64))
    head_dims = (128, 256)

    def claims(self, spec):
        return False

    def kernel_of(self, row):
        return self.name

    @classmethod
    def takes(cls, spec, knobs) -> np.ndarray:
        """Where our dispatch runs this kernel: its head dims (keys and values alike), no window,
        16-bit operands, separate K and V; and only if the implementation's knobs were fitted on
        its measurements (`Knobs.measured`): it runs on the GPU those were taken on (Hopper)."""
        if cls.name not in knobs.measured:
            return np.zeros(np.shape(spec.d_qk), bool)
        d_qk, d_v = np.asarray(spec.d_qk), np.asarray(spec.d_v)
        return (np.isin(d_qk, cls.head_dims) & (d_qk == d_v) & ~np.isfinite(spec.window)
                & (np.asarray(spec.bytes_per_element) == 2) & ~np.asarray(spec.kv_shared, bool)
                & (np.asarray(spec.kv_bytes) == 2))


@register_family
class PrefillGluon(PrefillWs):
    """Our Gluon prefill (gpu/prefill_gluon.py), FlashAttention-3's structure: a producer warp,
    two consumer warpgroups of 64 rows, each issuing the next tile's QK^T beside its P V so its
    own softmax runs under its matmuls too; persistent (one program an SM, the next block's
    loads under the current one's end). The mechanisms are prefill_ws's (exps hidden, a tile
    step of its own) and persistence's (the pipeline filled once); the knobs are its own,
    fitted on its rows. Head dim 128, 128-row
    blocks of 64- or 128-key tiles. It claims no shape: the prefill family times the shapes it
    takes with it (`takes`), as our dispatch does."""

    name = "prefill_gluon"
    order = 92
    persistent = True
    gpu_tiles = ((128, 64), (128, 128))
    head_dims = (128,)


@register_family
class Backward(Family):
    """The backward kernel of fused attention in a training step: timed by the prefill tiles
    (`prefill_candidate(backward=True)`) with knobs of its own; it claims no kernel itself."""
    name = "backward"
    tiled = False
    compute_efficiency, memory_efficiency = 0.6, 0.9


@register_family
class BackwardGluon(Backward):
    """Our Gluon backward (gpu/backward_gluon.py), FlashAttention-3's one pass: 128 keys a program,
    64-row query blocks streamed, two consumer warpgroups, dQ added by a writer warp's TMA
    reductions; head dim 128 on Hopper. Knobs of its own, fitted on its rows; timed where our
    dispatch runs it (`takes`: the Gluon prefill's conditions, and its knobs fitted)."""
    name = "backward_gluon"
    gpu_tiles = ((128, 64),)
    head_dims = (128,)
    takes = classmethod(PrefillWs.takes.__func__)
