"""Attention across devices: tensor parallelism by heads, TPLA, context parallelism (ring,
Ulysses) for prefill and sequence-sharded KV for decode, each with its collectives.

A scheme is a transformation of the workload (the variant's `tp` parameter shards heads, or
TPLA's latent; context parallelism shards the sequence) plus the communication it needs, timed
by `collectives.py` over the group's topology (tensor-parallel ranks innermost in a node).
Ring attention overlaps each step's K/V send with the step's attention: a step takes
max(attention slowed by the cores the transfer occupies, transfer), then an output merge that
cannot overlap; the last step sends nothing. Everything broadcasts over batch/seq/context arrays.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from attn_dse.cost.collectives import Topology, collective, fabric
from attn_dse.cost.predict import predict
from attn_dse.errors import AttnDseError
from attn_dse.hardware.loader import load_hardware
from attn_dse.workloads.registry import Workload, attention
from attn_dse.workloads.shape import make_shape

CP_SCHEMES = ("ring", "ulysses")
COMM_CORES = 4  # [U] SMs a concurrent send + receive occupies (NCCL: about 2 channels, one CTA each, per peer and direction)


@dataclass(frozen=True)
class Parallel:
    tp: int = 1
    cp: int = 1
    nodes: int = 1
    cp_scheme: str = "ring"

    @property
    def devices(self) -> int:
        return self.tp * self.cp

    def check(self, hw) -> None:
        for name, v in (("--tp", self.tp), ("--cp", self.cp), ("--nodes", self.nodes)):
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise AttnDseError(f"{name} {v!r} is not a positive whole number", fix=f"write e.g. {name} 2")
        if self.cp_scheme not in CP_SCHEMES:
            raise AttnDseError(f"--cp-scheme {self.cp_scheme!r} is unknown", fix="ring or ulysses")
        if self.devices % self.nodes:
            raise AttnDseError(f"--nodes {self.nodes}: tp x cp = {self.devices} devices do not split evenly over the nodes",
                               fix="make tp x cp a multiple of --nodes")
        per_node = self.devices // self.nodes
        if per_node > hw.interconnect.devices_per_node:
            raise AttnDseError(f"{self.devices} devices on {self.nodes} node(s) is {per_node} per node; "
                               f"a {hw.name} node has {hw.interconnect.devices_per_node}",
                               fix=f"use --nodes {-(-self.devices // hw.interconnect.devices_per_node)} or fewer devices")
        if self.nodes > 1 and hw.interconnect.scale_out is None:
            raise AttnDseError(f"--nodes {self.nodes}: {hw.name} has no link between nodes",
                               fix="add interconnect.scale_out to the preset, or use --nodes 1")
        g = per_node
        if self.tp > g and self.tp % g:
            raise AttnDseError(f"--tp {self.tp} spans nodes of {g} devices unevenly", fix=f"use a multiple of {g}")

    def tp_group(self) -> Topology:
        g = self.devices // self.nodes
        return Topology(self.tp, 1) if self.tp <= g else Topology(g, self.tp // g)

    def cp_group(self) -> Topology:
        g = self.devices // self.nodes
        if self.tp >= g:
            return Topology(1, self.cp)
        inside = min(self.cp, g // self.tp)
        return Topology(inside, self.cp // inside)


@dataclass(frozen=True)
class ParallelPrediction:
    hardware: str
    variant: str
    phase: str
    scope: str
    dtype: str
    batch: Any
    seq: Any
    context: Any
    tp: int
    cp: int
    nodes: int
    cp_scheme: str
    latency_s: Any  # one step of the whole group (all devices work at once)
    compute_s: Any  # one device's kernels on the critical path
    comm_s: Any  # every collective's time
    exposed_comm_s: Any  # the part of it not hidden behind compute
    flops: Any  # matmul FLOPs summed over every device
    flops_per_device: Any
    kv_cache_bytes: Any  # per device
    limiter: Any
    kernel: str
    breakdown: dict = field(default_factory=dict)

    @property
    def devices(self) -> int:
        return self.tp * self.cp

    @property
    def tokens_per_s(self):
        return self.batch * self.seq / self.latency_s

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "breakdown"}
        out.update(devices=self.devices, tokens_per_s=self.tokens_per_s, breakdown_s=dict(self.breakdown))
        return out


def with_params(wl: Workload, **changes) -> Workload:
    """The same workload with some variant parameters changed (every layer group too)."""
    def rebuild(w: Workload) -> Workload:
        schema = w.variant.schema_for(w.params)
        if any(k not in schema for k in changes):
            key = next(k for k in changes if k not in schema)
            raise AttnDseError(f"{w.variant.name} has no '{key}' parameter: it has no tensor-parallel form here",
                               fix="use a variant with a tp parameter (gqa, mha, mqa, mla, tpla, sqa, ...)")
        params = {k: w.params[k] for k in schema if k in w.params}
        return attention(w.variant.name, **{**params, **changes})
    base = rebuild(wl)
    groups = tuple((n, rebuild(g)) for n, g in wl.layer_groups)
    return dataclasses.replace(wl, params=base.params, layer_groups=groups)


def _layers(wl: Workload, scope: str):
    """Layers the scope spans (an array where n_layers is a swept axis)."""
    if scope != "model":
        return 1.0
    grouped = sum(n for n, _ in wl.layer_groups)
    return float(grouped) if grouped else np.asarray(wl.params.get("n_layers", 1), dtype=np.float64)


def _tp_comm(wl: Workload, s, scope: str, topo: Topology, fab) -> Any:
    """The workload's own communication ops (the output all-reduce of head sharding)."""
    total = 0.0
    if topo.devices == 1:
        return total
    for op in wl.ops(s, scope):
        if op.kind == "comm":
            size = op.reads[0].bytes if op.reads else op.comm_bytes
            total = total + op.repeat * collective("all_reduce", size, topo, fab).time_s
    return total


