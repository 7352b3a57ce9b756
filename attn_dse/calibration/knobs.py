"""The knobs of the time model for one (hardware, implementation), and their YAML store.

Per kernel family: the share of the matmul and HBM ceilings its kernels reach in steady state,
and the most one core streams on its own. Shared by the families of one implementation: the L2's
share of K/V re-reads, the exp/matmul overlap, a per-tile overhead, a wave's pipeline-fill
latency and the launch overhead. And the implementation's profile: properties of its kernels
declared from their source, not fitted (the row tile its decode kernel computes whole, when it
splits the keys).

Lookup (`stored`): the first file `HW/IMPLEMENTATION.yaml` found for the hardware's own name, then
for each preset it `extends:` (an H200 uses the H100's knobs until it has its own), in the
directories of $ATTN_DSE_KNOBS (searched first) and the package's `calibration/knobs/`. What no
file gives keeps the kernel family's physically motivated default (`cost/families/*`).
"""
from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from attn_dse import strict_yaml
from attn_dse.errors import AttnDseError, did_you_mean

FAMILY_FIELDS = ("compute_efficiency", "memory_efficiency", "core_bytes_per_s")
OWN_FIELDS = ("tile_overhead_cycles",)  # a family's own value of a shared knob, where its kernel has one
SHARED_FIELDS = ("l2_reuse", "exp_overlap", "tile_overhead_cycles", "wave_latency_s", "launch_overhead_s")
PROFILE_FIELDS = ("decode_block_m", "split_block_m", "split_below_ctas_per_core")
TILE_STEP_CYCLES = 200.0  # a key-tile step's cost before any fit: the shared knob's, and a family's own


@dataclass(frozen=True, slots=True)
class FamilyKnobs:
    compute_efficiency: float  # share of the matmul ceiling in steady state
    memory_efficiency: float  # share of the HBM ceiling
    core_bytes_per_s: float  # the most one core (SM/TensorCore) streams on its own
    tile_overhead_cycles: float | None = None  # its own cost of a key-tile step (None: the shared knob)


@dataclass(frozen=True, slots=True)
class Profile:
    """What an implementation's kernels do by construction (0: as the model's own kernel).
    decode_block_m: the query-row tile of its one-pass decode kernel, computed whole (the padded
    rows of a KV head's packed query rows are executed MMA work). split_block_m: the same for its
    split-KV kernel (0: decode_block_m). split_below_ctas_per_core: the kernel splits the keys
    only while its unsplit CTAs number fewer than this many per core (0: the model picks the
    split count freely). source: where these were read."""

    decode_block_m: float = 0.0
    split_block_m: float = 0.0
    split_below_ctas_per_core: float = 0.0
    source: str = ""

    @property
    def split_rows(self) -> float:
        return self.split_block_m or self.decode_block_m


@dataclass(frozen=True, slots=True)
class Knobs:
    """l2_reuse: share of K/V re-reads across query tiles served by L2 while the working set
    fits. exp_overlap: share of the softmax's exp time hidden under the matmuls.
    tile_overhead_cycles: bookkeeping per K/V-tile iteration (barriers, rescaling).
    wave_latency_s: what each wave of CTAs pays before its pipeline streams."""

    families: Mapping[str, FamilyKnobs] = field(default_factory=dict)
    l2_reuse: float = 0.9
    exp_overlap: float = 0.5
    tile_overhead_cycles: float = TILE_STEP_CYCLES
    wave_latency_s: float = 1e-6
    launch_overhead_s: float = 4e-6
    implementation: str = "triton"
    source: str = "defaults (uncalibrated)"
    fused: bool = True  # False: the implementation runs attention as separate kernels (eager)
    profile: Profile = Profile()
    measured: frozenset = frozenset()  # the families fitted on this implementation's measurements

    def family(self, name: str) -> FamilyKnobs:
        return self.families[name]

    def flat(self) -> dict[str, float]:
        """{'compute_efficiency.prefill': ..., 'l2_reuse': ...}: the names the fit varies."""
        out = {f"{f}.{fam}": getattr(k, f) for fam, k in self.families.items() for f in FAMILY_FIELDS}
        out.update({f"{f}.{fam}": getattr(k, f) for fam, k in self.families.items() for f in OWN_FIELDS
                    if getattr(k, f) is not None})
        out.update({f: getattr(self, f) for f in SHARED_FIELDS})
        return out

    def rows(self) -> list[dict]:
        """(field, value with unit, SI value, source) of every knob, for `hw show`."""
        from attn_dse.hardware.units import format_si
        units = {"core_bytes_per_s": "B/s", "wave_latency_s": "s", "launch_overhead_s": "s"}
        out = []
        for key, value in self.flat().items():
            unit = units.get(key.partition(".")[0], "")
            out.append({"field": f"knobs[{self.implementation}].{key}",
                        "value": format_si(value, unit) if unit else f"{value:.3g}", "si": value,
                        "source": self.source})
        for key in PROFILE_FIELDS:
            value = getattr(self.profile, key)
            out.append({"field": f"knobs[{self.implementation}].profile.{key}", "value": f"{value:g}", "si": value,
                        "source": self.profile.source or "the model's own kernel"})
        out.append({"field": f"knobs[{self.implementation}].measured",
                    "value": ", ".join(sorted(self.measured)) or "none", "si": float(len(self.measured)),
                    "source": "the families fitted on this implementation's measurements: the prefill family times "
                              "the shapes a measured warp-specialized kernel takes with it"})
        return out

    def with_values(self, values: Mapping[str, float], source: str | None = None) -> "Knobs":
        """A copy with some knobs replaced, named as in flat()."""
        fams = {name: dict(dataclasses.asdict(k)) for name, k in self.families.items()}
        shared = {}
        for key, value in values.items():
            head, _, fam = key.partition(".")
            if fam:
                fams[fam][head] = float(value)
            else:
                shared[head] = float(value)
        return dataclasses.replace(self, families={n: FamilyKnobs(**v) for n, v in fams.items()}, **shared,
                                   source=self.source if source is None else source)


