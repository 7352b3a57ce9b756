"""Absorbed MLA decode (FlashMLA-style): all query heads of a sequence attend one shared latent
(K = the 576-wide latent, V = its first 512 columns, read once). The decode model with its own
knobs: its programs fill a core's shared memory, so one core streams less than in GQA decode.
The family is our Triton kernel (gpu/mla_decode.py, the tokens and heads layouts). Our other
kernels are families of their own, whose knobs time their rows: the two fp8 ones (FlashMLA's
656-byte row), to which the MLA family does not dispatch, the Triton kernel
(gpu/mla_decode_fp8.py) `mla_decode_widen` and the Gluon one (gpu/mla_decode_fp8_wgmma.py)
`mla_decode_smem` (and its warp-specialized successor `mla_decode_ws`); the two bf16 Gluon kernels for many heads, to which it dispatches where they
were measured, the seesaw (`mla_decode_seesaw`) and the split-tile kernel it replaced
(`mla_decode_wgmma`)."""
from __future__ import annotations

import numpy as np

from attn_dse.cost import tiled
from attn_dse.cost.families.decode import decode_args, estimate_decode
from attn_dse.cost.family import Family, register_family
from attn_dse.cost.measured import config, num
from attn_dse.workloads.variants.mla import FLASHMLA_FP8_BYTES

MANY_HEADS = 32  # more heads run a Gluon kernel on Hopper (gpu/mla_decode.default_config) ...
GLUON_LATENT = 512  # ... of latents up to 512 columns: it splits them over two warpgroups, wgmma's N <= 256 each
GLUON_ROWS = 64  # the bf16 Gluon kernels' query rows a program, the wgmma M (padded)


@register_family
class MlaDecode(Family):
    name = "mla_decode"
    order = 20
    compute_efficiency, memory_efficiency = 0.7, 0.88
    # a program streams its latent at one core's rate wherever the bytes come from: two programs
    # of a sequence (16 heads x 2 new tokens) take twice the time of one though the second's
    # bytes are L2 hits (H200, h200-mla-decode-fp8-measurements.csv); every MLA kernel of ours
    core_raw = True

    def claims(self, spec):
        return spec.phase == "decode" and spec.kv_shared

    def estimate(self, spec, hw, c, knobs, fixed=None):
        """Our dispatch (gpu/mla_decode.default_config): more than 32 heads over a latent of up
        to 512 columns run a Gluon kernel on Hopper, timed as the first of the seesaw and the
        split-tile kernel it replaced that was measured on this GPU (their knobs are the
        implementation's); the rest, and every shape where neither was measured, this family's
        kernel. A row's pinned kernel times that kernel alone."""
        fixed = dict(fixed or {})
        pinned = fixed.pop("kernel", None)
        if pinned is not None:
            return estimate_decode(pinned, spec, hw, c, knobs, fixed)
        gluon = next((k for k in (MlaDecodeSeesaw.name, MlaDecodeWgmma.name) if k in knobs.measured), None)
        own = lambda s: estimate_decode(self.name, s, hw, c, knobs, fixed)  # noqa: E731
        if gluon is None:
            return own(spec)
        many = (spec.h_q > MANY_HEADS) & (spec.d_v <= GLUON_LATENT)
        return tiled.split(many, spec, lambda s: estimate_decode(gluon, s, hw, c, knobs, fixed), own)

    def kernel_of(self, row):
        """A row over an fp8 latent in the 'heads' layout is our Triton kernel's, in the 'wgmma'
        layout our Gluon kernel's (its stages field: 1 or 2 widened buffers), in the 'ws' and 'wsr'
        layouts the warp-specialized Gluon kernel's; a bf16 row in the
        'seesaw' layout is the seesaw kernel's, in the 'wgmma' layout the split-tile kernel's;
        other kernels (our Triton layouts, other people's) are this family's."""
        narrow = (row.get("kv_dtype") or "bf16") != (row.get("dtype") or "bf16")
        cfg = config(row)
        if narrow and cfg and cfg[0] == "heads":
            return MlaDecodeWiden.name
        if narrow and cfg and cfg[0] == "wgmma":
            return MlaDecodeSmemPair.name if cfg[4] == 1 else MlaDecodeSmem.name
        if narrow and cfg and cfg[0] in ("ws", "wsr"):
            return MlaDecodeWs.name
        if cfg and cfg[0] == "seesaw":
            return MlaDecodeSeesaw.name
        if cfg and cfg[0] == "wgmma":
            return MlaDecodeWgmma.name
        return self.name

    def workload_for(self, row):
        """Absorbed MLA at the row's head count; a recorded (layout, heads per program, key
        tile, ...) configuration pins block_m (how many programs stream the latent) and block_n."""
        from attn_dse.workloads import attention
        tokens = num(row, "batch") * (num(row, "context") + num(row, "seq"))
        flashmla_row = num(row, "kv_bytes") == tokens * FLASHMLA_FP8_BYTES  # the kernel's cache, by its size
        wl = attention("mla", n_heads=int(num(row, "n_heads")), scheme="absorbed",
                       **({"kv_layout": "flashmla_fp8"} if flashmla_row else {}))
        kw = decode_args(row)
        kw.pop("causal")
        cfg = config(row)
        tiles = {"block_m": float(cfg[1]), "block_n": float(cfg[2])} if len(cfg) == 5 else {}
        mapping = {**(kw["mapping"] or {}), **tiles}
        kernel = self.kernel_of(row)
        if kernel != self.name:
            mapping["kernel"] = kernel
        return wl, {**kw, "mapping": mapping or None}