def _no_comm(p) -> Any:
    return p.latency_s - p.breakdown.get("communication", 0.0)


def predict_parallel(hw, wl: Workload, phase: str = "decode", batch=1, seq=None, context=None,
                     dtype: str = "bf16", scope: str = "core", causal: bool = True, fused: bool = True,
                     achievable: bool = True, kernel: str = "triton", par: Parallel = Parallel(),
                     mapping: dict | None = None) -> ParallelPrediction:
    """One step of `wl` spread over par.tp x par.cp devices on par.nodes nodes."""
    hw = load_hardware(hw)
    tp = par.tp if par.tp > 1 else int(np.max(wl.params.get("tp", 1)))
    par = dataclasses.replace(par, tp=tp)
    par.check(hw)
    fab = fabric(hw, achievable)
    dev = with_params(wl, tp=tp) if tp != wl.params.get("tp", 1) else wl
    kw = dict(dtype=dtype, causal=causal, fused=fused, achievable=achievable, kernel=kernel)
    layers = _layers(dev, scope)
    if par.cp > 1 and phase == "train":
        raise AttnDseError("--cp with --phase train is not modelled", fix="use --phase prefill or decode")
    s = make_shape(phase, batch, seq, context, causal, dtype)
    if par.cp == 1:
        p = predict(hw, dev, phase, batch, seq, context, scope=scope, mapping=mapping, **kw)
        comm = _tp_comm(dev, s, scope, par.tp_group(), fab)
        compute = _no_comm(p)
        parts = {"compute": compute, "tp_all_reduce": comm}
        return _result(hw, wl, phase, scope, dtype, s, par, compute + comm, compute, comm, comm,
                       p.flops * par.tp, p.flops, p.kv_cache_bytes, p.limiter, p.kernel, parts)
    if phase == "decode":
        return _cp_decode(hw, wl, dev, s, scope, par, fab, kw, layers, mapping)
    if par.cp_scheme == "ulysses":
        return _ulysses(hw, wl, dev, s, scope, par, fab, kw, layers)
    return _ring(hw, wl, dev, s, scope, par, fab, kw, layers)


