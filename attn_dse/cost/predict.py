"""predict(): one workload on one accelerator -> a Prediction (time, traffic, bound, mapping).

The attention kernel goes to the kernel family that claims it (`cost/families/`: tiled dataflow
model with its mapping search); the other ops of the scope (projections, communication) are one
kernel each under the roofline. Unfused execution runs the core's QK^T, softmax and PV as
separate kernels with the scores and probabilities in HBM. The knobs come from
`cost/knobs.py` for (hardware, implementation). Every field broadcasts over numpy arrays.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from attn_dse.calibration.knobs import Knobs
from attn_dse.cost.family import family_for, get_family
from attn_dse.cost.knobs import DEFAULT_IMPLEMENTATION, implementations_for, kernel_knobs
from attn_dse.cost.roofline import COMPUTE_LIMITERS, Ceilings, ceilings, largest_limiter, op_time
from attn_dse.cost.step import with_step
from attn_dse.hardware.loader import load_hardware
from attn_dse.hardware.spec import Hardware
from attn_dse.workloads.ops import Op, active_ops, total_cost
from attn_dse.workloads.registry import Workload
from attn_dse.workloads.shape import make_shape

GROUP_NAMES = {"core": "attention", "proj": "projections", "kv_proj": "projections", "comm": "communication"}


@dataclass(frozen=True)
class Part:
    """The time of one part of a scope (attention, projections, communication)."""

    time_s: Any
    limiter: Any
    hbm_bytes: Any
    flops: Any  # executed
    mapping: dict = field(default_factory=dict)

    def __add__(self, other: "Part") -> "Part":
        limiter = largest_limiter({"a": self.time_s, "b": other.time_s}, {"a": self.limiter, "b": other.limiter})
        return Part(self.time_s + other.time_s, limiter,
                    self.hbm_bytes + other.hbm_bytes, self.flops + other.flops, self.mapping or other.mapping)


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
    kernel: str = DEFAULT_IMPLEMENTATION  # the implementation whose knobs timed it
    kv_dtype: str = ""  # KV-cache storage format ("" = dtype)
    mapping: dict = field(default_factory=dict)
    breakdown: dict = field(default_factory=dict)  # seconds per part

    @property
    def tokens_per_s(self):
        return self.batch * self.seq / self.latency_s

    def to_dict(self) -> dict:
        keys = ("hardware", "variant", "phase", "scope", "dtype", "batch", "seq", "context", "flops",
                "executed_flops", "vector_flops", "exps", "hbm_bytes", "min_hbm_bytes", "kv_cache_bytes",
                "weight_bytes", "comm_bytes", "arithmetic_intensity", "latency_s", "bound", "limiter", "ceilings",
                "kernel")
        out = {k: getattr(self, k) for k in keys}
        out["kv_dtype"] = self.kv_dtype or self.dtype
        out["tokens_per_s"] = self.tokens_per_s
        out["mapping"], out["breakdown_s"] = dict(self.mapping), dict(self.breakdown)
        return out


def predict(hw: Hardware | str, workload: Workload, phase: str = "decode", batch=1, seq=None,
            context=None, dtype: str = "bf16", scope: str = "core", causal: bool = True,
            fused: bool = True, achievable: bool = True, mapping: dict | None = None,
            dataflow_model: bool = True, kernel: str | Knobs = DEFAULT_IMPLEMENTATION, kv_dtype=None) -> Prediction:
    """Predict one workload point (or arrays of them). `mapping` pins kernel choices, e.g.
    {"n_split": 1} for decode without split-KV; `achievable=False` uses datasheet peaks;
    `dataflow_model=False` times the attention kernel by the plain roofline (no tiling);
    `kernel` names the implementation whose calibration knobs are used (or gives the knobs);
    `kv_dtype` stores the KV cache in another format than `dtype` (fp8, int4, a bit width)."""
    hw = load_hardware(hw)
    if isinstance(kernel, str) and kernel == "auto":
        return _fastest(hw, workload, dict(phase=phase, batch=batch, seq=seq, context=context, dtype=dtype,
                                           scope=scope, causal=causal, fused=fused, achievable=achievable,
                                           mapping=mapping, dataflow_model=dataflow_model, kv_dtype=kv_dtype))
    knobs = kernel if isinstance(kernel, Knobs) else kernel_knobs(hw, kernel)
    fused = fused and knobs.fused  # an implementation that runs attention as separate kernels
    s = make_shape(phase, batch, seq, context, causal, dtype, kv_dtype)
    ops = active_ops(workload.ops(s, scope), fused)
    cost = total_cost(ops, fused, workload.kv_cache_bytes(s, scope))
    c = ceilings(hw, dtype, achievable)
    parts: dict[str, Part] = {}
    core_ops = [op for op in ops if op.group == "core"]
    if core_ops:
        parts["attention"] = _attention(hw, c, knobs, workload, s, scope, core_ops, fused, mapping, achievable) \
            if dataflow_model else _roofline_ops(c, knobs, core_ops, fused, "decode" if phase == "decode" else "prefill",
                                                 one_kernel=fused)
    for group in sorted({op.group for op in ops} - {"core"}):
        name = GROUP_NAMES.get(group, group)
        part = _roofline_ops(c, knobs, [op for op in ops if op.group == group], fused, "gemm", hw)
        parts[name] = parts[name] + part if name in parts else part
    names = list(parts)
    total = sum(parts[n].time_s for n in names)
    limiter = largest_limiter({n: parts[n].time_s for n in names}, {n: parts[n].limiter for n in names})
    out = Prediction(
        hardware=hw.name, variant=workload.name, phase=phase, scope=scope, dtype=dtype,
        batch=s.batch, seq=s.seq, context=s.context, latency_s=total, flops=cost.flops,
        executed_flops=sum(parts[n].flops for n in names), vector_flops=cost.vector_flops, exps=cost.exps,
        hbm_bytes=sum(parts[n].hbm_bytes for n in names), min_hbm_bytes=cost.hbm_bytes,
        kv_cache_bytes=cost.kv_cache_bytes, weight_bytes=cost.weight_bytes, comm_bytes=cost.comm_bytes,
        arithmetic_intensity=cost.flops / cost.hbm_bytes,
        bound=np.where(limiter in COMPUTE_LIMITERS if isinstance(limiter, str) else np.isin(limiter, COMPUTE_LIMITERS),
                       "compute", "memory"),
        limiter=limiter, ceilings=c.source, kernel=knobs.implementation, kv_dtype=s.kv_dtype,
        mapping=parts["attention"].mapping if "attention" in parts else {},
        breakdown={n: parts[n].time_s for n in names})
    if scope == "model" and getattr(workload.model, "ffn", None) is not None:
        # every layer's MLP, the norms, embeddings and LM head
        out = with_step(predict, out, hw, c, knobs, workload, s, fused=fused, achievable=achievable, mapping=mapping,
                        dataflow_model=dataflow_model, kernel=knobs)
    return out


def _fastest(hw: Hardware, workload: Workload, kw: dict) -> Prediction:
    """`kernel="auto"`: per point, the fastest implementation with knobs on this hardware for the
    family that claims the attention kernel (named in `kernel`)."""
    s = make_shape(kw["phase"], kw["batch"], kw["seq"], kw["context"], kw["causal"], kw["dtype"], kw["kv_dtype"])
    specs = workload.kernel_specs(s, kw["scope"])
    claimed = {f.name for f in (family_for(spec) for spec, _ in specs) if f is not None}
    names = [n for n, fams in implementations_for(hw).items() if claimed <= set(fams)] or [DEFAULT_IMPLEMENTATION]
    preds = [predict(hw, workload, kernel=n, **kw) for n in names]
    best = np.argmin(np.stack([np.broadcast_to(p.latency_s, np.shape(preds[0].latency_s)) for p in preds]), axis=0)

    def pick(values):
        if all(isinstance(v, dict) for v in values):
            keys = set.intersection(*(set(v) for v in values))
            return {k: pick([v[k] for v in values]) for k in keys}
        arrays = [np.asarray(v) for v in values]
        if all(a.shape == arrays[0].shape for a in arrays) and (arrays[0].ndim or best.ndim == 0):
            out = np.choose(best, [np.broadcast_to(a, np.shape(best)) for a in arrays]) if best.ndim \
                else arrays[int(best)]
            return out if np.ndim(out) else out.item()
        return values[int(np.ravel(best)[0])]

    fields = {f.name: pick([getattr(p, f.name) for p in preds]) for f in dataclasses.fields(Prediction)}
    fields["kernel"] = np.asarray(names, dtype=object)[best] if np.ndim(best) else names[int(best)]
    return Prediction(**fields)


def _attention(hw, c: Ceilings, knobs: Knobs, wl: Workload, s, scope, core_ops: list[Op], fused: bool,
               fixed=None, achievable: bool = True) -> Part:
    """The attention kernel(s): the claiming family's tiled model when fused, else one roofline
    kernel per op. Sparse-attention side kernels (gates, pooling, compression) are rooflined beside it."""
    specs = wl.kernel_specs(s, scope)
    kernel = [op for op in core_ops if op.kernel == "attention"]
    side = [op for op in core_ops if op.kernel != "attention"]
    fams = [family_for(spec) for spec, _ in specs]
    if not knobs.fused and kernel and s.phase != "train":
        return _eager(c, knobs, specs) + _roofline_ops(c, knobs, side, False, "gemm", hw) if side \
            else _eager(c, knobs, specs)
    if not fused or not kernel or any(f is None for f in fams):
        return _roofline_ops(c, knobs, core_ops, fused, "unfused" if not fused else "gemm", hw, one_kernel=fused)
    # training: each family's backward kernel beside its forward; a family without a backward
    # model scales its forward by the backward's FLOP share
    forward = [op for op in kernel if not op.name.endswith(".bwd") and not op.fused_only]
    ratio = sum((op.flops for op in kernel), 0.0) / sum((op.flops for op in forward), 0.0) \
        if s.phase == "train" else 1.0
    estimates = []
    for fam, (spec, count) in zip(fams, specs):
        # each kernel's matmuls run at its own dtype (a decode kernel over an FP8 cache runs bf16 MMAs)
        at = _ceilings_at(hw, c, spec.compute_dtype, achievable)
        backward = fam.estimate_backward(spec, hw, at, knobs, fixed) if s.phase == "train" else None
        estimates.append((count if backward is not None else count * ratio, fam.estimate(spec, hw, at, knobs, fixed)))
        if backward is not None:
            estimates.append((count, backward))
    time = sum(n * e.time_s for n, e in estimates)
    hbm = sum(n * e.hbm_bytes for n, e in estimates)
    flops = sum(n * e.flops for n, e in estimates)
    limiter = largest_limiter({str(i): n * e.time_s for i, (n, e) in enumerate(estimates)},
                              {str(i): e.limiter for i, (_, e) in enumerate(estimates)})
    part = Part(time, limiter, hbm, flops, estimates[0][1].mapping)  # the first layer group's mapping
    return part + _roofline_ops(c, knobs, side, fused, "gemm", hw) if side else part


def _ceilings_at(hw, c: Ceilings, dtype: str, achievable: bool) -> Ceilings:
    """The ceilings at another matmul dtype than the workload's ("" = the same)."""
    return ceilings(hw, dtype, achievable) if dtype and hw is not None else c


