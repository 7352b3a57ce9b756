"""Kernel families: how one kind of attention kernel spends its time.

A family (one file under `cost/families/`, registered once) holds its candidate mappings and
time model, its default knobs, which kernel specs it times, and how a measured row of its
kernels maps back to a workload. Everything else looks families up by name here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from attn_dse.errors import AttnDseError, did_you_mean

if TYPE_CHECKING:
    from attn_dse.calibration.knobs import FamilyKnobs, Knobs
    from attn_dse.cost.roofline import Ceilings
    from attn_dse.hardware.spec import Hardware
    from attn_dse.workloads.kernel_spec import KernelSpec

_FAMILIES: dict[str, "Family"] = {}


@dataclass(frozen=True)
class KernelEstimate:
    """The chosen mapping of one kernel, its time and its traffic (fields broadcast)."""

    time_s: Any
    hbm_bytes: Any
    cache_bytes: Any  # K/V tile traffic served through L2 (before hits)
    flops: Any  # matmul FLOPs executed, masked/padded waste included
    exps: Any
    limiter: Any
    mapping: dict  # block_m, block_n, n_split, stages (arrays)
    compute_s: Any
    memory_s: Any


class Family:
    """One kernel family. Subclasses set `name`, the default knobs, and implement `claims`,
    `estimate` and `workload_for` (the last two only where the family is tiled/measured)."""

    name: ClassVar[str]
    order: ClassVar[int] = 100  # lower claims first (block_sparse before decode before prefill)
    tiled: ClassVar[bool] = True  # timed by its own dataflow model (else: the plain roofline)
    compute_efficiency: ClassVar[float] = 0.75
    memory_efficiency: ClassVar[float] = 0.9
    resident: ClassVar[float] = 1  # programs a core must hold at once to reach its rates (tiled.finish)
    slots: ClassVar[int] = 1  # programs a core holds at once, filling their pipelines together (tiled.finish)
    widens_in_mma: ClassVar[bool] = False  # a narrow cache's widening is part of its MMA rate, not vector work
    core_raw: ClassVar[bool] = False  # a core's streaming rate bounds every byte its programs load (tiled.finish)
    # share of the softmax's exp time hidden under the matmuls by the kernel's construction (a
    # warp-specialized kernel's consumer warpgroups: one's softmax beside the other's matmuls);
    # None: the implementation's fitted exp_overlap
    exp_overlap: ClassVar[float | None] = None
    # its key-tile step has a cost of its own, fitted as the family's tile_overhead_cycles (the
    # hand-off between a producer and consumer warpgroups), not the implementation's shared one
    own_tile_overhead: ClassVar[bool] = False
    # one program a core takes the blocks in turn, loading the next block's first tiles under the
    # current one's end: a core fills its pipeline once, not once a wave (tiled.finish)
    persistent: ClassVar[bool] = False
    # the tiles a kernel is built with, where it does not leave them to the mapping search: its
    # key tiles, and the row tiles it may take (`row_tile` says which one a row count gets)
    key_tiles: ClassVar[tuple] = ()
    row_tiles: ClassVar[tuple] = ()
    steps_per_score_block: ClassVar[bool] = False  # a decode kernel's step recurs per 16 x 128 block of scores

    def row_tile(self, m_rows):
        """The row tile the kernel takes for m_rows query rows (a family with `row_tiles`)."""
        raise NotImplementedError(f"{self.name} leaves its row tile to the mapping search")

    def key_tile(self, rows):
        """The key tile the kernel takes with row tile `rows` (a family with several `key_tiles`)."""
        raise NotImplementedError(f"{self.name} leaves its key tile to the mapping search")

    def claims(self, spec: "KernelSpec") -> bool:
        return False

    def default_knobs(self, hw: "Hardware") -> "FamilyKnobs":
        """Physically motivated starting points: a kernel's share of the ceilings, and one core
        streaming twice its fair share of HBM (a lone core is not starved by its neighbours); a
        family with a tile step of its own starts from the shared knob's default."""
        from attn_dse.calibration.knobs import TILE_STEP_CYCLES, FamilyKnobs
        hbm = hw.achievable.hbm_bytes_per_s or hw.hbm.bytes_per_s
        return FamilyKnobs(self.compute_efficiency, self.memory_efficiency, 2.0 * hbm / hw.cores,
                           TILE_STEP_CYCLES if self.own_tile_overhead else None)

    def estimate(self, spec: "KernelSpec", hw: "Hardware", c: "Ceilings", knobs: "Knobs",
                 fixed: dict | None = None) -> KernelEstimate:
        raise NotImplementedError(f"{self.name} has no tiled time model")

    def estimate_backward(self, spec: "KernelSpec", hw: "Hardware", c: "Ceilings", knobs: "Knobs",
                          fixed: dict | None = None) -> KernelEstimate | None:
        """The backward kernel of a training step (None: the family has no backward model, and
        the forward is scaled by the backward's FLOP share)."""
        return None

    def kernel_of(self, row: dict) -> str:
        """The family whose kernel timed this measured row: this one, unless the family offers
        several kernels for its shapes and the row names another (its knobs then time the row)."""
        return self.name

    def workload_for(self, row: dict):
        """(Workload, predict() keyword arguments) of one measured kernel launch of this family."""
        raise AttnDseError(f"family '{self.name}' has no measured kernels", fix="use a measured family")


def register_family(cls: type[Family]) -> type[Family]:
    _FAMILIES[cls.name] = cls()
    return cls


def families() -> dict[str, Family]:
    """Every registered family (the `cost.families` package registers them on import)."""
    return dict(_FAMILIES)


def get_family(name: str) -> Family:
    if name not in _FAMILIES:
        raise AttnDseError(f"unknown kernel family '{name}'", fix=did_you_mean(name, _FAMILIES))
    return _FAMILIES[name]


def tiled_families() -> tuple[str, ...]:
    return tuple(name for name, f in _FAMILIES.items() if f.tiled)


def family_for(spec: "KernelSpec | None") -> Family | None:
    """The tiled family that times this kernel, or None (then it is rooflined)."""
    if spec is None:
        return None
    for fam in sorted(_FAMILIES.values(), key=lambda f: f.order):
        if fam.tiled and fam.claims(spec):
            return fam
    return None
