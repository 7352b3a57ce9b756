"""The MLP of every layer on one GPU: dense gated FFN (gate+up GEMM, activation, down GEMM) or
a mixture of experts (router, all-to-all dispatch, grouped GEMMs over the local experts,
combine, shared experts), each kernel under the roofline with the `gemm` family's knobs.

Parallelism (per GPU of a replica): dense FFN and shared experts are tensor-parallel over
`tp` (then an all-reduce of the output); routed experts are spread whole over
`expert_parallel` GPUs, which exchange the tokens routed to them (all-to-all); a GPU routes
tokens/tp of the replica's tokens. The busiest GPU sets the step, so the grouped GEMM's rows
are scaled by `imbalance`. Its weights are read once per step per expert that received a
token: with uniform routing the share of local experts hit is 1 - (1 - top_k/n_experts)^T for
T tokens routed in the expert-parallel group (the reason small decode batches read only part
of a MoE's weights). Every field broadcasts over numpy arrays.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from attn_dse.cost.roofline import Ceilings, bound_time, op_time
from attn_dse.workloads.models import FfnShape

ACT_VECTOR_OPS = 5.0  # silu(g) * u per element: exp, add, divide, two multiplies


@dataclass(frozen=True)
class Kernels:
    """A sum of kernels: seconds, matmul FLOPs (algorithmic and executed), HBM bytes, weights
    read, interconnect bytes, and the resource that dominates."""

    time_s: Any = 0.0
    flops: Any = 0.0
    executed_flops: Any = 0.0
    hbm_bytes: Any = 0.0
    weight_bytes: Any = 0.0
    comm_bytes: Any = 0.0
    limiter: Any = "hbm"

    def __add__(self, o: "Kernels") -> "Kernels":
        _, main = bound_time({"a": self.time_s, "b": o.time_s})
        lim = np.where(main == "a", np.asarray(self.limiter, dtype=object), np.asarray(o.limiter, dtype=object))
        return Kernels(self.time_s + o.time_s, self.flops + o.flops, self.executed_flops + o.executed_flops,
                       self.hbm_bytes + o.hbm_bytes, self.weight_bytes + o.weight_bytes,
                       self.comm_bytes + o.comm_bytes, lim if lim.ndim else lim.item())

    def times(self, n) -> "Kernels":
        """The same kernels run n times (layers, chunks)."""
        return Kernels(self.time_s * n, self.flops * n, self.executed_flops * n, self.hbm_bytes * n,
                       self.weight_bytes * n, self.comm_bytes * n, self.limiter)


@dataclass(frozen=True)
class GemmCosts:
    """Efficiencies (share of the matmul and HBM ceilings), launch cost and tile rows."""

    compute_efficiency: float
    memory_efficiency: float
    launch_s: float
    row_granule: int  # tokens a GEMM tile pads to


def gemm(c: Ceilings, g: GemmCosts, rows, d_in, d_out, *, groups=1.0, weights_read=None, act_bytes=2,
         weight_bytes_per_param=2) -> Kernels:
    """One (grouped) GEMM: `rows` tokens in all through [d_in, d_out] weights, split over
    `groups` experts (the rows of each padded to the tile height); `weights_read` matrices
    read (default `groups`)."""
    weights_read = groups if weights_read is None else weights_read
    flops = 2.0 * rows * d_in * d_out
    per_group = rows / np.maximum(groups, 1e-30)
    padded = np.ceil(per_group / g.row_granule - 1e-9) * g.row_granule * groups
    executed = 2.0 * np.maximum(padded, rows) * d_in * d_out
    w = weights_read * d_in * d_out * weight_bytes_per_param
    hbm = w + rows * (d_in + d_out) * act_bytes
    t, lim = op_time(c, executed, 0.0, 0.0, hbm, g.compute_efficiency, g.memory_efficiency, g.launch_s)
    return Kernels(t, flops, executed, hbm, w, 0.0, lim)


def elementwise(c: Ceilings, g: GemmCosts, vector_flops, nbytes, exps=0.0) -> Kernels:
    t, lim = op_time(c, 0.0, vector_flops, exps, nbytes, 1.0, g.memory_efficiency, g.launch_s)
    return Kernels(t, 0.0, 0.0, nbytes, 0.0, 0.0, lim)


def comm(bytes_per_gpu, link_bytes_per_s, launch_s) -> Kernels:
    active = np.asarray(bytes_per_gpu) > 0
    return Kernels(np.where(active, bytes_per_gpu / link_bytes_per_s + launch_s, 0.0), 0.0, 0.0, 0.0, 0.0,
                   bytes_per_gpu, "interconnect")


def dense_ffn(c: Ceilings, g: GemmCosts, tokens, d_model, width, matrices: int, tp, wb, ab, link, train=False) -> Kernels:
    """A gated (3 matrices) or plain (2) MLP over `tokens`, width sharded over tp."""
    w = width / tp
    up = gemm(c, g, tokens, d_model, (matrices - 1) * w, weight_bytes_per_param=wb, act_bytes=ab)
    act = elementwise(c, g, ACT_VECTOR_OPS * tokens * w, tokens * w * matrices * ab, exps=tokens * w)
    down = gemm(c, g, tokens, w, d_model, weight_bytes_per_param=wb, act_bytes=ab)
    out = up + act + down
    reduce = comm(np.where(tp > 1, 2 * (tp - 1) / tp * tokens * d_model * ab, 0.0), link, g.launch_s)
    return _train(out, train) + reduce.times(2 if train else 1)


def moe_ffn(c: Ceilings, g: GemmCosts, f: FfnShape, tokens, d_model, tp, wb, ab, link, train=False) -> Kernels:
    """One MoE layer on the busiest GPU: router, dispatch, grouped GEMMs, combine, shared experts."""
    m = f.matrices
    t_gpu = tokens / tp  # tokens this GPU routes
    ep = f.expert_parallel
    local = f.n_experts / ep
    routed_group = t_gpu * ep  # tokens routed within the expert-parallel group
    hit = 1.0 - (1.0 - f.top_k / f.n_experts) ** routed_group  # share of experts receiving a token
    active = np.maximum(local * hit, np.minimum(local, 1.0))
    pairs = t_gpu * f.top_k * f.imbalance  # (token, expert) rows on the busiest GPU
    I = f.expert_intermediate_size
    router = gemm(c, g, t_gpu, d_model, f.n_experts, weight_bytes_per_param=wb, act_bytes=ab) + \
        elementwise(c, g, 4.0 * t_gpu * f.n_experts, t_gpu * f.n_experts * 4.0, exps=t_gpu * f.n_experts)
    sent = t_gpu * f.top_k * d_model * ab * (ep - 1) / ep  # each direction
    dispatch = comm(sent, link, g.launch_s)
    experts = grouped_ffn(c, g, pairs, active, d_model, I, m, wb, ab)
    combine = comm(sent, link, g.launch_s) + elementwise(c, g, 2.0 * pairs * d_model, (pairs + t_gpu) * d_model * ab)
    shared = Kernels()
    if np.any(f.shared_width > 0):
        s = f.shared_width
        shared = gemm(c, g, t_gpu, d_model, (m - 1) * s, weight_bytes_per_param=wb, act_bytes=ab) + \
            elementwise(c, g, ACT_VECTOR_OPS * t_gpu * s, t_gpu * s * m * ab, exps=t_gpu * s) + \
            gemm(c, g, t_gpu, s, d_model, weight_bytes_per_param=wb, act_bytes=ab)
    # FLOPs are the algorithm's (the mean GPU's); the busiest GPU's rows set the time
    experts = dataclasses.replace(experts, flops=experts.flops / f.imbalance)
    compute = _train(router + experts + shared, train)
    return compute + (dispatch + combine).times(2 if train else 1)


def grouped_ffn(c: Ceilings, g: GemmCosts, pairs, active, d_model, width, matrices: int, wb, ab) -> Kernels:
    """The experts' work on one GPU: `pairs` (token, expert) rows over `active` experts through a
    grouped gate+up GEMM, the activation, and a grouped down GEMM (what `gpu/ffn.py` times)."""
    up = gemm(c, g, pairs, d_model, (matrices - 1) * width, groups=active, weight_bytes_per_param=wb, act_bytes=ab)
    act = elementwise(c, g, ACT_VECTOR_OPS * pairs * width, pairs * width * matrices * ab, exps=pairs * width)
    down = gemm(c, g, pairs, width, d_model, groups=active, weight_bytes_per_param=wb, act_bytes=ab)
    return up + act + down


def ffn_weight_params(f: FfnShape, d_model, n_layers, tp):
    """MLP parameters one GPU holds: dense layers and shared experts sharded over tp, routed
    experts over expert_parallel (each GPU whole experts), routers replicated."""
    m = f.matrices
    dense = f.dense_layers(n_layers) * m * d_model * f.intermediate_size / tp
    moe = f.moe_layers(n_layers) * (m * d_model * (f.n_experts / f.expert_parallel * f.expert_intermediate_size
                                                   + f.shared_width / tp) + d_model * f.n_experts)
    return dense + moe


def ffn_all_layers(c: Ceilings, g: GemmCosts, f: FfnShape, tokens, d_model, n_layers, tp, wb, ab, link,
                   train=False) -> Kernels:
    """Every layer's MLP for `tokens` query tokens of the replica (one GPU's share)."""
    out = Kernels()
    n_dense, n_moe = f.dense_layers(n_layers), f.moe_layers(n_layers)
    if np.any(n_dense > 0):
        out = out + dense_ffn(c, g, tokens, d_model, f.intermediate_size, f.matrices, tp, wb, ab, link, train).times(n_dense)
    if f.is_moe:
        out = out + moe_ffn(c, g, f, tokens, d_model, tp, wb, ab, link, train).times(n_moe)
    return out


def _train(k: Kernels, train: bool) -> Kernels:
    """Training: the backward of each GEMM is two GEMMs of its size (input and weight
    gradients), so FLOPs, time and traffic triple; weight gradients are written once more."""
    if not train:
        return k
    return Kernels(3 * k.time_s, 3 * k.flops, 3 * k.executed_flops, 3 * k.hbm_bytes + k.weight_bytes,
                   k.weight_bytes, k.comm_bytes, k.limiter)
