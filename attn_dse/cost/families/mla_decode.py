"""Absorbed MLA decode (FlashMLA-style): all query heads of a sequence attend one shared latent
(K = the 576-wide latent, V = its first 512 columns, read once). The decode model with its own
knobs: its programs fill a core's shared memory, so one core streams less than in GQA decode.
Our Triton fp8 MLA kernel (gpu/mla_decode_fp8.py, FlashMLA's 656-byte row) is `mla_decode_widen`:
its rows are timed with that family's knobs, and the MLA family does not dispatch to it."""
from __future__ import annotations

from attn_dse.cost.families.decode import decode_args, estimate_decode
from attn_dse.cost.family import Family, register_family
from attn_dse.cost.measured import config, num
from attn_dse.workloads.variants.mla import FLASHMLA_FP8_BYTES


@register_family
class MlaDecode(Family):
    name = "mla_decode"
    order = 20
    compute_efficiency, memory_efficiency = 0.7, 0.88

    def claims(self, spec):
        return spec.phase == "decode" and spec.kv_shared

    def estimate(self, spec, hw, c, knobs, fixed=None):
        fixed = dict(fixed or {})
        return estimate_decode(fixed.pop("kernel", self.name), spec, hw, c, knobs, fixed)

    def kernel_of(self, row):
        """A row over an fp8 latent in the 'heads' layout is our widening Triton kernel's; the
        Gluon kernel (layout 'wgmma') and other people's kernels are this family's."""
        narrow = (row.get("kv_dtype") or "bf16") != (row.get("dtype") or "bf16")
        cfg = config(row)
        return MlaDecodeWiden.name if narrow and cfg and cfg[0] == "heads" else self.name

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
        if self.kernel_of(row) != self.name:
            mapping["kernel"] = self.kernel_of(row)
        return wl, {**kw, "mapping": mapping or None}


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
