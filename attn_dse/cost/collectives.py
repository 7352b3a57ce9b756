"""Collectives across devices: an alpha-beta model per algorithm and protocol.

One call of a collective over p = gpus_per_node x nodes ranks takes

    call_latency + base[alg, proto] + steps_intra * hop[link, alg, proto] + steps_inter * hop[net, alg, proto]
                 + bus_bytes / (bus_bandwidth * efficiency[alg, proto])

and the library picks the fastest (algorithm, protocol). The latencies and efficiencies are
NCCL's own tuning model (src/graph/tuning.cc of NCCL 2.30: `baseLatencies`, `hwLatencies` and
the bus-bandwidth refinements of `ncclTopoTuneModel`); the bus bandwidth per link and the host's
call latency come from the hardware preset (or a fit to measurements, `validation/collectives.py`).
`bus_bytes` is nccl-tests' bus-bandwidth convention: 2(p-1)/p of the buffer for all-reduce,
(p-1)/p of the full buffer for all-gather, reduce-scatter and all-to-all, the message for send/recv.
Not modelled: NVLink SHARP (NVLS) and CollNet, NCCL's per-channel bandwidth caps, the
LL protocol's absolute cap (141 GB/s on Hopper), contention with other traffic.
Every function broadcasts over numpy arrays of sizes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from attn_dse.errors import AttnDseError
from attn_dse.hardware.spec import Hardware

OPS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv")
ALGORITHMS = ("ring", "tree")
PROTOCOLS = ("LL", "LL128", "Simple")
US = 1e-6
# NCCL tuning.cc baseLatencies (us), per algorithm: (LL, LL128, Simple)
BASE_LATENCY_S = {"tree": (6.8 * US, 14.0 * US, 8.4 * US), "ring": (6.6 * US, 14.0 * US, 8.4 * US)}
# NCCL tuning.cc hwLatencies (us) per step, per link class and algorithm: (LL, LL128, Simple)
HOP_LATENCY_S = {
    "nvlink": {"tree": (0.6 * US, 1.25 * US, 4.0 * US), "ring": (0.6 * US, 1.9 * US, 3.4 * US)},
    "pcie": {"tree": (1.0 * US, 1.9 * US, 4.0 * US), "ring": (1.0 * US, 2.5 * US, 5.7 * US)},
    "net": {"tree": (5.0 * US, 8.5 * US, 14.0 * US), "ring": (2.7 * US, 4.0 * US, 14.0 * US)},
}
NET_OVERHEAD_S = 1.0 * US  # NCCL getNetOverhead (x86 Intel; x3 for Simple): a floor on intra steps of inter-node rings
# share of the bus bandwidth each protocol carries (tuning.cc): LL sends 4 data bytes per 8, LL128 120 per 128
RING_EFFICIENCY = (0.5, 0.92, 1.0)
TREE_ALLREDUCE = 0.92  # tree all-reduce bus bandwidth factor; then LL x 1/3.8, LL128 x 7/9 (one node) or 120/128
LINK_CLASS = {"nvswitch": "nvlink", "nvlink": "nvlink", "xgmi": "nvlink", "ici": "nvlink", "pcie": "pcie"}


@dataclass(frozen=True, slots=True)
class Topology:
    """The ranks of one communicator: gpus_per_node on each of `nodes` nodes."""

    gpus_per_node: int = 1
    nodes: int = 1

    @property
    def devices(self) -> int:
        return self.gpus_per_node * self.nodes


@dataclass(frozen=True, slots=True)
class Fabric:
    """What the collective model needs of a machine: the link class inside a node, bus
    bandwidths per level, the host's call latency, and a scale on NCCL's per-step latencies."""

    link: str  # NCCL link class inside a node: nvlink | pcie
    intra_bytes_per_s: float
    inter_bytes_per_s: float | None = None  # per device, between nodes
    call_latency_s: float = 0.0
    hop_scale: float = 1.0  # fitted: measured per-step latency / NCCL's
    name: str = ""


@dataclass(frozen=True)
class CollectiveTime:
    time_s: Any
    algorithm: Any
    protocol: Any
    bus_bytes: Any


def fabric(hw: Hardware, achievable: bool = True) -> Fabric:
    ic = hw.interconnect
    return Fabric(LINK_CLASS[ic.kind], ic.collective_bytes_per_s(achievable),
                  ic.scale_out.collective_bytes_per_s(achievable) if ic.scale_out else None,
                  ic.call_latency_s, 1.0, hw.name)


def bus_factor(op: str, p):
    """Bytes each rank moves over its busiest link, per byte of the buffer (nccl-tests' busBw)."""
    p = np.asarray(p, dtype=np.float64)
    return {"all_reduce": 2 * (p - 1) / p, "all_gather": (p - 1) / p, "reduce_scatter": (p - 1) / p,
            "all_to_all": (p - 1) / p, "send_recv": np.ones_like(p)}[op]


def _steps(op: str, p: int) -> int:
    return {"all_reduce": 2 * (p - 1), "all_gather": p - 1, "reduce_scatter": p - 1,
            "all_to_all": p - 1, "send_recv": 1}[op]


def _check(op: str, topo: Topology, fab: Fabric, algorithm: str, protocol: str) -> None:
    if op not in OPS:
        raise AttnDseError(f"unknown collective '{op}'", fix="one of " + ", ".join(OPS))
    if algorithm not in ALGORITHMS + ("auto",):
        raise AttnDseError(f"unknown collective algorithm '{algorithm}'", fix="ring, tree or auto")
    if protocol not in PROTOCOLS + ("auto",):
        raise AttnDseError(f"unknown collective protocol '{protocol}'", fix="LL, LL128, Simple or auto")
    if topo.gpus_per_node < 1 or topo.nodes < 1:
        raise AttnDseError(f"topology {topo.gpus_per_node}x{topo.nodes}: counts must be >= 1", fix="e.g. 8 GPUs x 2 nodes")
    if topo.nodes > 1 and not fab.inter_bytes_per_s:
        raise AttnDseError(f"{fab.name or 'this machine'}: {topo.nodes} nodes, but the preset has no link between nodes",
                           fix="add 'interconnect: {scale_out: {kind: infiniband, bandwidth: 50 GB/s}}' to the preset, or use one node")


def candidates(op: str, nbytes, topo: Topology, fab: Fabric) -> dict[tuple[str, str], Any]:
    """The time of every (algorithm, protocol) NCCL could run this collective with."""
    p, g, m = topo.devices, topo.gpus_per_node, topo.nodes
    nbytes = np.asarray(nbytes, dtype=np.float64)
    out: dict[tuple[str, str], Any] = {}
    if p == 1:
        return {("ring", "Simple"): np.zeros_like(nbytes)}
    intra = fab.link if g > 1 else "net"
    bw = fab.intra_bytes_per_s if m == 1 else min(fab.intra_bytes_per_s, fab.inter_bytes_per_s)
    if op == "all_to_all" and m > 1:  # the off-node share rides the NICs, the rest NVLink, at once
        off, on = (p - g) / p, (g - 1) / p
        bw = 1.0 / max(off / fab.inter_bytes_per_s, on / fab.intra_bytes_per_s) * ((p - 1) / p)
    bus = nbytes * bus_factor(op, p)
    s = _steps(op, p)
    inter_steps = 0 if m == 1 else (2 * (m - 1) if op == "all_reduce" else min(m - 1, s))
    for i, proto in enumerate(PROTOCOLS):
        hop_in = HOP_LATENCY_S[intra]["ring"][i] * fab.hop_scale
        hop_net = HOP_LATENCY_S["net"]["ring"][i] * fab.hop_scale
        if m > 1:
            hop_in = max(hop_in, NET_OVERHEAD_S * (3 if proto == "Simple" else 1))
        lat = BASE_LATENCY_S["ring"][i] + (s - inter_steps) * hop_in + inter_steps * hop_net
        out[("ring", proto)] = fab.call_latency_s + lat + bus / (bw * RING_EFFICIENCY[i])
        if op != "all_reduce":
            continue
        # double binary tree: a chain inside each node, log2(nodes) levels between them; the
        # buffer goes up and down once (algorithm bandwidth = bus bandwidth / 2)
        eff = TREE_ALLREDUCE * (1 / 3.8, 7 / 9 if m == 1 else 120 / 128, 1.0)[i]
        tree_in = HOP_LATENCY_S[fab.link]["tree"][i] * fab.hop_scale
        tree_net = HOP_LATENCY_S["net"]["tree"][i] * fab.hop_scale
        lat = BASE_LATENCY_S["tree"][i] + 2 * ((g - 1) * tree_in + math.log2(m) * tree_net)
        out[("tree", proto)] = fab.call_latency_s + lat + 2 * nbytes / (bw * eff)
    return out


def collective(op: str, nbytes, topo: Topology, fab: Fabric, algorithm: str = "auto",
               protocol: str = "auto") -> CollectiveTime:
    """The fastest allowed (algorithm, protocol) for each size, as NCCL's tuner picks it."""
    _check(op, topo, fab, algorithm, protocol)
    cands = {k: v for k, v in candidates(op, nbytes, topo, fab).items()
             if algorithm in ("auto", k[0]) and protocol in ("auto", k[1])}
    if not cands:
        raise AttnDseError(f"{op} has no {algorithm} algorithm", fix="use algorithm ring (or auto)")
    keys = list(cands)
    stacked = np.stack(np.broadcast_arrays(*[np.asarray(cands[k], dtype=np.float64) for k in keys]))
    best = np.argmin(stacked, axis=0)
    alg = np.asarray([k[0] for k in keys], dtype=object)[best]
    proto = np.asarray([k[1] for k in keys], dtype=object)[best]
    time = np.min(stacked, axis=0)
    bus = np.asarray(nbytes, dtype=np.float64) * bus_factor(op, topo.devices)
    item = (lambda x: np.asarray(x).item() if np.ndim(x) == 0 else x)
    return CollectiveTime(item(time), item(alg), item(proto), item(bus))


def collective_time(op: str, nbytes, topo: Topology, hw_or_fabric, achievable: bool = True, **kw):
    """Seconds of one collective call (the fastest algorithm and protocol)."""
    fab = hw_or_fabric if isinstance(hw_or_fabric, Fabric) else fabric(hw_or_fabric, achievable)
    return collective(op, nbytes, topo, fab, **kw).time_s


def main() -> None:  # pragma: no cover - a small table to look at
    from attn_dse.hardware.loader import load_hardware
    fab = fabric(load_hardware("h200"))
    sizes = [4 << 10, 16 << 10, 256 << 10, 4 << 20, 64 << 20, 1 << 30]
    print("all-reduce on h200 (us): size | " + " | ".join(f"{g} GPUs" for g in (2, 4, 8)) + " | 8x2 nodes")
    for n in sizes:
        row = [collective("all_reduce", n, Topology(g, 1), fab) for g in (2, 4, 8)]
        row.append(collective("all_reduce", n, Topology(8, 2), fab))
        print(f"{n:>11,} | " + " | ".join(f"{r.time_s * 1e6:8.1f} {r.algorithm}/{r.protocol}" for r in row))


if __name__ == "__main__":
    main()