def knob_dirs() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("ATTN_DSE_KNOBS", "").split(os.pathsep) if p]
    return extra + [package_dir()]


@functools.lru_cache(maxsize=1)
def package_dir() -> Path:
    return Path(str(resources.files("attn_dse") / "calibration" / "knobs"))


def stored(lineage: tuple[str, ...], implementation: str) -> tuple[dict, Path] | None:
    """The raw knobs of the first stored file along the hardware's lineage, and its path."""
    files, _ = index()
    for name in lineage:
        path = files.get((name, implementation))
        if path is not None:
            raw = _parsed(path, os.stat(path).st_mtime_ns)
            if not isinstance(raw, dict):
                raise AttnDseError("is not a mapping of knobs", where=path,
                                   fix="rewrite it with attn-dse validate HW --calibrate --write")
            return raw, Path(path)
    return None


@functools.lru_cache(maxsize=64)
def _parsed(path: str, mtime_ns: int):
    """Each knob file parsed once per version."""
    return strict_yaml.read(path)


def implementations_stored() -> set[str]:
    """Every attention implementation some hardware has knobs for (knobs of other kernels sit one
    folder down, e.g. gemm/grouped, and are no attention implementation)."""
    return {impl for _, impl in index()[0] if "/" not in impl}


def index() -> tuple[dict[tuple[str, str], str], tuple]:
    """Every stored knob file, (hardware, implementation) -> path (the first directory of
    `knob_dirs` that has it), and a stamp that changes when a file or directory of the store
    does. Listed once per change, checked by a few stats at most every RECHECK_S (a file
    written through `write` is seen at once), not walked per lookup."""
    dirs = tuple(str(d) for d in knob_dirs())
    cached = _INDEX.get(dirs)
    now = time.monotonic()
    if cached is not None and (now - cached[3] < RECHECK_S or _stamp(cached[1]) == cached[2]):
        if now - cached[3] >= RECHECK_S:
            _INDEX[dirs] = cached[:3] + (now,)
        return cached[0], cached[2]
    files: dict[tuple[str, str], str] = {}
    watched = list(dirs)
    for directory in dirs:
        for sub in sorted(_entries(directory, dirs=True)):
            folder = os.path.join(directory, sub)
            watched.append(folder)
            for kind in [""] + sorted(_entries(folder, dirs=True)):  # HW/IMPL.yaml, HW/KIND/IMPL.yaml
                inner = os.path.join(folder, kind) if kind else folder
                if kind:
                    watched.append(inner)
                for name in sorted(_entries(inner, dirs=False)):
                    if name.endswith(".yaml"):
                        path = os.path.join(inner, name)
                        watched.append(path)
                        files.setdefault((sub, f"{kind}/{name[:-5]}" if kind else name[:-5]), path)
    _INDEX[dirs] = (files, tuple(watched), _stamp(watched), now)
    return files, _INDEX[dirs][2]


