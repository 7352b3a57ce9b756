"""The MLP of every layer on one GPU: dense gated FFN (gate+up GEMM, activation, down GEMM) or
a mixture of experts (router, all-to-all dispatch, grouped GEMMs over the local experts,
combine, shared experts), each kernel under the roofline with the `gemm` family's knobs (the
grouped GEMM with its own, `GemmCosts.grouped`).

Parallelism (per GPU of a replica): dense FFN and shared experts are tensor-parallel over
`tp` (then an all-reduce of the output); routed experts are spread whole over
`expert_parallel` GPUs, which exchange the tokens routed to them (all-to-all); a GPU routes
tokens/tp of the replica's tokens. The busiest GPU sets the step: each of the T tokens routed
in the expert-parallel group picks each of its local experts with probability
p = min(imbalance * top_k / n_experts, 1), so an expert's rows are Binomial(T, p) (uniform
top-k routing; `imbalance` scales the busiest GPU's share). From that distribution
(`expert_routing`): the experts that receive a token, whose weights are read once each (the share
1 - (1 - p)^T: why a small decode batch reads only part of a MoE's weights), and the GEMM
tiles each expert's rows pad up to. Every field broadcasts over numpy arrays.
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
    """Efficiencies (share of the matmul and HBM ceilings), launch cost and tile rows of a GEMM;
    `grouped`: the grouped GEMM's own (None: these)."""

    compute_efficiency: float
    memory_efficiency: float
    launch_s: float
    row_granule: int  # tokens a skinny GEMM's tile pads to
    grouped: "GemmCosts | None" = None

    @property
    def grouped_costs(self) -> "GemmCosts":
        return self if self.grouped is None else self.grouped


# torch._grouped_mm on Hopper runs one CUTLASS grouped kernel whose tiles are 64 rows x 128 columns
# when the mean rows per expert (over every local expert) or the columns are at most 128, else
# 128 x 256 (PyTorch aten/src/ATen/native/cuda/GroupMM.cu, dispatch_bf16_grouped_kernel_on_tile_size).
# No expert here has 128 columns or fewer (gate+up: 2 x width, down: d_model), so the rows decide.
# [U] for other grouped GEMMs and accelerators.
GROUPED_TILE_ROWS = (64, 128)
GROUPED_SMALL = 128
TAIL = 35.0  # binomial tail terms below exp(-TAIL) (Bernstein's bound) are dropped from the tile sum


def gemm(c: Ceilings, g: GemmCosts, rows, d_in, d_out, *, act_bytes=2, weight_bytes_per_param=2) -> Kernels:
    """One GEMM: `rows` tokens through [d_in, d_out] weights (read once), rows padded to the
    skinny GEMM's tile."""
    flops = 2.0 * rows * d_in * d_out
    padded = np.ceil(np.asarray(rows, dtype=np.float64) / g.row_granule - 1e-9) * g.row_granule
    executed = 2.0 * np.maximum(padded, rows) * d_in * d_out
    w = d_in * d_out * weight_bytes_per_param
    hbm = w + rows * (d_in + d_out) * act_bytes
    t, lim = op_time(c, executed, 0.0, 0.0, hbm, g.compute_efficiency, g.memory_efficiency, g.launch_s)
    return Kernels(t, flops, executed, hbm, w, 0.0, lim)


def rows_above(j, n, p):
    """P(X > j) for an expert's rows X ~ Binomial(n, p), j = 0, 1, ... (n may be fractional: the
    regularized incomplete beta I_p(j + 1, n - j), which is the binomial tail at whole n)."""
    from scipy.special import betainc
    j, n, p = np.broadcast_arrays(*(np.asarray(x, dtype=np.float64) for x in (j, n, p)))
    inside = j < n
    return np.where(inside, betainc(j + 1.0, np.where(inside, n - j, 1.0), p), 0.0)


def experts_hit(n, p):
    """The share of experts that receive at least one of n tokens, each picking it with
    probability p: 1 - (1 - p)^n."""
    return rows_above(0.0, n, p)


def expected_tiles(n, p, m):
    """E[ceil(X / m)] for X ~ Binomial(n, p): the tiles of m rows a GEMM over one expert's rows
    runs (none when it gets no token). It is the sum over j >= 0 of P(X > j m). Bernstein's
    inequality puts X within t of its mean but for exp(-TAIL), t = TAIL/3 + sqrt(TAIL^2/9 +
    2 TAIL var): the terms below mean - t are 1, those above mean + t are 0, and those between
    are evaluated. Where the spread sd is 0.7 m or more, X mod m is uniform to within
    exp(-2 pi^2 sd^2 / m^2) (under 1e-4 of a tile off) and the sum is mean / m + (m - 1) / (2 m).
    Each distinct (n, p, m) is evaluated once."""
    n, p, m = np.broadcast_arrays(*(np.asarray(x, dtype=np.float64) for x in (n, p, m)))
    if n.size > 1:
        uniq, back = np.unique(np.stack([n.ravel(), p.ravel(), m.ravel()]), axis=1, return_inverse=True)
        if uniq.shape[1] < n.size:
            return expected_tiles(*uniq)[np.ravel(back)].reshape(n.shape)
    mu = n * p
    var = mu * (1.0 - p)
    t = TAIL / 3 + np.sqrt(TAIL ** 2 / 9 + 2 * TAIL * var)
    summed = np.sqrt(var) < 0.7 * m
    lo = np.where(summed, np.maximum(np.floor((mu - t) / m), 0.0), 0.0)  # terms below: 1
    hi = np.where(summed, np.minimum(mu + t, n), 0.0)  # rows above which the terms are 0
    width = int(np.max(np.ceil(hi / m) - lo, initial=0.0))
    jm = (lo[..., None] + np.arange(width)) * m[..., None]
    live = jm < hi[..., None]
    terms = np.zeros(jm.shape)
    terms[live] = rows_above(jm[live], np.broadcast_to(n[..., None], jm.shape)[live],
                             np.broadcast_to(p[..., None], jm.shape)[live])
    return np.where(summed, lo + terms.sum(axis=-1), mu / m + (m - 1.0) / (2.0 * m))


