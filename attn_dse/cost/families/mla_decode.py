"""Absorbed MLA decode (FlashMLA-style): all query heads of a sequence attend one shared latent
(K = the 576-wide latent, V = its first 512 columns, read once). The decode model with its own
knobs: its programs fill a core's shared memory, so one core streams less than in GQA decode.
Our two fp8 MLA kernels (FlashMLA's 656-byte row) are families of their own, whose knobs time
their rows and to which the MLA family does not dispatch: the Triton kernel
(gpu/mla_decode_fp8.py) is `mla_decode_widen`, the Gluon one (gpu/mla_decode_fp8_wgmma.py)
`mla_decode_smem`. Of the bf16 kernels, the seesaw (`mla_decode_seesaw`) is a family the MLA
family dispatches to for many heads where it was measured."""
from __future__ import annotations

import numpy as np

from attn_dse.cost import tiled
from attn_dse.cost.families.decode import decode_args, estimate_decode
from attn_dse.cost.family import Family, register_family
from attn_dse.cost.measured import config, num
from attn_dse.workloads.variants.mla import FLASHMLA_FP8_BYTES

SEESAW_ABOVE_HEADS = 32  # gpu/mla_decode.default_config: more heads run the seesaw kernel on Hopper


@register_family
class MlaDecode(Family):
    name = "mla_decode"
    order = 20
    compute_efficiency, memory_efficiency = 0.7, 0.88

    def claims(self, spec):
        return spec.phase == "decode" and spec.kv_shared

    def estimate(self, spec, hw, c, knobs, fixed=None):
        """Our dispatch (gpu/mla_decode.default_config): more than 32 heads run the seesaw
        kernel where it was measured (its knobs are the implementation's), the rest this
        family's kernel; a row's pinned kernel times that kernel alone."""
        fixed = dict(fixed or {})
        pinned = fixed.pop("kernel", None)
        if pinned is not None or MlaDecodeSeesaw.name not in knobs.measured:
            return estimate_decode(pinned or self.name, spec, hw, c, knobs, fixed)
        many = np.asarray(spec.h_q > SEESAW_ABOVE_HEADS)
        if not many.any():
            return estimate_decode(self.name, spec, hw, c, knobs, fixed)
        seesaw = estimate_decode(MlaDecodeSeesaw.name, spec, hw, c, knobs, fixed)
        return seesaw if many.all() else tiled.pick(many, seesaw, estimate_decode(self.name, spec, hw, c, knobs, fixed))

    def kernel_of(self, row):
        """A row over an fp8 latent in the 'heads' layout is our Triton kernel's, in the 'wgmma'
        layout our Gluon kernel's (its stages field: 1 or 2 widened buffers); a bf16 row in the
        'seesaw' layout is the seesaw kernel's; other kernels (our Triton layouts and the Gluon
        kernel the seesaw replaced, other people's) are this family's."""
        narrow = (row.get("kv_dtype") or "bf16") != (row.get("dtype") or "bf16")
        cfg = config(row)
        if narrow and cfg and cfg[0] == "heads":
            return MlaDecodeWiden.name
        if narrow and cfg and cfg[0] == "wgmma":
            return MlaDecodeSmemPair.name if cfg[4] == 1 else MlaDecodeSmem.name
        if cfg and cfg[0] == "seesaw":
            return MlaDecodeSeesaw.name
        return self.name

    def workload_for(self, row):
        """Absorbed MLA at the row's head count; a recorded (layout, heads per program, ...)
        configuration pins block_m (how many programs stream the latent)."""
        from attn_dse.workloads import attention
        tokens = num(row, "batch") * (num(row, "context") + num(row, "seq"))
        flashmla_row = num(row, "kv_bytes") == tokens * FLASHMLA_FP8_BYTES  # the kernel's cache, by its size
        wl = attention("mla", n_heads=int(num(row, "n_heads")), scheme="absorbed",
                       **({"kv_layout": "flashmla_fp8"} if flashmla_row else {}))
        kw = decode_args(row)
        kw.pop("causal")
        cfg = config(row)
        mapping = {**(kw["mapping"] or {}), **({"block_m": float(cfg[1])} if len(cfg) == 5 else {})}
        kernel = self.kernel_of(row)
        if kernel in (MlaDecodeSmem.name, MlaDecodeSmemPair.name):
            mapping["block_n"] = float(cfg[2])  # the Gluon kernels' key tile is fixed: 64 tokens, the wgmma M
        if kernel != self.name:
            mapping["kernel"] = kernel
        return wl, {**kw, "mapping": mapping or None}


@register_family
class MlaDecodeSeesaw(MlaDecode):
    """Our bf16 Gluon MLA kernel for Hopper with FlashMLA's seesaw (gpu/mla_decode_seesaw.py):
    the warpgroups score the key tiles in turn, 64 heads x 32 tokens each, and each softmax runs
    beside the other's matmuls; each owns half the output's latent columns. The MLA family times
    more than 32 heads with it where its knobs were fitted (`MlaDecode.estimate`)."""

    name = "mla_decode_seesaw"
    order = 25

    def claims(self, spec):
        return False


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
    core_raw = True  # each program widens every tile it loads: L2 hits cost the core as much

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