def _entries(directory: str, dirs: bool) -> list[str]:
    try:
        return [e.name for e in os.scandir(directory) if e.is_dir() == dirs]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _stamp(paths) -> tuple:
    out = []
    for path in paths:
        try:
            out.append(os.stat(path).st_mtime_ns)
        except OSError:
            out.append(None)
    return tuple(out)


_INDEX: dict[tuple[str, ...], tuple] = {}  # dirs -> (files, watched paths, their stamp, when checked)
RECHECK_S = 0.1  # how stale the listing may be for a file changed behind our back


def merge(defaults: Knobs, raw: dict, where: str) -> Knobs:
    """Stored values over the defaults; unknown names are refused."""
    known = {"hardware", "implementation", "source", "fitted_on", "families", "measured", "execution", "profile",
             *SHARED_FIELDS}
    for key in raw:
        if key not in known:
            raise AttnDseError(f"{key}: unknown knob", where=where, fix=did_you_mean(str(key), known))
    values: dict[str, float] = {}
    for fam, entry in (raw.get("families") or {}).items():
        if fam not in defaults.families:
            raise AttnDseError(f"families.{fam}: unknown kernel family", where=where,
                               fix=did_you_mean(str(fam), defaults.families))
        for key, value in (entry or {}).items():
            if key not in FAMILY_FIELDS + OWN_FIELDS:
                raise AttnDseError(f"families.{fam}.{key}: unknown knob", where=where,
                                   fix=did_you_mean(str(key), FAMILY_FIELDS + OWN_FIELDS))
            values[f"{key}.{fam}"] = _number(value, where, f"families.{fam}.{key}")
    for key in SHARED_FIELDS:
        if key in raw:
            values[key] = _number(raw[key], where, key)
    execution = raw.get("execution", "fused")
    if execution not in ("fused", "unfused"):
        raise AttnDseError(f"execution: {execution!r} is neither fused nor unfused", where=where,
                           fix="fused: one attention kernel; unfused: QK^T, softmax and PV as kernels of their own")
    measured = raw.get("measured") or []
    unknown = [f for f in measured if f not in defaults.families] if isinstance(measured, list) else [measured]
    if unknown:
        raise AttnDseError(f"measured: {unknown[0]!r} is not a kernel family", where=where,
                           fix="measured: a list of the families fitted on measurements, e.g. [prefill, decode]")
    knobs = defaults.with_values(values, source=str(raw.get("source", where)))
    return dataclasses.replace(knobs, fused=execution == "fused", profile=_profile(raw.get("profile") or {}, where),
                               measured=frozenset(measured))


def _profile(raw, where: str) -> Profile:
    if not isinstance(raw, dict):
        raise AttnDseError("profile: is not a mapping", where=where,
                           fix="profile: {decode_block_m: 128, split_block_m: 64, ...}")
    values = {}
    for key, value in raw.items():
        if key == "source":
            values[key] = str(value)
        elif key in PROFILE_FIELDS:
            values[key] = _number(value, where, f"profile.{key}")
        else:
            raise AttnDseError(f"profile.{key}: unknown property", where=where,
                               fix=did_you_mean(str(key), (*PROFILE_FIELDS, "source")))
    return Profile(**values)


def _number(value, where: str, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise AttnDseError(f"{name}: {value!r} is not a non-negative number", where=where,
                           fix="rewrite the file with attn-dse validate HW --calibrate --write")
    return float(value)


def write(path: Path, knobs: Knobs, hardware: str, fitted_on: str, defaults: Knobs | None = None) -> Path:
    """Store the knobs through the YAML dumper (SI units, full precision). Families whose knobs
    are the `defaults` are left out: they stay defaults of the hardware that loads the file (a
    what-if preset extending this one scales them with its own rates)."""
    kept = {name: k for name, k in knobs.families.items()
            if defaults is None or defaults.families.get(name) != k}
    data = {"hardware": hardware, "implementation": knobs.implementation, "source": knobs.source,
            "fitted_on": fitted_on, "execution": "fused" if knobs.fused else "unfused",
            "measured": sorted(knobs.measured),
            **{f: getattr(knobs, f) for f in SHARED_FIELDS},
            "families": {name: {f: v for f, v in dataclasses.asdict(k).items() if v is not None}
                         for name, k in kept.items()}}
    if knobs.profile != Profile():
        data["profile"] = {k: v for k, v in dataclasses.asdict(knobs.profile).items() if v}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# Written by `attn-dse validate --calibrate --write`; SI units.\n"
                    + yaml.safe_dump(data, sort_keys=False, width=1000))
    _INDEX.clear()  # seen by the next lookup, however recent the last check
    return path