def _eager(c: Ceilings, knobs: Knobs, specs) -> Part:
    """Attention as separate kernels through HBM (`cost/families/roofline.eager_passes`), each
    under the roofline with the knobs of its family (unfused, or strided) and its launches."""
    from attn_dse.cost.families.roofline import eager_passes
    total = None
    for spec, count in specs:
        for k in eager_passes(spec):
            fam = knobs.family(k["family"])
            t, lim = op_time(c, k["flops"], k["vector_flops"], k["exps"], k["hbm_bytes"], fam.compute_efficiency,
                             fam.memory_efficiency, knobs.launch_overhead_s * k["launches"])
            part = Part(count * t, lim, count * k["hbm_bytes"], count * k["flops"])
            total = part if total is None else total + part
    return total


def _roofline_ops(c: Ceilings, knobs: Knobs, ops: list[Op], fused: bool, family: str, hw: Hardware | None = None,
                  one_kernel: bool = False) -> Part:
    """Each op a kernel (or all of them one kernel) under the roofline; communication over the
    interconnect of `hw`."""
    fam = knobs.family(get_family(family).name)
    eff_c, eff_m = fam.compute_efficiency, fam.memory_efficiency
    if one_kernel:
        cost = total_cost(ops, fused)
        launches = functools.reduce(np.maximum, (op.repeat for op in ops), 1.0)
        t, lim = op_time(c, cost.flops, cost.vector_flops, cost.exps, cost.hbm_bytes, eff_c, eff_m,
                         knobs.launch_overhead_s * launches)
        return Part(t, lim, cost.hbm_bytes, cost.flops)
    time = hbm = flops = 0.0
    times, limiters = {}, {}
    for i, op in enumerate(ops):
        if op.kind == "comm":
            t = op.comm_bytes / hw.interconnect.link_bytes_per_s + knobs.launch_overhead_s * op.repeat
            lim = "interconnect"
            nbytes = 0.0
        else:
            nbytes = sum((t.bytes for t in op.reads + op.writes if not (fused and t.kind == "scratch")), 0.0)
            co = _ceilings_at(hw, c, op.dtype, c.source == "achievable")  # an op may run its own dtype
            t, lim = op_time(co, op.flops, op.vector_flops, op.exps, nbytes, eff_c, eff_m,
                             knobs.launch_overhead_s * op.repeat)
        time, hbm, flops = time + t, hbm + nbytes, flops + op.flops
        times[str(i)], limiters[str(i)] = t, lim
    return Part(time, largest_limiter(times, limiters), hbm, flops)
