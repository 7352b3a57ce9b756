"""Block-sparse attention (MoBA, NSA's selection branch): each query block attends its selected
key blocks. Prefill tiles it like dense prefill over the selected keys, decode like split-KV
decode over them; the family has knobs of its own (gathers of scattered blocks)."""
from __future__ import annotations

from attn_dse.cost.families import prefill
from attn_dse.cost.families.decode import decode_args, estimate_decode
from attn_dse.cost.family import Family, register_family
from attn_dse.cost.measured import flag, num


@register_family
class BlockSparse(Family):
    name = "block_sparse"
    order = 10
    compute_efficiency, memory_efficiency = 0.6, 0.8

    def claims(self, spec):
        return spec.block is not None

    def estimate(self, spec, hw, c, knobs, fixed=None):
        if spec.phase == "decode":
            return estimate_decode(self.name, spec, hw, c, knobs, fixed)
        return prefill.search(spec, hw, c, knobs, self.name, fixed)

    def workload_for(self, row):
        """Top-k block selection without the gate (the measured kernel is given the indices)."""
        from attn_dse.workloads import attention
        wl = attention("block_sparse", n_heads=int(num(row, "n_heads")), n_kv_heads=int(num(row, "n_kv_heads")),
                       head_dim=int(num(row, "head_dim")), block_size=num(row, "block", 64),
                       top_k=num(row, "top_k"), gate=False)
        if row.get("phase") == "decode":
            return wl, decode_args(row)
        return wl, dict(phase="prefill", batch=num(row, "batch"), seq=num(row, "seq"),
                        dtype=row.get("dtype") or "bf16", causal=flag(row, "causal"), mapping=None)