def _result(hw, wl, phase, scope, dtype, s, par, latency, compute, comm, exposed, flops, flops_dev, kv,
            limiter, kernel, parts) -> ParallelPrediction:
    limiter = np.where(np.asarray(exposed) > 0.5 * np.asarray(latency), "interconnect", np.asarray(limiter, dtype=object))
    limiter = limiter.item() if limiter.ndim == 0 else limiter
    return ParallelPrediction(hw.name, wl.name, phase, scope, dtype, s.batch, s.seq, s.past if phase == "decode" else s.seq,
                              par.tp, par.cp, par.nodes, par.cp_scheme, latency, compute, comm, exposed,
                              flops, flops_dev, kv, limiter, kernel, parts)


def _cp_decode(hw, wl, dev, s, scope, par, fab, kw, layers, mapping):
    """KV sharded by sequence: each device attends context/cp tokens, then the partial outputs
    and their log-sum-exps (fp32) are all-gathered and merged by a small kernel."""
    local = s.past / par.cp
    if np.any(local != np.floor(local)):
        raise AttnDseError(f"--cp {par.cp}: the context does not split into whole shards", fix="use a context divisible by --cp")
    p = predict(hw, dev, "decode", s.batch, s.seq, local, scope=scope, mapping=mapping, **kw)
    local_s = make_shape("decode", s.batch, s.seq, local, s.causal, s.dtype)
    spec = dev.variant.kernel_spec(dev.params, local_s)
    partial = s.batch * s.seq * spec.h_q * (spec.d_v + 1) * 4
    gather = layers * collective("all_gather", partial * par.cp, par.cp_group(), fab).time_s
    merge = layers * (hw.launch_overhead_s + par.cp * partial / hw.hbm_bytes_per_s(kw["achievable"]))
    tp_comm = _tp_comm(dev, local_s, scope, par.tp_group(), fab)
    compute = _no_comm(p) + merge
    comm = gather + tp_comm
    parts = {"compute": _no_comm(p), "cp_merge": merge, "cp_all_gather": gather, "tp_all_reduce": tp_comm}
    return _result(hw, wl, "decode", scope, s.dtype, s, par, compute + comm, compute, comm, comm,
                   p.flops * par.devices, p.flops, p.kv_cache_bytes, p.limiter, p.kernel, parts)


def _core(hw, dev, batch, seq, causal, kw):
    return predict(hw, dev, "prefill", batch, seq, scope="core", **{**kw, "causal": causal})


def _rest(hw, dev, s_local, scope, kw, par, fab):
    """The scope's work besides attention on this device's tokens, with its TP all-reduces."""
    if scope == "core":
        return 0.0, 0.0, 0.0
    p = predict(hw, dev, "prefill", s_local.batch, s_local.seq, scope=scope, **kw)
    proj = p.breakdown.get("projections", 0.0)
    return proj, _tp_comm(dev, s_local, scope, par.tp_group(), fab), p.flops


