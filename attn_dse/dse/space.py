"""Design spaces: axes over hardware, variants and their parameters, and the workload, plus
constraints, objectives and the search strategy. Loaded from YAML or built in Python."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attn_dse import strict_yaml
from attn_dse.hardware.spec import SCALABLE
from attn_dse.hardware.units import UnitError, parse_quantity
from attn_dse.errors import AttnDseError, did_you_mean

STRATEGIES = ("grid", "random", "evolve")
_TOP = {"name", "description", "hardware", "variants", "workload", "constraints", "objectives", "strategy",
        "samples", "deployment"}
_WORKLOAD = {"phase", "batch", "context", "seq", "dtype", "scope", "causal", "fused", "mapping"}
MAPPING_KEYS = ("n_split", "block_m", "block_n", "stages")
_DEPLOY = {"devices", "usable_memory", "weights", "weight_dtype"}
_HW_UNITS = {"hbm_bandwidth": "bandwidth", "hbm_capacity": "bytes", "matmul": "flop_rate",
             "interconnect": "bandwidth", "exp": "op_rate", "vector": "flop_rate", "core_memory": "bytes"}
ALIASES = {"hbm.bandwidth": "hbm_bandwidth", "hbm.capacity": "hbm_capacity", "compute.matmul": "matmul",
           "compute.exp": "exp", "compute.vector": "vector", "interconnect.link_bandwidth": "interconnect"}


@dataclass(frozen=True)
class VariantAxis:
    label: str
    variant: str | None = None
    model: str | None = None
    params: dict[str, list] = field(default_factory=dict)
    weight_params: float | None = None  # the whole model's parameters, for the memory check


@dataclass(frozen=True)
class Space:
    name: str = "space"
    description: str = ""
    hardware: tuple[str, ...] = ()
    hardware_axes: dict[str, list] = field(default_factory=dict)  # scaler -> ["x0.5", "4 TB/s", ...]
    variants: tuple[VariantAxis, ...] = ()
    phase: tuple[str, ...] = ("decode",)
    batch: tuple[int, ...] = (1,)
    context: tuple[int, ...] = (4096,)  # decode: cached tokens; prefill/train: prompt length
    seq: tuple[int, ...] = (1,)  # decode: new tokens per step
    dtype: tuple[str, ...] = ("bf16",)
    scope: str = "model"
    causal: bool = True
    fused: bool = True
    mapping: dict | None = None  # pinned kernel choices, e.g. {n_split: 1}; searched when absent
    devices: int | str | None = None  # weights sharded over this many devices ("node": a node)
    usable_memory: float = 0.9  # share of HBM for weights + KV (the rest: activations, runtime)
    weights_bytes: float | None = None
    weight_dtype: str | None = None  # bytes per weight (default: the workload dtype)
    constraints: tuple[dict, ...] = ({"memory": True},)
    objectives: tuple[dict, ...] = ({"minimize": "time_per_token_s"},)
    strategy: str = "grid"
    samples: int = 10000


def load_space(path: str | Path) -> Space:
    path = Path(path)
    if not path.is_file():
        raise AttnDseError(f"no such space file '{path}'", fix="give a YAML file (see spaces/)")
    raw = strict_yaml.read(path)
    if raw is not None and not isinstance(raw, dict):
        raise AttnDseError("is not a YAML mapping of fields", where=str(path),
                           fix="start with 'variants:' and 'workload:' (see spaces/gqa-vs-mla.yaml)")
    return space_from_dict(raw or {}, where=str(path))


def _check_keys(raw: dict, known: set, where: str, prefix: str = "") -> None:
    for key in raw:
        if key not in known:
            raise AttnDseError(f"{prefix}{key}: unknown field", where=where, fix=did_you_mean(str(key), known))


def _listify(value: Any, where: str, name: str) -> list:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise AttnDseError(f"{name}: empty list", where=where, fix="give at least one value")
    return values


def _numbers(value: Any, where: str, name: str) -> tuple:
    """A list of values, or a range {from: 1024, to: 131072, times: 2} / {from, to, step}."""
    if isinstance(value, dict):
        _check_keys(value, {"from", "to", "times", "step"}, where, f"{name}.")
        lo, hi = value.get("from"), value.get("to")
        if lo is None or hi is None or hi < lo:
            raise AttnDseError(f"{name}: empty range {value}", where=where, fix="write e.g. {from: 1024, to: 131072, times: 2}")
        out, x = [], lo
        while x <= hi:
            out.append(x)
            x = x * value["times"] if "times" in value else x + value.get("step", 1)
        return tuple(out)
    values = _listify(value, where, name)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
            raise AttnDseError(f"{name}: {v!r} is not a positive number", where=where, fix=f"e.g. {name}: [1, 8, 64]")
    return tuple(values)


def space_from_dict(raw: dict, where: str = "<space>") -> Space:
    _check_keys(raw, _TOP, where)
    hardware, hw_axes = _hardware(raw.get("hardware"), where)
    wl = raw.get("workload") or {}
    _check_keys(wl, _WORKLOAD, where, "workload.")
    deploy = raw.get("deployment") or {}
    _check_keys(deploy, _DEPLOY, where, "deployment.")
    variants = tuple(_variant(v, i, where) for i, v in enumerate(_listify(raw.get("variants") or [], where, "variants")))
    if not variants:
        raise AttnDseError("variants: none given", where=where, fix="add e.g. '- {variant: gqa, params: {n_heads: 64, n_kv_heads: [1, 8]}}'")
    strategy = raw.get("strategy", "grid")
    if strategy not in STRATEGIES:
        raise AttnDseError(f"strategy: '{strategy}' is unknown", where=where, fix=did_you_mean(str(strategy), STRATEGIES))
    space = Space(
        name=raw.get("name", Path(where).stem), description=raw.get("description", ""),
        hardware=hardware, hardware_axes=hw_axes, variants=variants,
        phase=tuple(_listify(wl.get("phase", "decode"), where, "workload.phase")),
        batch=_numbers(wl.get("batch", 1), where, "workload.batch"),
        context=_numbers(wl.get("context", 4096), where, "workload.context"),
        seq=_numbers(wl.get("seq", 1), where, "workload.seq"),
        dtype=tuple(_listify(wl.get("dtype", "bf16"), where, "workload.dtype")),
        scope=wl.get("scope", "model"), causal=bool(wl.get("causal", True)), fused=bool(wl.get("fused", True)),
        mapping=_mapping(wl.get("mapping"), where),
        devices=deploy.get("devices"), usable_memory=float(deploy.get("usable_memory", 0.9)),
        weights_bytes=_quantity(deploy["weights"], "bytes", where, "deployment.weights") if "weights" in deploy else None,
        weight_dtype=deploy.get("weight_dtype"),
        constraints=tuple(raw.get("constraints", [{"memory": True}]) or ()),  # [] = unconstrained
        objectives=tuple(_listify(raw.get("objectives", [{"minimize": "time_per_token_s"}]), where, "objectives")),
        strategy=strategy, samples=int(raw.get("samples", 10000)))
    for phase in space.phase:
        if phase not in ("prefill", "decode", "train"):
            raise AttnDseError(f"workload.phase: '{phase}' is unknown", where=where, fix="prefill, decode or train")
    if space.scope not in ("core", "layer", "model"):
        raise AttnDseError(f"workload.scope: '{space.scope}' is unknown", where=where, fix="core, layer or model")
    from attn_dse.dse.constraints import check_spec
    check_spec(space, where)
    return space


def _mapping(raw, where: str) -> dict | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise AttnDseError("workload.mapping: expected a mapping", where=where, fix="e.g. 'mapping: {n_split: 1}'")
    _check_keys(raw, set(MAPPING_KEYS), where, "workload.mapping.")
    return {k: float(v) for k, v in raw.items()}


def _quantity(value, kind, where, name) -> float:
    try:
        return parse_quantity(value, kind)
    except UnitError as exc:
        raise AttnDseError(f"{name}: {exc}", where=where) from None


def _hardware(raw, where) -> tuple[tuple[str, ...], dict]:
    if raw is None:
        return (), {}
    if isinstance(raw, (str, list)):
        return tuple(_listify(raw, where, "hardware")), {}
    if not isinstance(raw, dict):
        raise AttnDseError("hardware: expected a list of presets or a mapping", where=where,
                           fix="write e.g. 'hardware: {presets: [h20, h100], hbm_bandwidth: [x0.5, x1, x2]}'")
    presets = tuple(_listify(raw.get("presets", []), where, "hardware.presets")) if "presets" in raw else ()
    axes = {}
    for key, values in raw.items():
        if key == "presets":
            continue
        name = ALIASES.get(key, key)
        if name not in SCALABLE:
            raise AttnDseError(f"hardware.{key}: unknown axis", where=where,
                               fix=did_you_mean(key, list(SCALABLE) + list(ALIASES)))
        vals = _listify(values, where, f"hardware.{key}")
        for v in vals:
            _hw_value(name, v, where)
        axes[name] = vals
    return presets, axes


def _hw_value(name: str, value, where: str) -> tuple[str, float]:
    """'x0.5' -> ('scale', 0.5); '4 TB/s' -> ('absolute', 4e12)."""
    if isinstance(value, str) and value.strip().startswith("x"):
        try:
            f = float(value.strip()[1:])
        except ValueError:
            f = -1
        if f <= 0:
            raise AttnDseError(f"hardware.{name}: '{value}' is not a scale", where=where, fix="write e.g. x0.5 or x2")
        return "scale", f
    return "absolute", _quantity(value, _HW_UNITS[name], where, f"hardware.{name}")


def _variant(raw, i, where) -> VariantAxis:
    if isinstance(raw, str):
        raw = {"model": raw} if raw in _model_names() else {"variant": raw}
    if not isinstance(raw, dict):
        raise AttnDseError(f"variants[{i}]: expected a mapping", where=where, fix="write e.g. '- {variant: gqa, params: {...}}'")
    _check_keys(raw, {"variant", "model", "params", "label", "weight_params"}, where, f"variants[{i}].")
    if not raw.get("variant") and not raw.get("model"):
        raise AttnDseError(f"variants[{i}]: needs 'variant' or 'model'", where=where, fix="e.g. variant: gqa")
    params = {k: _listify(v, where, f"variants[{i}].params.{k}") for k, v in (raw.get("params") or {}).items()}
    label = raw.get("label") or raw.get("model") or raw.get("variant")
    weights = raw.get("weight_params")
    try:  # YAML reads 70.6e9 (no sign in the exponent) as text
        weights = None if weights is None else float(weights)
    except ValueError:
        raise AttnDseError(f"variants[{i}].weight_params: {weights!r} is not a number", where=where,
                           fix="write the parameter count, e.g. 70.6e9") from None
    axis = VariantAxis(label, raw.get("variant"), raw.get("model"), params, weights)
    _check_variant(axis, where, i)
    return axis


def _check_variant(axis: VariantAxis, where: str, i: int) -> None:
    """Build the workload at the first value of every axis, so bad names fail now."""
    from attn_dse.workloads.registry import attention
    first = {k: v[0] for k, v in axis.params.items()}
    try:
        attention.from_model(axis.model, **first) if axis.model else attention(axis.variant, **first)
    except AttnDseError as exc:
        raise AttnDseError(f"variants[{i}]: {exc.problem}", where=where, fix=exc.fix) from None


def _model_names() -> list[str]:
    from attn_dse.workloads.models import model_names
    return model_names()


def hardware_variants(space: Space, base_names: tuple[str, ...]):
    """Every hardware point of the space: (label, Hardware)."""
    import itertools

    import dataclasses

    from attn_dse.hardware.loader import load_hardware
    names = base_names or space.hardware  # HW on the command line overrides the space's list
    if not names:
        raise AttnDseError("no hardware given", fix="pass HW on the command line or list it under 'hardware:'")
    keys = list(space.hardware_axes)
    for name in names:
        base = load_hardware(name)
        for combo in itertools.product(*[space.hardware_axes[k] for k in keys]):
            hw, tags = base, []
            for key, value in zip(keys, combo):
                how, number = _hw_value(key, value, "<space>")
                factor = number if how == "scale" else number / _current(base, key)
                hw = hw.scaled(**{key: factor})
                tags.append(f"{key}={value}")
            label = base.name + (f"[{','.join(tags)}]" if tags else "")
            yield label, dataclasses.replace(hw, name=label)


def _current(hw, key: str) -> float:
    return {"hbm_bandwidth": hw.hbm.bytes_per_s, "hbm_capacity": hw.hbm.capacity_bytes,
            "matmul": hw.peak_flop_per_s["bf16"], "interconnect": hw.interconnect.link_bytes_per_s,
            "exp": hw.exp_per_s, "vector": hw.vector_flop_per_s,
            "core_memory": hw.core_memory.capacity_bytes}[key]
