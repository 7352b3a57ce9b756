"""What the fused attention kernel of a variant computes, per device: the input of the cost model.

A variant says what its softmax-attention kernel does (heads, widths, attended pairs, cached
tokens it streams, masks); which kernel family times it is the cost model's choice
(`cost/family.py`), not the variant's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class KernelSpec:
    """Queries: batch x h_q heads x seq tokens at positions past..past+seq-1. Keys: K/V of
    h_kv heads, d_qk/d_v wide (kv_shared: one latent serves as K and V, read once).
    `pairs` is the exact attended count per query head and sequence; `kv_read_tokens` the
    cached tokens one KV head streams per sequence (window/top-k bound it).
    """

    batch: Any
    seq: Any
    past: Any
    h_q: Any
    h_kv: Any
    d_qk: Any
    d_v: Any
    pairs: Any
    kv_read_tokens: Any
    causal: bool
    bytes_per_element: int
    kv_shared: bool = False
    window: Any = np.inf
    block: Any = None  # key-block granularity of a sparse selection
    skip: Any = 0.0  # fraction of KV tiles skipped (BLASST)
    phase: str = "prefill"  # decode runs split-KV (flash-decoding) kernels
    # KV cache stored apart from the compute dtype: bytes per cached element (scales included;
    # None = bytes_per_element), vector work to dequantize one streamed cached element, and the
    # dtype the kernel's matmuls run at ("" = the workload's)
    kv_bytes_per_element: Any = None
    dequant_vector_flops: Any = 0.0
    compute_dtype: str = ""
    # pairs per head a tiled kernel computes (masked waste included) where the variant's
    # geometry sets it (multi-dimensional neighborhoods); None: the family's own estimate
    tile_pairs: Any = None
    # bytes the kernel streams beyond one read of Q, K, V and one write of O (gathered query
    # copies, fp32 partial outputs of a gather-and-merge execution), once each
    extra_io_bytes: Any = 0.0

    @property
    def kv_bytes(self):
        """Bytes per cached K/V element in HBM."""
        return self.bytes_per_element if self.kv_bytes_per_element is None else self.kv_bytes_per_element


def kv_fields(s, bytes_per_element=None, dequantized_share=1.0) -> dict:
    """The KernelSpec fields of a shape's KV format: bytes per cached element (a layout may
    give its own, e.g. FlashMLA's 656-byte row over 576 elements), the dequantization work per
    streamed element (`dequantized_share` of the elements are stored narrow), and the matmul
    dtype (`Shape.attention_dtype`)."""
    from attn_dse.workloads.shape import DTYPE_BYTES, DEQUANT_VECTOR_FLOPS, kv_bits
    compute = s.attention_dtype
    narrow = kv_bits(s.kv_format) < 8 * DTYPE_BYTES[compute] or bytes_per_element is not None
    per = s.kv_bytes_per_element if bytes_per_element is None else bytes_per_element
    return {"kv_bytes_per_element": per,
            "dequant_vector_flops": DEQUANT_VECTOR_FLOPS * dequantized_share if narrow else 0.0,
            "compute_dtype": compute}
