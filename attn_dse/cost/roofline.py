"""Roofline: the time of a piece of work is the largest of its times on each resource.

Resources: matmul units (per dtype), vector units, the exp unit, and each memory level. The
ceilings are the preset's measured `achievable` rates where it has them, datasheet peaks
otherwise (`Ceilings.source` says which).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from attn_dse.hardware.spec import Hardware

COMPUTE_LIMITERS = ("matmul", "vector", "exp")


@dataclass(frozen=True)
class Ceilings:
    matmul_flop_per_s: float
    vector_flop_per_s: float
    exp_per_s: float
    hbm_bytes_per_s: float
    cache_bytes_per_s: float | None
    core_memory_bytes_per_s: float
    source: str  # "achievable" or "datasheet"


def ceilings(hw: Hardware, dtype: str = "bf16", achievable: bool = True) -> Ceilings:
    mm_dtype = dtype if dtype in hw.peak_flop_per_s else "bf16"
    measured = achievable and (mm_dtype in hw.achievable.matmul_flop_per_s or hw.achievable.hbm_bytes_per_s)
    return Ceilings(
        matmul_flop_per_s=hw.matmul_flop_per_s(mm_dtype, achievable),
        vector_flop_per_s=hw.vector_flop_per_s, exp_per_s=hw.exp_per_s,
        hbm_bytes_per_s=hw.hbm_bytes_per_s(achievable),
        cache_bytes_per_s=hw.cache.bytes_per_s if hw.cache else None,
        core_memory_bytes_per_s=hw.core_memory.bytes_per_s,
        source="achievable" if measured else "datasheet")


def attainable(intensity, hw: Hardware, dtype: str = "bf16", level: str = "hbm", achievable: bool = False):
    """Attainable FLOP/s at an arithmetic intensity against one memory level (for plots)."""
    peak = hw.matmul_flop_per_s(dtype if dtype in hw.peak_flop_per_s else "bf16", achievable)
    bw = hw.hbm_bytes_per_s(achievable) if level == "hbm" else hw.level(level).bytes_per_s
    return np.minimum(peak, np.asarray(intensity, dtype=np.float64) * bw)


def bound_time(times: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """max over resource times, and the name of the resource that sets it (broadcasts)."""
    names = list(times)
    stacked = np.stack(np.broadcast_arrays(*[np.asarray(times[n], dtype=np.float64) for n in names]))
    idx = np.argmax(stacked, axis=0)
    return np.max(stacked, axis=0), np.asarray(names, dtype=object)[idx]


def op_time(c: Ceilings, flops, vector_flops, exps, hbm_bytes, compute_eff: float = 1.0,
            memory_eff: float = 1.0, launch_s: float = 0.0):
    """One kernel under the roofline: max(matmul, vector, exp, HBM) + launch overhead."""
    t, limiter = bound_time({
        "matmul": np.asarray(flops) / (c.matmul_flop_per_s * compute_eff),
        "vector": np.asarray(vector_flops) / c.vector_flop_per_s,
        "exp": np.asarray(exps) / c.exp_per_s,
        "hbm": np.asarray(hbm_bytes) / (c.hbm_bytes_per_s * memory_eff)})
    return t + launch_s, limiter


def select(which, options: dict):
    """Elementwise: options[which[i]][i] (which is an array of keys, or one key)."""
    which = np.asarray(which, dtype=object)
    out = np.empty(which.shape, dtype=object)
    for key, value in options.items():
        out = np.where(which == key, np.asarray(value, dtype=object), out)
    return out if out.ndim else out.item()


def largest_limiter(times: dict, limiters: dict):
    """Elementwise: limiters[k] of the k whose time is largest (the first on ties), i.e.
    select(bound_time(times)[1], limiters) without comparing strings per point."""
    keys = list(times)
    if len(keys) == 1 and isinstance(times[keys[0]], float):  # one part of one point
        out = limiters[keys[0]]
        if isinstance(out, str) or (isinstance(out, np.ndarray) and out.ndim == 0):
            return out.item() if isinstance(out, np.ndarray) else out
    shape = np.broadcast_shapes(*(np.shape(v) for v in times.values()), *(np.shape(v) for v in limiters.values()))
    if shape == ():  # one point: plain Python (NaN counts as largest, as in argmax)
        values = [float(times[k]) for k in keys]
        nan = [i for i, v in enumerate(values) if v != v]
        out = limiters[keys[nan[0] if nan else values.index(max(values))]]
        return out.item() if isinstance(out, np.ndarray) else out
    if len(keys) == 1:
        out = np.broadcast_to(np.asarray(limiters[keys[0]], dtype=object), shape)
    else:
        idx = np.argmax(np.stack(np.broadcast_arrays(*[np.asarray(times[k], dtype=np.float64) for k in keys])), axis=0)
        options = np.stack([np.broadcast_to(np.asarray(limiters[k], dtype=object), shape) for k in keys])
        out = np.take_along_axis(options, np.broadcast_to(idx, shape)[None], axis=0).reshape(shape)
    return out.item() if out.ndim == 0 else out