@dataclass(frozen=True)
class Routing:
    """What a grouped GEMM needs of the routing: the grouped kernel's tile rows, the mean tiles
    per expert, and the share of experts that get a token."""

    tile_rows: Any
    tiles: Any
    hit: Any


def expert_routing(n, p) -> Routing:
    """The routing of n tokens, each picking a given expert with probability p."""
    mean_rows = np.asarray(n, dtype=np.float64) * p
    m = np.where(mean_rows <= GROUPED_SMALL, *GROUPED_TILE_ROWS)
    return Routing(m, expected_tiles(n, p, m), experts_hit(n, p))


def grouped_gemm(c: Ceilings, g: GemmCosts, n, p, experts, d_in, d_out, *, act_bytes=2,
                 weight_bytes_per_param=2, routing: Routing | None = None) -> Kernels:
    """One grouped GEMM over `experts` local experts, each of the n routed tokens picking each
    with probability p: every expert's rows padded to the grouped kernel's tile height, the
    weights of each expert that got a token read once, with the grouped GEMM's own knobs.
    `routing`: expert_routing(n, p), when the caller has it."""
    gg = g.grouped_costs
    r = expert_routing(n, p) if routing is None else routing
    rows = experts * np.asarray(n, dtype=np.float64) * p  # (token, expert) pairs
    flops = 2.0 * rows * d_in * d_out
    executed = 2.0 * experts * r.tile_rows * r.tiles * d_in * d_out
    w = experts * r.hit * d_in * d_out * weight_bytes_per_param
    hbm = w + rows * (d_in + d_out) * act_bytes
    t, lim = op_time(c, executed, 0.0, 0.0, hbm, gg.compute_efficiency, gg.memory_efficiency, gg.launch_s)
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
    n_experts = np.maximum(f.n_experts, 1)
    routed_group = t_gpu * ep  # tokens routed within the expert-parallel group
    p = np.minimum(f.imbalance * f.top_k / n_experts, 1.0)  # a token picks a given busiest-GPU expert
    I = f.expert_intermediate_size
    router = gemm(c, g, t_gpu, d_model, f.n_experts, weight_bytes_per_param=wb, act_bytes=ab) + \
        elementwise(c, g, 4.0 * t_gpu * f.n_experts, t_gpu * f.n_experts * 4.0, exps=t_gpu * f.n_experts)
    sent = t_gpu * f.top_k * d_model * ab * (ep - 1) / ep  # each direction
    dispatch = comm(sent, link, g.launch_s)
    experts = grouped_ffn(c, g, routed_group, p, n_experts / ep, d_model, I, m, wb, ab)
    pairs = routed_group * p * n_experts / ep  # (token, expert) rows on the busiest GPU
    combine = comm(sent, link, g.launch_s) + elementwise(c, g, 2.0 * pairs * d_model, (pairs + t_gpu) * d_model * ab)
    shared = Kernels()
    if np.any(f.shared_width > 0):
        s = f.shared_width
        shared = gemm(c, g, t_gpu, d_model, (m - 1) * s, weight_bytes_per_param=wb, act_bytes=ab) + \
            elementwise(c, g, ACT_VECTOR_OPS * t_gpu * s, t_gpu * s * m * ab, exps=t_gpu * s) + \
            gemm(c, g, t_gpu, s, d_model, weight_bytes_per_param=wb, act_bytes=ab)
    # FLOPs are the algorithm's (the mean GPU's); the busiest GPU's rows set the time
    experts = dataclasses.replace(experts, flops=2.0 * t_gpu * f.top_k * m * d_model * I)
    compute = _train(router + experts + shared, train)
    return compute + (dispatch + combine).times(2 if train else 1)


def grouped_ffn(c: Ceilings, g: GemmCosts, n, p, experts, d_model, width, matrices: int, wb, ab) -> Kernels:
    """The experts' work on one GPU: n routed tokens, each picking each of `experts` local experts
    with probability p, through a grouped gate+up GEMM, the activation, and a grouped down GEMM
    (what `gpu/ffn.py` times)."""
    pairs = experts * n * p
    kw = dict(weight_bytes_per_param=wb, act_bytes=ab, routing=expert_routing(n, p))
    up = grouped_gemm(c, g, n, p, experts, d_model, (matrices - 1) * width, **kw)
    act = elementwise(c, g, ACT_VECTOR_OPS * pairs * width, pairs * width * matrices * ab, exps=pairs * width)
    down = grouped_gemm(c, g, n, p, experts, width, d_model, **kw)
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
