"""The accelerator description: frozen dataclasses in SI units, built by `loader.py`.

Only facts of the machine live here (datasheet figures and measured ceilings, each with its
source); the time model's knobs live in `calibration/`."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

from attn_dse.errors import AttnDseError

@dataclass(frozen=True, slots=True)
class MemoryLevel:
    """One level of the hierarchy. Per-core levels (SMEM, VMEM) give capacity per core and
    bandwidth summed over all cores."""

    name: str
    capacity_bytes: float
    bytes_per_s: float
    per_core: bool = False


SCALE_UP_KINDS = ("nvswitch", "nvlink", "pcie", "xgmi", "ici")  # links inside a node
SCALE_OUT_KINDS = ("infiniband", "roce", "ethernet", "ici")  # links between nodes


@dataclass(frozen=True, slots=True)
class Link:
    """The devices' links between nodes (scale-out): one NIC's rate per device, per direction."""

    kind: str  # infiniband | roce | ethernet | ici
    bytes_per_s: float  # line rate (datasheet)
    bus_bytes_per_s: float | None = None  # what a collective reaches on it (measured or modelled)

    def collective_bytes_per_s(self, achievable: bool = True) -> float:
        return self.bus_bytes_per_s if achievable and self.bus_bytes_per_s else self.bytes_per_s


@dataclass(frozen=True, slots=True)
class Interconnect:
    link_bytes_per_s: float  # per device, per direction, all links of one device together
    devices_per_node: int
    kind: str = "nvswitch"  # the links inside a node: nvswitch | nvlink | pcie | xgmi | ici
    bus_bytes_per_s: float | None = None  # the bus bandwidth a collective reaches inside a node
    call_latency_s: float = 0.0  # host-side cost of one collective call beyond the library's own latency
    scale_out: Link | None = None  # between nodes; None: the preset describes one node only

    def collective_bytes_per_s(self, achievable: bool = True) -> float:
        return self.bus_bytes_per_s if achievable and self.bus_bytes_per_s else self.link_bytes_per_s


@dataclass(frozen=True, slots=True)
class Achievable:
    """Measured ceilings (what a large matmul / device copy really reaches), with provenance."""

    matmul_flop_per_s: Mapping[str, float] = field(default_factory=dict)
    hbm_bytes_per_s: float | None = None
    source: str = ""


@dataclass(frozen=True, slots=True)
class Hardware:
    name: str
    description: str
    kind: str  # "gpu" or "tpu"
    cores: int
    clock_hz: float
    peak_flop_per_s: Mapping[str, float]  # dense matmul-unit peaks per dtype
    vector_flop_per_s: float  # fp32 non-matmul arithmetic
    exp_per_s: float  # special-function (exp) throughput
    mma_rows: int  # M-dimension of one matrix instruction (wgmma 64, MXU 128/256)
    memory: tuple[MemoryLevel, ...]
    interconnect: Interconnect
    launch_overhead_s: float  # the preset's figure; calibration knobs may refine it per implementation
    achievable: Achievable
    sources: Mapping[str, str]
    path: str = ""
    lineage: tuple[str, ...] = ()  # this preset's name, then those it extends (nearest first)

    def level(self, name: str) -> MemoryLevel:
        for lv in self.memory:
            if lv.name == name:
                return lv
        raise AttnDseError(f"{self.name} has no memory level '{name}'",
                           fix="levels: " + ", ".join(lv.name for lv in self.memory))

    @property
    def hbm(self) -> MemoryLevel:
        return self.level("hbm")

    @property
    def core_memory(self) -> MemoryLevel:
        """The per-core scratchpad a fused kernel tiles into (SMEM, VMEM)."""
        return next(lv for lv in self.memory if lv.per_core)

    @property
    def cache(self) -> MemoryLevel | None:
        """The shared on-chip cache between cores and HBM (L2, CMEM), if any."""
        shared = [lv for lv in self.memory if not lv.per_core and lv.name != "hbm"]
        return shared[-1] if shared else None

    def matmul_flop_per_s(self, dtype: str, achievable: bool = True) -> float:
        if dtype not in self.peak_flop_per_s:
            raise AttnDseError(f"{self.name} has no {dtype} matmul rate",
                               fix="dtypes: " + ", ".join(self.peak_flop_per_s))
        measured = self.achievable.matmul_flop_per_s
        if achievable and dtype in measured:
            return measured[dtype]
        if achievable and "bf16" in measured:  # same tensor cores: the measured share of peak carries over
            return self.peak_flop_per_s[dtype] * measured["bf16"] / self.peak_flop_per_s["bf16"]
        return self.peak_flop_per_s[dtype]

    def hbm_bytes_per_s(self, achievable: bool = True) -> float:
        if achievable and self.achievable.hbm_bytes_per_s:
            return self.achievable.hbm_bytes_per_s
        return self.hbm.bytes_per_s

    def ridge_point(self, dtype: str = "bf16", achievable: bool = False) -> float:
        """FLOP per HBM byte at which matmul time equals memory time."""
        return self.matmul_flop_per_s(dtype, achievable) / self.hbm_bytes_per_s(achievable)

    def source_of(self, path: str) -> str:
        """The source of a dotted field, falling back to its nearest cited parent."""
        while path:
            if path in self.sources:
                return self.sources[path]
            path = path.rpartition(".")[0]
        return self.sources.get("", "")

    def scaled(self, **factors: float) -> "Hardware":
        """A what-if copy: scaled(hbm_bandwidth=2.0, matmul=0.5, hbm_capacity=1.5, ...)."""
        hw = self
        for key, f in factors.items():
            hw = _SCALERS[key](hw, f) if key in _SCALERS else _unknown_scale(key)
        return dataclasses.replace(hw, name=f"{self.name}*" if factors else self.name)

    @property
    def ancestry(self) -> tuple[str, ...]:
        """Names to look calibration knobs up by: its own, then those of the presets it extends."""
        return self.lineage or (self.name,)


def _unknown_scale(key: str):
    from attn_dse.errors import did_you_mean
    raise AttnDseError(f"unknown hardware scale '{key}'", fix=did_you_mean(key, _SCALERS))


def _scale_level(hw: Hardware, name: str, attr: str, f: float) -> Hardware:
    levels = tuple(dataclasses.replace(lv, **{attr: getattr(lv, attr) * f}) if lv.name == name else lv
                   for lv in hw.memory)
    hw = dataclasses.replace(hw, memory=levels)
    if name == "hbm" and attr == "bytes_per_s" and hw.achievable.hbm_bytes_per_s:
        hw = dataclasses.replace(hw, achievable=dataclasses.replace(
            hw.achievable, hbm_bytes_per_s=hw.achievable.hbm_bytes_per_s * f))
    return hw


def _scale_matmul(hw: Hardware, f: float) -> Hardware:
    ach = {k: v * f for k, v in hw.achievable.matmul_flop_per_s.items()}
    return dataclasses.replace(hw, peak_flop_per_s={k: v * f for k, v in hw.peak_flop_per_s.items()},
                               achievable=dataclasses.replace(hw.achievable, matmul_flop_per_s=ach))


_SCALERS = {
    "hbm_bandwidth": lambda hw, f: _scale_level(hw, "hbm", "bytes_per_s", f),
    "hbm_capacity": lambda hw, f: _scale_level(hw, "hbm", "capacity_bytes", f),
    "matmul": _scale_matmul,
    "exp": lambda hw, f: dataclasses.replace(hw, exp_per_s=hw.exp_per_s * f),
    "vector": lambda hw, f: dataclasses.replace(hw, vector_flop_per_s=hw.vector_flop_per_s * f),
    "interconnect": lambda hw, f: dataclasses.replace(hw, interconnect=dataclasses.replace(
        hw.interconnect, link_bytes_per_s=hw.interconnect.link_bytes_per_s * f,
        bus_bytes_per_s=hw.interconnect.bus_bytes_per_s and hw.interconnect.bus_bytes_per_s * f)),
    "core_memory": lambda hw, f: _scale_level(hw, hw.core_memory.name, "capacity_bytes", f),
}
SCALABLE = tuple(_SCALERS)
