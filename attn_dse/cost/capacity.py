"""The memory plan of one device: weights, the batch's KV cache, activations and fragmentation
against the usable share of its memory, and the largest batch that fits at a context.

- Weights (in `weight_dtype`): given in bytes or as a parameter count, else, for a model with
  an FFN shape, counted from its shapes exactly as the step model places them
  (`cost/step.py: weight_params_per_gpu`: attention and dense MLP over tp, routed experts
  over expert_parallel, embeddings and LM head vocabulary-parallel), else the preset's stated
  count, else the op graph's. `devices` splits them further: pipeline stages, each holding
  its share of the layers (the KV of the layers it holds for `devices` micro-batches in
  flight comes to one batch's worth of the whole model's KV per device).
- KV cache (in `kv_dtype`, default the workload's): each sequence's context rounded up to
  whole pages of `kv_block` tokens (paged attention; the last page's unused slots are the
  paging fragmentation).
- Activations: one step's working set per sequence (its tokens in flight through the widest
  layer: residual stream, the MLP's gate and up outputs, logits in fp32); training keeps every
  layer's GEMM inputs for the backward. Counted for models with an FFN shape.
- Fragmentation: the allocator's share of the usable memory that holds nothing.
"""
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
    kv_bytes_per_token: Any  # one sequence, all layers, as paged and stored
    weight_bytes: Any  # per device
    kv_bytes: Any  # the batch's KV cache, per device
    activation_bytes: Any  # the batch's activations, per device
    fragmentation_bytes: Any  # usable memory the allocator loses
    memory_bytes: Any  # weights + KV + activations + fragmentation, per device
    usable_bytes: float
    fits: Any
    max_batch: Any  # sequences that fit beside the weights at this context


def capacity(hw: Hardware, wl: Workload, phase: str, batch, context, seq=1, dtype: str = "bf16",
             causal: bool = True, devices: int = 1, usable_memory: float = 0.9, weight_dtype: str | None = None,
             weights_bytes: float | None = None, weight_params: float | None = None, label: str = "",
             kv_dtype: str | None = None, kv_block: int = 1, fragmentation: float = 0.0) -> Capacity:
    """Weights over `devices`, plus `batch` sequences of KV cache and activations at `context`."""
    b = DTYPE_BYTES[weight_dtype or dtype]
    if weight_dtype is not None and weight_dtype not in DTYPE_BYTES:
        raise AttnDseError(f"weight_dtype '{weight_dtype}' is unknown", fix="use one of: " + ", ".join(DTYPE_BYTES))
    if not (np.all(np.asarray(kv_block) >= 1)):
        raise AttnDseError(f"kv_block={kv_block} must be >= 1 token", fix="e.g. 16 (vLLM's default page)")
    if not 0 <= fragmentation < 1:
        raise AttnDseError(f"fragmentation={fragmentation} must be in [0, 1)", fix="e.g. 0.05")
    context = np.asarray(context, dtype=np.float64)
    paged = np.ceil(context / kv_block) * kv_block if phase == "decode" else context
    try:
        one = make_shape(phase, 1, seq if phase == "decode" else paged, paged if phase == "decode" else None,
                         causal, dtype, kv_dtype)
        kv_seq = wl.kv_cache_bytes(one, "model")
    except AttnDseError as exc:
        raise AttnDseError(f"{label or wl.name}: the memory check needs the model's depth ({exc.problem})",
                           fix="add n_layers to the variant's params, use a model preset, or drop 'memory'") from None
    step_model = wl.model is not None and getattr(wl.model, "ffn", None) is not None
    if weights_bytes is not None:
        weights = weights_bytes
    elif weight_params:
        weights = weight_params * b
    elif step_model:
        from attn_dse.cost.step import weight_params_per_gpu
        from attn_dse.workloads.models import attention_params
        weights = weight_params_per_gpu(wl, attention_params(wl, per_device=True)) * b
    elif wl.model is not None:
        weights = wl.model.weight_bytes(b)
    else:
        weights = total_cost(wl.ops(one, "model")).weight_bytes
    weights = weights / devices
    act_seq = activation_bytes_per_sequence(wl, phase, seq if phase == "decode" else context, dtype) \
        if step_model and weights_bytes is None else 0.0 * kv_seq
    usable = usable_memory * hw.hbm.capacity_bytes
    lost = fragmentation * usable
    memory = weights + batch * (kv_seq + act_seq) + lost
    per_seq = kv_seq + act_seq
    return Capacity(kv_bytes_per_token=kv_seq / np.where(one.context > 0, one.context, 1.0),
                    weight_bytes=weights + 0 * kv_seq, kv_bytes=batch * kv_seq, activation_bytes=batch * act_seq,
                    fragmentation_bytes=lost, memory_bytes=memory, usable_bytes=usable, fits=memory <= usable,
                    max_batch=np.floor(np.maximum(usable - lost - weights, 0) / per_seq))


def activation_bytes_per_sequence(wl: Workload, phase: str, tokens, dtype: str):
    """One sequence's activations in one step on one device (see the module docstring)."""
    from attn_dse.cost.step import tensor_parallel
    info, f = wl.model, wl.model.ffn
    ab, E, tp = DTYPE_BYTES[dtype], info.d_model, tensor_parallel(wl)
    chunk = np.asarray(info.prefill_chunk, dtype=np.float64)
    if phase == "prefill":
        tokens = np.where(chunk > 0, np.minimum(tokens, np.where(chunk > 0, chunk, 1.0)), tokens)
    routed = f.top_k * f.expert_intermediate_size * f.imbalance + f.shared_width / tp
    widest = np.maximum(f.intermediate_size / tp, routed) * (f.matrices - 1)  # gate and up outputs
    logits = (tokens if phase != "prefill" else 1.0) * info.vocab_size / tp * 4  # fp32
    if phase == "train":  # each layer keeps its GEMM inputs and the MLP's intermediates
        per_layer = ab * (6 * E + (f.matrices - 1 + 1) * np.maximum(f.intermediate_size / tp, routed))
        return tokens * info.n_layers * per_layer + logits
    return tokens * ab * (4 * E + widest) + logits
