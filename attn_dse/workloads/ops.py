"""Operators and tensors: the data a variant's computation is made of.

A variant lists its ops; everything else is a pass over that list:
- `total_cost` sums FLOPs and the minimum HBM bytes (vectorized: fields may be numpy arrays),
- `build_graph` turns the list into a networkx DAG (edges are tensors),
- `backward` derives the training ops, `scaled` repeats ops over layers.
Fusion: 'scratch' tensors (scores, probabilities) stay on chip in fused execution and go
through HBM (written once, read once) in unfused execution.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # networkx is imported when a graph is built, not with every predict
    import networkx as nx

TENSOR_KINDS = ("activation", "weight", "kv_cache", "scratch")
OP_KINDS = ("matmul", "softmax", "elementwise", "gather", "comm")


@dataclass(frozen=True)
class Tensor:
    name: str
    bytes: Any
    kind: str = "activation"  # weight and kv_cache are persistent; scratch is fusable

    @property
    def persistent(self) -> bool:
        return self.kind in ("weight", "kv_cache")


@dataclass(frozen=True)
class Op:
    name: str
    kind: str
    flops: Any = 0.0  # matmul-unit FLOPs (2 per multiply-add)
    vector_flops: Any = 0.0  # other arithmetic (softmax, scaling, gates)
    exps: Any = 0.0  # special-function evaluations
    reads: tuple[Tensor, ...] = ()
    writes: tuple[Tensor, ...] = ()
    comm_bytes: Any = 0.0  # bytes sent over the interconnect per device
    group: str = "core"  # "core" (the attention kernel), "proj", "aux", "comm"
    grad: bool = True  # whether training back-propagates through it
    fused_only: bool = False  # exists only in fused execution (FlashAttention recompute)
    repeat: Any = 1.0  # kernel launches this op stands for (layers at model scope)
    kernel: str = ""  # "attention": part of the fused softmax-attention kernel (dataflow-modelled)
    dtype: str = ""  # the matmul dtype where it is not the workload's (DSA's fp8 indexer)


@dataclass(frozen=True)
class Cost:
    """Totals over an op list; every field broadcasts."""

    flops: Any  # matmul FLOPs
    vector_flops: Any
    exps: Any
    hbm_bytes: Any  # minimum HBM traffic of this execution (each tensor once)
    weight_bytes: Any
    comm_bytes: Any
    kv_cache_bytes: Any = 0.0
    by_group: dict = field(default_factory=dict)


def active_ops(ops: list[Op], fused: bool) -> list[Op]:
    return [op for op in ops if fused or not op.fused_only]


def tensor_traffic(ops: list[Op], fused: bool) -> dict[str, tuple[Tensor, int]]:
    """Each distinct tensor with how many times it crosses HBM: once if it is only read
    (an input) or only written (an output), twice if one op writes it and another reads it.
    Scratch tensors cost nothing when fused."""
    seen: dict[str, list] = {}
    for op in ops:
        for t in op.reads:
            seen.setdefault(t.name, [t, False, False])[1] = True
        for t in op.writes:
            seen.setdefault(t.name, [t, False, False])[2] = True
    traffic = {}
    for name, (t, read, written) in seen.items():
        times = 0 if (fused and t.kind == "scratch") else (2 if read and written else 1)
        traffic[name] = (t, times)
    return traffic


def total_cost(ops: list[Op], fused: bool = True, kv_cache_bytes: Any = 0.0) -> Cost:
    ops = active_ops(ops, fused)
    traffic = tensor_traffic(ops, fused)
    hbm = sum((t.bytes * n for t, n in traffic.values()), 0.0)
    weights = sum((t.bytes for t, _ in traffic.values() if t.kind == "weight"), 0.0)
    groups: dict[str, dict] = {}
    for op in ops:
        g = groups.setdefault(op.group, {"flops": 0.0, "vector_flops": 0.0, "exps": 0.0})
        g["flops"] = g["flops"] + op.flops
        g["vector_flops"] = g["vector_flops"] + op.vector_flops
        g["exps"] = g["exps"] + op.exps
    return Cost(
        flops=sum((op.flops for op in ops), 0.0),
        vector_flops=sum((op.vector_flops for op in ops), 0.0),
        exps=sum((op.exps for op in ops), 0.0),
        hbm_bytes=hbm, weight_bytes=weights,
        comm_bytes=sum((op.comm_bytes for op in ops), 0.0),
        kv_cache_bytes=kv_cache_bytes, by_group=groups)


def group_traffic(ops: list[Op], fused: bool) -> dict[str, Any]:
    """Minimum HBM bytes attributed to each op group (a tensor passed between groups counts
    in both: written by one kernel, read by the next)."""
    out: dict[str, Any] = {}
    for group in {op.group for op in ops}:
        sub = [op for op in active_ops(ops, fused) if op.group == group]
        out[group] = sum((t.bytes * n for t, n in tensor_traffic(sub, fused).values()), 0.0)
    return out


def build_graph(ops: list[Op], fused: bool = True) -> "nx.MultiDiGraph":
    """The op DAG: an edge per tensor from its producer (or its HBM source) to each consumer.
    Edge attribute `on_chip` says whether fusion keeps it out of HBM."""
    ops = active_ops(ops, fused)
    import networkx as nx
    g = nx.MultiDiGraph()  # one edge per tensor: two ops may pass several
    producer: dict[str, str] = {}
    for op in ops:
        g.add_node(op.name, kind=op.kind, flops=op.flops, vector_flops=op.vector_flops,
                   exps=op.exps, group=op.group, comm_bytes=op.comm_bytes)
        for t in op.writes:
            producer[t.name] = op.name
    for op in ops:
        for t in op.reads:
            src = producer.get(t.name)
            if src is None:
                src = f"hbm:{t.name}"
                g.add_node(src, kind="source", tensor_kind=t.kind, bytes=t.bytes,
                           on_chip=fused and t.kind == "scratch")
            if src != op.name:
                _add_tensor_edge(g, src, op.name, t, fused)
        for t in op.writes:
            if not any(t.name in {r.name for r in o.reads} for o in ops):
                sink = f"hbm:{t.name}"
                g.add_node(sink, kind="sink", tensor_kind=t.kind, bytes=t.bytes,
                           on_chip=fused and t.kind == "scratch")
                _add_tensor_edge(g, op.name, sink, t, fused)
    return g


def _add_tensor_edge(g: "nx.MultiDiGraph", a: str, b: str, t: Tensor, fused: bool) -> None:
    g.add_edge(a, b, tensor=t.name, bytes=t.bytes, kind=t.kind,
               on_chip=fused and t.kind == "scratch")


def graph_cost(g: "nx.MultiDiGraph") -> dict[str, Any]:
    """FLOPs and minimum HBM bytes read off the graph (checks `total_cost` independently)."""
    ops = [n for n, d in g.nodes(data=True) if d["kind"] not in ("source", "sink")]
    flops = sum((g.nodes[n]["flops"] for n in ops), 0.0)
    exps = sum((g.nodes[n]["exps"] for n in ops), 0.0)
    hbm = 0.0
    for _, d in g.nodes(data=True):
        # a source is read once from HBM however many consume it; a sink is written once
        if d["kind"] in ("source", "sink") and not d["on_chip"]:
            hbm = hbm + d["bytes"]
    produced = {}
    for a, b, e in g.edges(data=True):  # noqa: B007
        if g.nodes[a]["kind"] not in ("source",) and g.nodes[b]["kind"] != "sink":
            produced[e["tensor"]] = e  # an intermediate: written once, read once
    for e in produced.values():
        if not e["on_chip"]:
            hbm = hbm + 2 * e["bytes"]
    return {"flops": flops, "exps": exps, "hbm_bytes": hbm}


def backward(ops: list[Op]) -> list[Op]:
    """Training ops after the forward: each matmul's backward is two matmuls of its size
    (dA = dC.B^T, dB = A^T.dC); softmax/elementwise backward is vector work of its size.
    Gradients are named per producing op (dx@q_proj, dx@k_proj): each is written once and
    read once, as when an unfused backward accumulates them."""
    out = []
    for op in ops:
        if not op.grad or op.fused_only or op.kind == "comm":
            continue
        grads_in = tuple(Tensor(f"d{t.name}", t.bytes, "scratch" if t.kind == "scratch" else "activation")
                         for t in op.writes)
        grads_out = tuple(Tensor(f"d{t.name}@{op.name}", t.bytes, "scratch" if t.kind == "scratch" else "activation")
                          for t in op.reads if t.kind != "kv_cache")
        out.append(Op(f"{op.name}.bwd", op.kind, flops=2 * op.flops if op.kind == "matmul" else 0.0,
                      vector_flops=op.vector_flops + (op.exps if op.kind == "softmax" else 0.0),
                      reads=op.reads + grads_in, writes=grads_out, group=op.group, kernel=op.kernel))
    return out


def scaled(ops: list[Op], factor: Any, prefix: str = "") -> list[Op]:
    """The ops repeated `factor` times (layers): numbers multiply, names get a prefix."""
    def t(x: Tensor) -> Tensor:
        return dataclasses.replace(x, name=prefix + x.name, bytes=x.bytes * factor)
    return [dataclasses.replace(op, name=prefix + op.name, flops=op.flops * factor,
                                vector_flops=op.vector_flops * factor, exps=op.exps * factor,
                                comm_bytes=op.comm_bytes * factor, repeat=op.repeat * factor,
                                reads=tuple(map(t, op.reads)), writes=tuple(map(t, op.writes)))
            for op in ops]


def as_array(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)
