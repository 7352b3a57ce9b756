"""predict(): one workload on one accelerator -> a Prediction (time, traffic, bound, mapping).

The attention kernel goes through the tiled dataflow model (mapping search included); the
other ops of the scope (projections, communication) are one kernel each under the roofline.
Unfused execution runs the core's QK^T, softmax and PV as separate kernels with the scores
and probabilities in HBM. Every field broadcasts over numpy-array inputs.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from attn_dse.arch_models import dataflow
from attn_dse.arch_models.hardware import Hardware
from attn_dse.arch_models.loader import load_hardware
from attn_dse.arch_models.roofline import COMPUTE_LIMITERS, Ceilings, bound_time, ceilings, op_time
from attn_dse.workloads.ops import Op, active_ops, total_cost
from attn_dse.workloads.registry import Workload
from attn_dse.workloads.shape import make_shape

DATAFLOW_FAMILIES = ("prefill", "decode", "mla_decode", "block_sparse")
GROUP_NAMES = {"core": "attention", "proj": "projections", "kv_proj": "projections", "comm": "communication"}


@dataclass(frozen=True)
class Prediction:
    hardware: str
    variant: str
    phase: str
    scope: str
    dtype: str
    batch: Any
    seq: Any
    context: Any
    latency_s: Any
    flops: Any  # matmul FLOPs of the algorithm (exact; masked waste excluded)
    executed_flops: Any  # what the kernels compute, tile waste and padded rows included
    vector_flops: Any
    exps: Any
    hbm_bytes: Any  # modelled HBM traffic, re-reads and split-KV partials included
    min_hbm_bytes: Any  # every tensor once (the lower bound)
    kv_cache_bytes: Any
    weight_bytes: Any
    comm_bytes: Any
    arithmetic_intensity: Any  # flops / min_hbm_bytes
    bound: Any  # "compute" or "memory"
    limiter: Any  # matmul | exp | vector | hbm | l2 | smem | core_bw | interconnect
    ceilings: str  # "achievable" (measured) or "datasheet"
    mapping: dict = field(default_factory=dict)
    breakdown: dict = field(default_factory=dict)  # seconds per part

    @property
    def tokens_per_s(self):
        return self.batch * self.seq / self.latency_s

    def to_dict(self) -> dict:
        keys = ("hardware", "variant", "phase", "scope", "dtype", "batch", "seq", "context", "flops",
                "executed_flops", "vector_flops", "exps", "hbm_bytes", "min_hbm_bytes", "kv_cache_bytes",
                "weight_bytes", "comm_bytes", "arithmetic_intensity", "latency_s", "bound", "limiter", "ceilings")
        out = {k: getattr(self, k) for k in keys}
        out["tokens_per_s"] = self.tokens_per_s
        out["mapping"], out["breakdown_s"] = dict(self.mapping), dict(self.breakdown)
        return out


def predict(hw: Hardware | str, workload: Workload, phase: str = "decode", batch=1, seq=None,
            context=None, dtype: str = "bf16", scope: str = "core", causal: bool = True,
            fused: bool = True, achievable: bool = True, mapping: dict | None = None,
            dataflow_model: bool = True) -> Prediction:
    """Predict one workload point (or arrays of them). `mapping` pins kernel choices, e.g.
    {"n_split": 1} for decode without split-KV; `achievable=False` uses datasheet peaks;
    `dataflow_model=False` times the attention kernel by the plain roofline (no tiling)."""
    hw = load_hardware(hw)
    s = make_shape(phase, batch, seq, context, causal, dtype)
    ops = active_ops(workload.ops(s, scope), fused)
    cost = total_cost(ops, fused, workload.kv_cache_bytes(s, scope))
    c = ceilings(hw, dtype, achievable)
    parts: dict[str, tuple] = {}  # name -> (time, limiter, hbm bytes, executed flops)
    core_ops = [op for op in ops if op.group == "core"]
    if core_ops:
        parts["attention"] = _attention(hw, c, workload, s, scope, core_ops, fused, mapping) if dataflow_model \
            else _roofline_ops(hw, c, core_ops, fused, "prefill" if phase != "decode" else "decode",
                               one_kernel=fused) + ({},)
    for group in sorted({op.group for op in ops} - {"core"}):
        name = GROUP_NAMES.get(group, group)
        part = _roofline_ops(hw, c, [op for op in ops if op.group == group], fused, "gemm")
        parts[name] = _add(parts[name], part) if name in parts else part
    names = list(parts)
    total = sum(parts[n][0] for n in names)
    _, main = bound_time({n: parts[n][0] for n in names})
    limiter = _select(main, {n: parts[n][1] for n in names})
    mapping = parts.get("attention", (None,) * 5)[4] or {}
    return Prediction(
        hardware=hw.name, variant=workload.name, phase=phase, scope=scope, dtype=dtype,
        batch=s.batch, seq=s.seq, context=s.context, latency_s=total, flops=cost.flops,
        executed_flops=sum(parts[n][3] for n in names), vector_flops=cost.vector_flops, exps=cost.exps,
        hbm_bytes=sum(parts[n][2] for n in names), min_hbm_bytes=cost.hbm_bytes,
        kv_cache_bytes=cost.kv_cache_bytes, weight_bytes=cost.weight_bytes, comm_bytes=cost.comm_bytes,
        arithmetic_intensity=cost.flops / cost.hbm_bytes,
        bound=np.where(np.isin(limiter, COMPUTE_LIMITERS), "compute", "memory"),
        limiter=limiter, ceilings=c.source, mapping=mapping,
        breakdown={n: parts[n][0] for n in names})


def _attention(hw, c: Ceilings, wl: Workload, s, scope, core_ops: list[Op], fused: bool, fixed=None):
    """The attention kernel(s): tiled dataflow when fused, else one roofline kernel per op.
    Sparse-attention side kernels (gates, pooling, compression) are rooflined beside it."""
    cores = wl.core(s, scope)
    kernel = [op for op in core_ops if op.kernel == "attention"]
    side = [op for op in core_ops if op.kernel != "attention"]
    if not fused or not kernel or any(core.family not in DATAFLOW_FAMILIES for core, _ in cores):
        family = "unfused" if not fused else "gemm"
        return _roofline_ops(hw, c, core_ops, fused, family, one_kernel=fused) + ({},)
    # training: the dataflow times the forward; the backward scales it by its FLOP share
    forward = [op for op in kernel if not op.name.endswith(".bwd") and not op.fused_only]
    ratio = sum((op.flops for op in kernel), 0.0) / sum((op.flops for op in forward), 0.0) \
        if s.phase == "train" else 1.0
    estimates = [(count * ratio, dataflow.estimate(core, hw, c, fixed=fixed)) for core, count in cores]
    time = sum(n * e.time_s for n, e in estimates)
    hbm = sum(n * e.hbm_bytes for n, e in estimates)
    flops = sum(n * e.flops for n, e in estimates)
    _, main = bound_time({str(i): n * e.time_s for i, (n, e) in enumerate(estimates)})
    limiter = _select(main, {str(i): e.limiter for i, (_, e) in enumerate(estimates)})
    mapping = estimates[0][1].mapping  # of the first layer group
    if side:
        t, lim, b, f = _roofline_ops(hw, c, side, fused, "gemm")
        _, which = bound_time({"kernel": time, "side": t})
        limiter = _select(which, {"kernel": limiter, "side": lim})
        time, hbm, flops = time + t, hbm + b, flops + f
    return time, limiter, hbm, flops, mapping


def _roofline_ops(hw, c: Ceilings, ops: list[Op], fused: bool, family: str, one_kernel: bool = False):
    """Each op a kernel (or all of them one kernel) under the roofline."""
    eff_c = hw.model.compute_efficiency[family]
    eff_m = hw.model.memory_efficiency[family]
    if one_kernel:
        cost = total_cost(ops, fused)
        launches = functools.reduce(np.maximum, (op.repeat for op in ops), 1.0)
        t, lim = op_time(c, cost.flops, cost.vector_flops, cost.exps, cost.hbm_bytes, eff_c, eff_m,
                         hw.launch_overhead_s * launches)
        return t, lim, cost.hbm_bytes, cost.flops
    time = hbm = flops = 0.0
    times, limiters = {}, {}
    for i, op in enumerate(ops):
        if op.kind == "comm":
            t = op.comm_bytes / hw.interconnect.link_bytes_per_s + hw.launch_overhead_s * op.repeat
            lim = "interconnect"
            nbytes = 0.0
        else:
            nbytes = sum((t.bytes for t in op.reads + op.writes if not (fused and t.kind == "scratch")), 0.0)
            t, lim = op_time(c, op.flops, op.vector_flops, op.exps, nbytes, eff_c, eff_m,
                             hw.launch_overhead_s * op.repeat)
        time, hbm, flops = time + t, hbm + nbytes, flops + op.flops
        times[str(i)], limiters[str(i)] = t, lim
    _, main = bound_time(times)
    return time, _select(main, limiters), hbm, flops


def _add(a, b):
    t = a[0] + b[0]
    _, main = bound_time({"a": a[0], "b": b[0]})
    return t, _select(main, {"a": a[1], "b": b[1]}), a[2] + b[2], a[3] + b[3]


def _select(which, options: dict):
    """Elementwise: options[which[i]][i] (which is an array of keys, or one key)."""
    which = np.asarray(which, dtype=object)
    out = np.empty(which.shape, dtype=object)
    for key, value in options.items():
        out = np.where(which == key, np.asarray(value, dtype=object), out)
    return out if out.ndim else out.item()
