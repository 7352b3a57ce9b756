"""YAML -> Hardware: schema checks, `extends`, unit parsing, clear errors.

Every message names the file, the field and the fix; nothing from here reaches the user as a
traceback (the CLI prints AttnDseError as one line).
"""
from __future__ import annotations

import copy
import difflib
import functools
import math
from importlib import resources
from pathlib import Path
from typing import Any


from attn_dse import strict_yaml
from attn_dse.hardware.spec import SCALE_OUT_KINDS, SCALE_UP_KINDS, Achievable, Hardware, Interconnect, Link, MemoryLevel
from attn_dse.hardware.units import UnitError, parse_quantity
from attn_dse.errors import AttnDseError, did_you_mean

DTYPES = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8", "fp4")

# The schema: a nested dict; leaves name a quantity kind or a python type.
_LEVEL = {"name": "str", "capacity": "bytes", "bandwidth": "bandwidth", "per_core": "bool"}
SCHEMA: dict[str, Any] = {
    "name": "str", "description": "str", "kind": "str", "extends": "str", "aliases": "list",
    "compute": {"cores": "int", "clock": "frequency", "matmul": {d: "flop_rate" for d in DTYPES},
                "vector": "flop_rate", "exp": "op_rate", "mma_rows": "int"},
    "memory": [_LEVEL],
    "interconnect": {"link_bandwidth": "bandwidth", "devices_per_node": "int", "kind": "str",
                     "bus_bandwidth": "bandwidth", "call_latency": "time",
                     "scale_out": {"kind": "str", "bandwidth": "bandwidth", "bus_bandwidth": "bandwidth"}},
    "launch_overhead": "time",
    "achievable": {"matmul": {d: "flop_rate" for d in DTYPES}, "hbm_bandwidth": "bandwidth",
                   "source": "str"},
    "sources": "dict",
}
REQUIRED = ("name", "description", "kind", "compute.cores", "compute.clock", "compute.matmul.bf16",
            "compute.vector", "compute.exp", "memory", "interconnect.link_bandwidth",
            "interconnect.devices_per_node", "launch_overhead")



def preset_dir() -> Path:
    return Path(str(resources.files("attn_dse") / "hw"))


def preset_files() -> dict[str, Path]:
    """Every preset name and alias -> its YAML file."""
    names: dict[str, Path] = {}
    for path in sorted(preset_dir().glob("*.yaml")):
        names[path.stem] = path
        for alias in (_read_yaml(path).get("aliases") or []):
            names[str(alias)] = path
    return names


def preset_names() -> list[str]:
    return sorted(p.stem for p in preset_dir().glob("*.yaml"))


def load_hardware(name_or_path: str | Path) -> Hardware:
    """A preset name ('h100'), or a path to a YAML file ('hw/h20.yaml')."""
    if isinstance(name_or_path, Hardware):
        return name_or_path
    path = _resolve(str(name_or_path))
    raw = _resolved_raw(path, chain=())
    return _build(raw, str(path))


def _resolve(text: str) -> Path:
    path = Path(text)
    if path.suffix in (".yaml", ".yml") or "/" in text or path.exists():
        if not path.is_file():
            raise AttnDseError(f"no such hardware file '{text}'",
                               fix=f"give a preset name ({', '.join(preset_names())}) or a YAML path")
        return path
    own = preset_dir() / f"{text.lower()}.yaml"
    if own.is_file():  # a preset's own name: no need to read every preset for the aliases
        return own
    presets = preset_files()
    if text.lower() in presets:
        return presets[text.lower()]
    raise AttnDseError(f"unknown hardware preset '{text}'",
                       fix=did_you_mean(text.lower(), presets) + "; or give a path to a YAML file")


def _read_yaml(path: Path) -> dict:
    data = copy.deepcopy(_parsed(str(path.resolve()), path.stat().st_mtime_ns, str(path)))
    if not isinstance(data, dict):
        raise AttnDseError("is not a YAML mapping of fields", where=str(path),
                           fix="start with 'name: ...' and 'compute: ...' (see hw/h100.yaml)")
    return data


@functools.lru_cache(maxsize=256)
def _parsed(key: str, mtime_ns: int, where: str):
    """Each file parsed once per version (hw list reads every preset and its parents)."""
    return strict_yaml.read(where)


