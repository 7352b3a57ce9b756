"""Kernels the plain roofline times (no tiling model): the projections and other GEMMs, and the
unfused attention path, whose QK^T, softmax and PV are kernels of their own through HBM."""
from __future__ import annotations

from attn_dse.cost.family import Family, register_family


@register_family
class Gemm(Family):
    name = "gemm"
    tiled = False
    compute_efficiency, memory_efficiency = 0.9, 0.9


@register_family
class Unfused(Family):
    name = "unfused"
    tiled = False
    compute_efficiency, memory_efficiency = 0.8, 0.9
