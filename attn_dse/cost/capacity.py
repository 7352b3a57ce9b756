"""Capacity: what one device holds (weights sharded over devices, plus its batch's KV cache)
against the usable share of its memory."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from attn_dse.errors import AttnDseError
from attn_dse.hardware.spec import Hardware
from attn_dse.workloads.ops import total_cost
from attn_dse.workloads.registry import Workload
from attn_dse.workloads.shape import DTYPE_BYTES, make_shape


@dataclass(frozen=True)
class Capacity:
    kv_bytes_per_token: Any  # one sequence, all layers
    weight_bytes: Any  # per device
    memory_bytes: Any  # weights + the batch's KV, per device
    usable_bytes: float
    fits: Any
    max_batch: Any  # sequences whose KV fits beside the weights


def capacity(hw: Hardware, wl: Workload, phase: str, batch, context, seq=1, dtype: str = "bf16",
             causal: bool = True, devices: int = 1, usable_memory: float = 0.9, weight_dtype: str | None = None,
             weights_bytes: float | None = None, weight_params: float | None = None, label: str = "",
             kv_dtype=None) -> Capacity:
    """Weights (given in bytes, as a parameter count, from the model preset, or counted from the
    model's op graph) over `devices`, plus `batch` sequences of KV cache at `context`."""
    b = DTYPE_BYTES[weight_dtype or dtype]
    try:
        one = make_shape(phase, 1, seq if phase == "decode" else context, context if phase == "decode" else None,
                         causal, dtype, kv_dtype)
        kv_seq = wl.kv_cache_bytes(one, "model")
    except AttnDseError as exc:
        raise AttnDseError(f"{label or wl.name}: the memory check needs the model's depth ({exc.problem})",
                           fix="add n_layers to the variant's params, use a model preset, or drop 'memory'") from None
    if weights_bytes is not None:
        weights = weights_bytes
    elif weight_params:
        weights = weight_params * b
    elif wl.model is not None:
        weights = wl.model.weight_bytes(b)
    else:
        weights = total_cost(wl.ops(one, "model")).weight_bytes
    weights = weights / devices
    usable = usable_memory * hw.hbm.capacity_bytes
    memory = weights + batch * kv_seq
    return Capacity(kv_bytes_per_token=kv_seq / one.context if np.all(one.context > 0) else kv_seq,
                    weight_bytes=weights + 0 * kv_seq, memory_bytes=memory, usable_bytes=usable,
                    fits=memory <= usable, max_batch=np.floor(np.maximum(usable - weights, 0) / kv_seq))