def _ring(hw, wl, dev, s, scope, par, fab, kw, layers):
    """Ring attention with the zigzag split (each device holds chunks i and 2cp-1-i): step 0
    attends its own chunks (the pairs of a causal prefill of S/cp tokens), each later step a
    received block (2 x (S/2cp)^2 pairs: two non-causal blocks of S/2cp). Without a mask every
    step is one full (S/cp)^2 block."""
    cp, S, B = par.cp, s.seq, s.batch
    unit = 2 * cp if s.causal else cp
    if np.any(np.mod(S, unit)):
        raise AttnDseError(f"--cp {cp}: the prompt does not split into {unit} equal chunks",
                           fix=f"use a --seq divisible by {unit}")
    if s.causal:
        first = _core(hw, dev, B, S / cp, True, kw)
        later = _core(hw, dev, 2 * B, S / (2 * cp), False, kw)
    else:
        first = later = _core(hw, dev, B, S / cp, False, kw)
    local_s = make_shape("prefill", B, S / cp, None, s.causal, s.dtype)
    spec = dev.variant.kernel_spec(dev.params, local_s)
    kv_token = spec.h_kv * (spec.d_qk if spec.kv_shared else spec.d_qk + spec.d_v) * spec.bytes_per_element
    block = B * S / cp * kv_token
    hop = Topology(1, 2) if par.cp_group().nodes > 1 else Topology(2, 1)
    send = collective("send_recv", block, hop, fab).time_s
    slow = hw.cores / (hw.cores - COMM_CORES) if hw.kind == "gpu" else 1.0
    t0, t1 = _no_comm(first), _no_comm(later)
    out_bytes = B * S / cp * spec.h_q * (spec.d_v + 1) * 4  # fp32 partial output + lse
    merge = hw.launch_overhead_s + 3 * out_bytes / hw.hbm_bytes_per_s(kw["achievable"])
    steps = [t0] + [t1] * (cp - 1)
    attn = sum(max_ for max_ in steps)
    ring = sum(np.maximum(t * slow, send) for t in steps[:-1]) + steps[-1] + (cp - 1) * merge
    exposed = ring - attn - (cp - 1) * merge
    proj, tp_comm, rest_flops = _rest(hw, dev, local_s, scope, kw, par, fab)
    flops_dev = layers * (first.flops + (cp - 1) * later.flops)
    if scope != "core":
        flops_dev = flops_dev + rest_flops - layers * _core(hw, dev, B, S / cp, s.causal, kw).flops
    compute = layers * (attn + (cp - 1) * merge) + proj
    latency = layers * ring + proj + tp_comm
    parts = {"attention": layers * attn, "cp_merge": layers * (cp - 1) * merge, "cp_send_recv": layers * (cp - 1) * send,
             "cp_exposed": layers * exposed, "projections": proj, "tp_all_reduce": tp_comm}
    kv = dev.kv_cache_bytes(local_s, scope)
    return _result(hw, wl, "prefill", scope, s.dtype, s, par, latency, compute, layers * (cp - 1) * send + tp_comm,
                   layers * exposed + tp_comm, flops_dev * par.devices, flops_dev, kv, first.limiter, first.kernel, parts)


def _ulysses(hw, wl, dev, s, scope, par, fab, kw, layers):
    """Ulysses: all-to-all q, k, v from sequence-sharded to head-sharded, full-sequence attention
    over heads/cp, all-to-all the output back. Nothing overlaps."""
    cp, S, B = par.cp, s.seq, s.batch
    if np.any(np.mod(S, cp)):
        raise AttnDseError(f"--cp {cp}: the prompt does not split into {cp} equal chunks", fix=f"use a --seq divisible by {cp}")
    try:
        heads = with_params(wl, tp=par.tp * cp)
    except AttnDseError as exc:
        raise AttnDseError(f"--cp-scheme ulysses shards heads over tp x cp = {par.tp * cp}: {exc.problem}",
                           fix="use --cp-scheme ring, or a cp that divides the heads per device") from None
    attn = _core(hw, heads, B, S, s.causal, kw)
    local_s = make_shape("prefill", B, S / cp, None, s.causal, s.dtype)
    spec = dev.variant.kernel_spec(dev.params, local_s)
    b = spec.bytes_per_element
    qkv = B * S / cp * (spec.h_q * spec.d_qk + spec.h_kv * (spec.d_qk + (0 if spec.kv_shared else spec.d_v))) * b
    o = B * S / cp * spec.h_q * spec.d_v * b
    grp = par.cp_group()
    a2a = layers * (collective("all_to_all", qkv, grp, fab).time_s + collective("all_to_all", o, grp, fab).time_s)
    proj, tp_comm, rest_flops = _rest(hw, dev, local_s, scope, kw, par, fab)
    flops_dev = layers * attn.flops
    if scope != "core":
        flops_dev = flops_dev + rest_flops - layers * _core(hw, dev, B, S / cp, s.causal, kw).flops
    compute = layers * _no_comm(attn) + proj
    parts = {"attention": layers * _no_comm(attn), "cp_all_to_all": a2a, "projections": proj, "tp_all_reduce": tp_comm}
    kv = dev.kv_cache_bytes(local_s, scope)
    return _result(hw, wl, "prefill", scope, s.dtype, s, par, compute + a2a + tp_comm, compute, a2a + tp_comm,
                   a2a + tp_comm, flops_dev * par.devices, flops_dev, kv, attn.limiter, attn.kernel, parts)