def _resolved_raw(path: Path, chain: tuple[str, ...]) -> dict:
    """The file's fields merged over those of the preset it `extends`."""
    key = str(path.resolve())
    if key in chain:
        names = " -> ".join(Path(c).stem for c in chain + (key,))
        raise AttnDseError(f"extends: cycle {names}", where=str(path),
                           fix="one of these files must not extend the others")
    raw = _read_yaml(path)
    _check_fields(raw, SCHEMA, str(path), "")
    _check_level_names(raw.get("memory"), str(path))
    parent = raw.get("extends")
    if not parent:
        raw["_lineage"] = [str(raw.get("name", path.stem))]
        return raw
    try:
        parent_path = _resolve(str(parent)) if not str(parent).endswith((".yaml", ".yml")) \
            else (path.parent / str(parent))
    except AttnDseError as exc:
        raise AttnDseError(f"extends: {exc.problem}", where=str(path), fix=exc.fix) from None
    if not parent_path.is_file():
        raise AttnDseError(f"extends: no such file '{parent_path}'", where=str(path),
                           fix=f"a path is relative to this file's folder; or give a preset name ({', '.join(preset_names())})")
    base = _resolved_raw(parent_path, chain + (key,))
    base.pop("aliases", None)  # a child's names are its own
    _check_inherited_levels(raw.get("memory"), base, str(path))
    merged = _merge(base, raw)
    merged.pop("extends", None)
    merged["_lineage"] = [str(raw.get("name", path.stem))] + base["_lineage"]
    _carry_achieved_fractions(base, raw, merged, str(path))
    return merged


def _carry_achieved_fractions(base: dict, raw: dict, merged: dict, where: str) -> None:
    """A preset that changes a datasheet figure (HBM bandwidth, a matmul peak) without measuring
    the new machine keeps the inherited measured ceiling as the same fraction of that figure:
    an H100 with twice the HBM bandwidth reaches twice its measured copy rate."""
    own = raw.get("achievable") or {}
    ach = merged.get("achievable") or {}

    def level_bw(levels):
        return next((lv.get("bandwidth") for lv in levels or [] if isinstance(lv, dict) and lv.get("name") == "hbm"), None)

    def parse(value, kind, name):
        try:
            number = parse_quantity(value, kind)
        except UnitError as exc:
            raise AttnDseError(f"{name}: {exc}", where=where) from None
        if not 0 < number < math.inf:
            raise AttnDseError(f"{name}: {value!r} must be positive and finite", where=where,
                               fix=f"write e.g. {_example(name, kind)}")
        return number

    scaled = []
    new_bw, old_bw = level_bw(raw.get("memory")), level_bw(base.get("memory"))
    if new_bw is not None and old_bw is not None and "hbm_bandwidth" not in own and ach.get("hbm_bandwidth"):
        f = parse(new_bw, "bandwidth", "memory[hbm].bandwidth") / parse(old_bw, "bandwidth", "memory[hbm].bandwidth")
        ach["hbm_bandwidth"] = f"{parse(ach['hbm_bandwidth'], 'bandwidth', 'achievable.hbm_bandwidth') * f!r} B/s"
        scaled.append(f"hbm x{f:.3g}")
    new_mm = (raw.get("compute") or {}).get("matmul") or {}
    old_mm = (base.get("compute") or {}).get("matmul") or {}
    for dtype, value in (ach.get("matmul") or {}).items():
        if dtype in new_mm and dtype in old_mm and dtype not in (own.get("matmul") or {}):
            f = parse(new_mm[dtype], "flop_rate", f"compute.matmul.{dtype}") / parse(old_mm[dtype], "flop_rate", "")
            ach["matmul"][dtype] = f"{parse(value, 'flop_rate', f'achievable.matmul.{dtype}') * f!r} FLOP/s"
            scaled.append(f"matmul.{dtype} x{f:.3g}")
    if scaled:
        ach["source"] = (f"{ach.get('source', '')} -- scaled by {Path(where).name}'s own datasheet figures "
                         f"({', '.join(scaled)}): the measured fraction of the datasheet carries over").strip()


def _check_level_names(levels, where: str) -> None:
    """Each memory level of this file has a name (text), before levels are merged by name."""
    for i, lv in enumerate(levels if isinstance(levels, list) else []):
        name = lv.get("name")
        if name is None or name == "":
            raise AttnDseError(f"memory[{i}].name: missing field", where=where, fix="add e.g. 'name: hbm'")
        if not isinstance(name, str):
            raise AttnDseError(f"memory[{i}].name: {name!r} is not a level name", where=where,
                               fix="write e.g. 'name: hbm'")


