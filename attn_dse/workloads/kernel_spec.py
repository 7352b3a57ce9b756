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