def tpla_speedup(hw="h100", batch=1, context=32768, tp=2, scope="core", kernel="triton") -> dict:
    """DeepSeek-V3 decode: MLA under TP (heads split, full latent per device) against TPLA
    (all heads, latent split), both on tp devices with their all-reduces."""
    mla = predict_parallel(hw, attention("mla", scheme="absorbed"), "decode", batch, context=context,
                           scope=scope, kernel=kernel, par=Parallel(tp=tp))
    tpla = predict_parallel(hw, attention("tpla", tp=tp), "decode", batch, context=context, scope=scope,
                            kernel=kernel, par=Parallel(tp=tp))
    return {"mla_tp_s": mla.latency_s, "tpla_s": tpla.latency_s, "speedup": mla.latency_s / tpla.latency_s,
            "mla_limiter": mla.limiter, "tpla_limiter": tpla.limiter}


# The points gpu/multi.py measures (its TP_LAYER, DECODE, PREFILL, RING, TPLA shapes), so the
# committed predictions and a later measurement name the same rows.
_GQA = dict(n_heads=64, n_kv_heads=8, head_dim=128, d_model=8192)


def prediction_rows(hw="h200", devices: int = 8) -> list[dict]:
    """Predictions for a devices-GPU node: collectives over sizes 4 KB-1 GB, the TP layer in
    decode and prefill, ring CP prefill, TPLA and MLA-TP decode at tp = devices."""
    hw = load_hardware(hw)
    fab = fabric(hw)
    rows = []
    for op in ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv"):
        for n in [4096 * 4**i for i in range(10)] + [2**30]:
            topo = Topology(2, 1) if op == "send_recv" else Topology(devices, 1)
            c = collective(op, n, topo, fab)
            rows.append({"kind": "collective", "op": op, "bytes": n, "devices": devices, "predicted_s": c.time_s,
                         "algorithm": c.algorithm, "protocol": c.protocol})
    gqa = attention("gqa", **_GQA)
    for phase, kw in (("decode", dict(batch=16, context=8192)), ("prefill", dict(batch=1, seq=8192))):
        r = predict_parallel(hw, gqa, phase, scope="layer", par=Parallel(tp=devices), **kw)
        rows.append({"kind": "tp_layer", "phase": phase, "devices": devices, "predicted_s": r.latency_s,
                     "comm_s": r.comm_s, **kw})
    r = predict_parallel(hw, gqa, "prefill", 1, 32768, par=Parallel(cp=devices))
    rows.append({"kind": "ring_prefill", "phase": "prefill", "devices": devices, "batch": 1, "seq": 32768,
                 "predicted_s": r.latency_s, "comm_s": r.comm_s, "exposed_comm_s": r.exposed_comm_s})
    t = tpla_speedup(hw, 1, 32768, tp=devices)
    rows.append({"kind": "tpla_decode", "phase": "decode", "devices": devices, "batch": 1, "context": 32768,
                 "predicted_s": t["tpla_s"], "mla_tp_s": t["mla_tp_s"], "speedup": t["speedup"]})
    return [{k: (float(v) if hasattr(v, "dtype") and v.ndim == 0 and v.dtype.kind == "f" else v) for k, v in row.items()}
            for row in rows]