def _check_inherited_levels(levels, base: dict, where: str) -> None:
    """A level a child names but its parent lacks is new and must be complete; an incomplete
    one is almost always a misspelt parent level ({name: hmb, bandwidth: ...})."""
    known = [lv.get("name") for lv in base.get("memory") or [] if isinstance(lv, dict)]
    for lv in levels if isinstance(levels, list) else []:
        name = lv["name"]
        missing = [k for k in ("capacity", "bandwidth") if lv.get(k) is None]
        if name not in known and missing:
            raise AttnDseError(f"memory[{name}]: unknown level (the parent {base['_lineage'][0]} has "
                               f"{', '.join(map(str, known))})", where=where,
                               fix=did_you_mean(name, known) + f"; a new level needs {' and '.join(missing)} too")


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if key == "memory" and isinstance(value, list) and isinstance(out.get(key), list):
            levels = {lv.get("name"): dict(lv) for lv in out[key] if isinstance(lv, dict)}
            for lv in value:
                levels[lv.get("name")] = {**levels.get(lv.get("name"), {}), **lv}
            out[key] = list(levels.values())
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _check_fields(raw: dict, schema: dict, where: str, prefix: str) -> None:
    """Unknown fields get a did-you-mean; nested sections are checked recursively."""
    for key, value in raw.items():
        path = f"{prefix}{key}"
        if key not in schema:
            raise AttnDseError(f"{path}: unknown field", where=where, fix=did_you_mean(key, schema))
        sub = schema[key]
        if isinstance(sub, dict) and isinstance(value, dict):
            _check_fields(value, sub, where, path + ".")
        elif isinstance(sub, list) and isinstance(value, list):
            for i, item in enumerate(value):
                if not isinstance(item, dict):
                    raise AttnDseError(f"{path}[{i}]: expected a mapping with {', '.join(sub[0])}",
                                       where=where, fix="write e.g. '- {name: hbm, capacity: 80 GB, bandwidth: 3.35 TB/s}'")
                _check_fields(item, sub[0], where, f"{path}[{item.get('name', i)}].")
        elif isinstance(sub, (dict, list)):
            raise AttnDseError(f"{path}: expected a {'mapping' if isinstance(sub, dict) else 'list'}",
                               where=where, fix="see hw/h100.yaml for the layout")


class _Fields:
    """Typed, located access to a raw mapping: every failure names file and field."""

    def __init__(self, raw: dict, where: str):
        self.raw, self.where = raw, where

    def get(self, path: str, kind: str, default: Any = None, required: bool = False) -> Any:
        node: Any = self.raw
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node or node[part] is None:
                if required:
                    raise AttnDseError(f"{path}: missing field", where=self.where,
                                       fix=f"add it, e.g. {_example(path, kind)}")
                return default
            node = node[part]
        return self.convert(node, path, kind)

    def convert(self, value: Any, path: str, kind: str) -> Any:
        if kind in ("list", "dict"):
            return value
        if kind == "str":
            return str(value)
        if kind == "bool":
            if not isinstance(value, bool):
                raise AttnDseError(f"{path}: {value!r} is not true/false", where=self.where,
                                   fix="write true or false")
            return value
        if kind == "int":
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise AttnDseError(f"{path}: {value!r} is not a positive whole number",
                                   where=self.where, fix="write e.g. 132")
            return value
        if kind == "count":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise AttnDseError(f"{path}: {value!r} is not a non-negative number", where=self.where,
                                   fix="write e.g. 200")
            return float(value)
        if kind == "fraction":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
                raise AttnDseError(f"{path}: {value!r} is not a fraction in (0, 1]",
                                   where=self.where, fix="write e.g. 0.85")
            return float(value)
        try:
            number = parse_quantity(value, kind)
        except UnitError as exc:
            raise AttnDseError(f"{path}: {exc}", where=self.where) from None
        if not math.isfinite(number):
            raise AttnDseError(f"{path}: {value!r} is not finite", where=self.where,
                               fix=f"write e.g. {_example(path, kind)}")
        if number <= 0:
            raise AttnDseError(f"{path}: {value!r} must be positive", where=self.where,
                               fix=f"write e.g. {_example(path, kind)}")
        return number


def _example(path: str, kind: str) -> str:
    from attn_dse.hardware.units import KINDS
    leaf = path.rpartition(".")[2]
    sample = KINDS[kind][2] if kind in KINDS else {"int": "132", "str": "...", "fraction": "0.85"}.get(kind, "...")
    return f"'{leaf}: {sample}'"