@register_family
class MlaDecodeWgmma(MlaDecode):
    """Our bf16 Gluon MLA kernel for Hopper before the seesaw (gpu/mla_decode_wgmma.py): a
    program's two warpgroups split each 64-token key tile's scores (32 tokens each, for all 64
    heads) and the output's latent columns, the probabilities crossing through shared memory.
    The MLA family times more than 32 heads with it where its knobs were fitted and the
    seesaw's were not (`MlaDecode.estimate`)."""

    name = "mla_decode_wgmma"
    order = 24
    key_tiles = (64,)
    row_tiles = (GLUON_ROWS,)

    def row_tile(self, m_rows):
        return GLUON_ROWS

    def claims(self, spec):
        return False


@register_family
class MlaDecodeSeesaw(MlaDecodeWgmma):
    """Our bf16 Gluon MLA kernel for Hopper with FlashMLA's seesaw (gpu/mla_decode_seesaw.py):
    the warpgroups score the key tiles in turn, 64 heads x 32 tokens each, and each softmax runs
    beside the other's matmuls; each owns half the output's latent columns. The MLA family times
    more than 32 heads with it where its knobs were fitted (`MlaDecode.estimate`)."""

    name = "mla_decode_seesaw"
    order = 25
    key_tiles = (32,)


@register_family
class MlaDecodeWiden(MlaDecode):
    """Absorbed MLA decode over an fp8 latent (FlashMLA's 656-byte row) that widens each latent
    value to fp16 as the operand of heads-major mma.sync tiles, once per block of heads (our
    Triton kernel, gpu/mla_decode_fp8.py): its time follows the heads, not the bytes (0.56-0.73x
    the bf16 kernel at 16 heads, 0.12-0.41x at 128), so its widening is part of its MMA rate.
    It claims no shape: the MLA family's predictions are those of its own kernel."""

    name = "mla_decode_widen"
    order = 21
    widens_in_mma = True

    def claims(self, spec):
        return False


@register_family
class MlaDecodeSmem(MlaDecode):
    """Absorbed MLA decode over an fp8 latent (FlashMLA's 656-byte row) that widens each key
    tile once into shared memory, where tokens-major wgmma reads it for both products with the
    heads as the MMA's N (our Gluon kernel, gpu/mla_decode_fp8_wgmma.py), its two buffers
    filled by TMA (stages 2): the widening is vector work of each program (a block of 16 or 32
    query rows), apart from the MMAs. It claims no shape: the MLA family's predictions are those
    of its own kernel."""

    name = "mla_decode_smem"
    order = 22
    key_tiles = (64,)  # the wgmma M

    def claims(self, spec):
        return False


@register_family
class MlaDecodeSmemPair(MlaDecodeSmem):
    """The same kernel (gpu/mla_decode_fp8_wgmma.py) with one widened buffer filled through
    registers (stages 1), whose 92 KB of shared memory let two programs share an SM: alone on an
    SM a program reaches 1/1.29 of the pair's rate (`resident`). Measured on an H200 at
    B64 x 32k, 16 heads, in one run: 1.51 TB/s with 128 programs, 1.95 with 256
    (docs/device-logs/h200-mla-decode-fp8-gluon-v8-2026-12-03.log; the kernel before its
    widening stores were made contiguous: 1.31 and 1.74). The two programs an SM holds load
    their first tiles together: 256 programs on 132 SMs fill once, not twice (`slots`)."""

    name = "mla_decode_smem_pair"
    order = 23
    resident = 1.29
    slots = 2



@register_family
class MlaDecodeWs(MlaDecodeSmem):
    """The warp-specialized fp8 kernel (gpu/mla_decode_fp8_wgmma.py, layouts "ws" and "wsr"):
    a loader warp, a widening warpgroup and the consumer warpgroup, so a tile's widening runs
    beside the previous tile's MMAs; one program an SM (166-219 KB of shared memory). "wsr"
    (the RoPE key in the consumer's registers, two widened buffers) is the same kernel with
    more of its widening hidden: 1.02-1.04x "ws" in one A/B run. It claims no shape:
    the MLA family's predictions are those of its own kernel."""

    name = "mla_decode_ws"
    order = 26