def _md(headers, rows) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def tables(hw="h200") -> str:
    """The tables of docs/PARALLEL.md."""
    hw = load_hardware(hw)
    fab = fabric(hw)
    us = lambda t: f"{float(t) * 1e6:,.1f}"  # noqa: E731
    out = [f"### All-reduce on {hw.name} (us; algorithm/protocol)"]
    topos = [Topology(2, 1), Topology(4, 1), Topology(8, 1)] + [Topology(8, m) for m in (2, 4, 8, 16)]
    rows = []
    for n in (16 << 10, 1 << 20, 64 << 20, 1 << 30):
        rows.append([f"{n:,}"] + [f"{us(c.time_s)} {c.algorithm}/{c.protocol}"
                                   for c in (collective("all_reduce", n, t, fab) for t in topos)])
    out.append(_md(["bytes"] + [f"{t.gpus_per_node}x{t.nodes}" for t in topos], rows))
    gqa = attention("gqa", **_GQA)
    out.append(f"\n### Tensor parallel, GQA 64/8 x 128 layer (scope layer) on {hw.name}")
    rows = []
    for tp in (1, 2, 4, 8):
        d = predict_parallel(hw, gqa, "decode", 16, context=8192, scope="layer", par=Parallel(tp=tp))
        p = predict_parallel(hw, gqa, "prefill", 1, 8192, scope="layer", par=Parallel(tp=tp))
        rows.append([tp, us(d.latency_s), us(d.comm_s), us(p.latency_s), us(p.comm_s)])
    out.append(_md(["tp", "decode B16 ctx 8k (us)", "of which all-reduce", "prefill 8k (us)", "of which all-reduce"], rows))
    out.append(f"\n### Context parallel prefill, GQA 64/8 x 128 core, 128k tokens on {hw.name}")
    rows = []
    for cp, nodes in ((1, 1), (2, 1), (4, 1), (8, 1), (16, 2), (32, 4), (64, 8), (128, 16)):
        cells = [cp, nodes]
        for scheme in ("ring", "ulysses"):
            try:
                r = predict_parallel(hw, gqa, "prefill", 1, 131072, par=Parallel(cp=cp, nodes=nodes, cp_scheme=scheme))
                cells += [us(r.latency_s), us(r.exposed_comm_s)]
            except AttnDseError:
                cells += ["-", "-"]
        rows.append(cells)
    out.append(_md(["cp", "nodes", "ring (us)", "ring exposed comm", "ulysses (us)", "ulysses all-to-all"], rows))
    out.append(f"\n### DeepSeek-V3 decode, 32k context, batch 1: MLA-TP vs TPLA on {hw.name}")
    rows = []
    for tp in (2, 4, 8):
        for b in (1, 32):
            c, l = tpla_speedup(hw, b, 32768, tp, "core"), tpla_speedup(hw, b, 32768, tp, "layer")
            rows.append([tp, b, us(c["mla_tp_s"]), us(c["tpla_s"]), f"{float(c['speedup']):.2f}",
                         f"{c['mla_limiter']}/{c['tpla_limiter']}", f"{float(l['speedup']):.2f}"])
    out.append(_md(["tp", "batch", "MLA-TP core (us)", "TPLA core (us)", "speed-up core", "limiters", "speed-up layer"], rows))
    out.append(f"\n### Best split of 8 {hw.name} GPUs (latency of one step)")
    rows = []
    for phase, kw in (("prefill 128k", dict(phase="prefill", batch=1, seq=131072)),
                      ("decode B64 ctx 32k", dict(phase="decode", batch=64, context=32768))):
        best = best_split(hw, gqa, 8, scope="layer", **kw)
        rows += [[phase, f"tp{r.tp} cp{r.cp} {r.cp_scheme if r.cp > 1 and r.phase == 'prefill' else ''}".strip(),
                  us(r.latency_s)] for r in best[:3]]
    out.append(_md(["workload", "split", "latency (us)"], rows))
    return "\n".join(out)


def best_split(hw, wl: Workload, devices: int, nodes: int = 1, **kw) -> list[ParallelPrediction]:
    """Every tp x cp = devices split (and CP scheme) that is valid, fastest first."""
    out = []
    for tp in (d for d in range(1, devices + 1) if devices % d == 0):
        schemes = CP_SCHEMES if kw.get("phase") == "prefill" and devices // tp > 1 else ("ring",)
        for scheme in schemes:
            try:
                out.append(predict_parallel(hw, wl, par=Parallel(tp, devices // tp, nodes, scheme), **kw))
            except AttnDseError:
                continue
    return sorted(out, key=lambda r: float(np.max(r.latency_s)))


def main(argv=None) -> None:
    import argparse
    import csv
    ap = argparse.ArgumentParser(description="Tables of docs/PARALLEL.md; --csv writes a node's predictions.")
    ap.add_argument("--hw", default="h200")
    ap.add_argument("--csv", help="write the predictions for --devices GPUs here")
    ap.add_argument("--devices", type=int, default=8)
    a = ap.parse_args(argv)
    if a.csv:
        rows = prediction_rows(a.hw, a.devices)
        keys = list(dict.fromkeys(k for r in rows for k in r))
        with open(a.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)
        return
    print(tables(a.hw))


if __name__ == "__main__":
    main()