def _build(raw: dict, where: str) -> Hardware:
    f = _Fields(raw, where)
    for path in REQUIRED:
        f.get(path, _kind_of(path), required=True)
    kind = f.get("kind", "str")
    if kind not in ("gpu", "tpu"):
        raise AttnDseError(f"kind: '{kind}' is not gpu or tpu", where=where, fix="write 'kind: gpu' or 'kind: tpu'")
    matmul = {d: f.get(f"compute.matmul.{d}", "flop_rate") for d in DTYPES}
    memory = _levels(f, raw.get("memory"), where)
    achievable = Achievable(
        matmul_flop_per_s={d: v for d in DTYPES if (v := f.get(f"achievable.matmul.{d}", "flop_rate"))},
        hbm_bytes_per_s=f.get("achievable.hbm_bandwidth", "bandwidth"),
        source=f.get("achievable.source", "str", ""))
    cores = f.get("compute.cores", "int")
    sources = raw.get("sources") or {}
    if not isinstance(sources, dict):
        raise AttnDseError("sources: expected a mapping of field -> citation", where=where,
                           fix="write e.g. 'sources: {compute.matmul: \"NVIDIA H100 datasheet\"}'")
    _check_source_keys(sources, where)
    return Hardware(
        name=f.get("name", "str"), description=f.get("description", "str"), kind=kind,
        cores=cores, clock_hz=f.get("compute.clock", "frequency"),
        peak_flop_per_s={d: v for d, v in matmul.items() if v},
        vector_flop_per_s=f.get("compute.vector", "flop_rate"),
        exp_per_s=f.get("compute.exp", "op_rate"),
        mma_rows=f.get("compute.mma_rows", "int", 64 if kind == "gpu" else 128),
        memory=memory,
        interconnect=_interconnect(f, where),
        launch_overhead_s=f.get("launch_overhead", "time"),
        achievable=achievable,
        sources={str(k): str(v) for k, v in sources.items()}, path=where,
        lineage=tuple(raw.get("_lineage") or (f.get("name", "str"),)))


def _interconnect(f: _Fields, where: str) -> Interconnect:
    """The links inside a node and, when the preset has them, between nodes."""
    def kind(path, default, allowed):
        value = f.get(path, "str", default, required=default is None)
        if value not in allowed:
            raise AttnDseError(f"{path}: '{value}' is not a known link kind", where=where,
                               fix=did_you_mean(value, allowed) + "; one of " + ", ".join(allowed))
        return value

    scale_out = None
    if f.get("interconnect.scale_out", "dict") is not None:
        scale_out = Link(kind("interconnect.scale_out.kind", None, SCALE_OUT_KINDS),
                         f.get("interconnect.scale_out.bandwidth", "bandwidth", required=True),
                         f.get("interconnect.scale_out.bus_bandwidth", "bandwidth"))
    return Interconnect(
        f.get("interconnect.link_bandwidth", "bandwidth"), f.get("interconnect.devices_per_node", "int"),
        kind=kind("interconnect.kind", "nvswitch", SCALE_UP_KINDS),
        bus_bytes_per_s=f.get("interconnect.bus_bandwidth", "bandwidth"),
        call_latency_s=f.get("interconnect.call_latency", "time", 0.0),
        scale_out=scale_out)


def _kind_of(path: str) -> str:
    node: Any = SCHEMA
    for part in path.split("."):
        node = node[part]
    return "list" if isinstance(node, list) else node if isinstance(node, str) else "dict"


def _levels(f: _Fields, raw_levels: Any, where: str) -> tuple[MemoryLevel, ...]:
    if not isinstance(raw_levels, list) or not raw_levels:
        raise AttnDseError("memory: expected a list of levels", where=where,
                           fix="write e.g. '- {name: hbm, capacity: 80 GB, bandwidth: 3.35 TB/s}'")
    levels = []
    for i, raw in enumerate(raw_levels):
        name = raw.get("name")
        if not name:
            raise AttnDseError(f"memory[{i}].name: missing field", where=where, fix="add e.g. 'name: hbm'")
        sub = _Fields(raw, where)
        levels.append(MemoryLevel(
            name=str(name),
            capacity_bytes=_located(sub, f"memory[{name}]", "capacity", "bytes"),
            bytes_per_s=_located(sub, f"memory[{name}]", "bandwidth", "bandwidth"),
            per_core=_located(sub, f"memory[{name}]", "per_core", "bool", required=False) or False))
    names = [lv.name for lv in levels]
    if "hbm" not in names:
        close = difflib.get_close_matches("hbm", names, n=1, cutoff=0.6)
        raise AttnDseError(f"memory: no level named 'hbm' (levels: {', '.join(names)})", where=where,
                           fix=f"rename '{close[0]}' to 'hbm'" if close else "name the main memory level 'hbm'")
    if not any(lv.per_core for lv in levels):
        raise AttnDseError("memory: no per-core level (SMEM/VMEM)", where=where,
                           fix="add e.g. '- {name: smem, per_core: true, capacity: 228 KiB, bandwidth: 33 TB/s}'")
    return tuple(levels)


def _located(sub: _Fields, prefix: str, key: str, kind: str, required: bool = True):
    try:
        return sub.get(key, kind, required=required)
    except AttnDseError as exc:
        raise AttnDseError(f"{prefix}.{exc.problem}", where=sub.where, fix=exc.fix) from None


def _check_source_keys(sources: dict, where: str) -> None:
    for key in sources:
        head = str(key).split(".")[0]
        if head not in SCHEMA:
            raise AttnDseError(f"sources.{key}: refers to no field", where=where,
                               fix=did_you_mean(head, SCHEMA))
