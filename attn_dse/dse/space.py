"""Design spaces: axes over hardware, variants and their parameters, and the workload, plus
constraints, objectives and the search strategy. Loaded from YAML or built in Python.

Every key and value is checked here, before anything is evaluated: an error names the file,
the dotted key (with the list index of a bad element, and only that element) and the fix.
`grid_size` counts the points of a grid up front, so a space too large to evaluate is refused
with its count instead of filling memory."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attn_dse import strict_yaml
from attn_dse.hardware.spec import SCALABLE
from attn_dse.hardware.units import KINDS, UnitError, parse_quantity
from attn_dse.errors import AttnDseError, did_you_mean
from attn_dse.workloads.shape import DTYPE_BYTES, PHASES, SCOPES

STRATEGIES = ("grid", "random", "evolve")
_TOP = {"name", "description", "hardware", "variants", "workload", "constraints", "objectives", "strategy",
        "samples", "deployment", "parallel"}
_WORKLOAD = {"phase", "batch", "context", "seq", "dtype", "kv_dtype", "kernel", "scope", "causal", "fused", "mapping"}
MAPPING_KEYS = ("n_split", "block_m", "block_n", "stages")
_DEPLOY = {"devices", "usable_memory", "weights", "weight_dtype"}
_HW_UNITS = {"hbm_bandwidth": "bandwidth", "hbm_capacity": "bytes", "matmul": "flop_rate",
             "interconnect": "bandwidth", "exp": "op_rate", "vector": "flop_rate", "core_memory": "bytes"}
MAX_POINTS = 100_000_000  # a grid above this is refused (sample it instead)
MAX_AXIS_VALUES = 1_000_000  # values one axis may hold (a longer range is a typo: widen its step)
MAX_NUMBER = 2.0**53  # float64 holds every whole number up to here; larger values are refused
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
    kv_dtype: tuple = (None,)  # KV-cache formats (fp8, int4, a bit width); None = the dtype
    kernel: tuple[str, ...] = ("triton",)  # implementations whose knobs time attention; auto = fastest known
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
    parallel: tuple[dict, ...] = ()  # splits over devices: {tp, cp, nodes, cp_scheme}; () = one device
    source: str = "<space>"  # the file it was read from, for messages


def load_space(path: str | Path, max_points: int | None = None) -> Space:
    """Read and check a space file; with `max_points`, also refuse a grid above it (callers
    that may still switch the strategy to sampling check later, with `check_grid`)."""
    path = Path(path)
    if not path.is_file():
        raise AttnDseError(f"no such space file '{path}'", fix="give a YAML file (see spaces/)")
    raw = strict_yaml.read(path)
    if raw is not None and not isinstance(raw, dict):
        raise AttnDseError("is not a YAML mapping of fields", where=str(path),
                           fix="start with 'variants:' and 'workload:' (see spaces/gqa-vs-mla.yaml)")
    return space_from_dict(raw or {}, where=str(path), max_points=max_points)


def grid_size(space: Space, n_hardware: int | None = None) -> int:
    """Points of the space's full grid, without building it: per hardware point, the sum over
    variant entries of (string-parameter combinations x numeric-parameter values x dtypes x
    the sum over phases of batch x context, x seq in decode). `n_hardware` is the number of
    hardware points (base presets x what-if values); None counts the space's own presets (at
    least one: HW from the command line) times its hardware axes."""
    if n_hardware is None:
        n_hardware = max(len(space.hardware), 1) * math.prod(len(v) for v in space.hardware_axes.values())
    per_phase = sum(len(space.batch) * len(space.context) * (len(space.seq) if phase == "decode" else 1)
                    for phase in space.phase)
    per_entry = sum(math.prod(len(v) for v in entry.params.values()) for entry in space.variants)
    return int(n_hardware) * per_entry * len(space.dtype) * len(space.kv_dtype) * len(space.kernel) * per_phase * max(len(space.parallel), 1)


def check_grid(space: Space, max_points: int = MAX_POINTS, n_hardware: int | None = None) -> int:
    """The grid size, or an error when a grid strategy would evaluate more than `max_points`."""
    n = grid_size(space, n_hardware)
    if space.strategy == "grid" and n > max_points:
        raise AttnDseError(f"the grid has {n:,} points, more than the limit of {max_points:,}", where=space.source,
                           fix="sample it with --strategy random --samples N (or 'strategy: random' and "
                               "'samples: N' in the file), or narrow the axes")
    return n


def space_from_dict(raw: dict, where: str = "<space>", max_points: int | None = None) -> Space:
    _check_keys(raw, _TOP, where)
    hardware, hw_axes = _hardware(raw.get("hardware"), where)
    wl = _section(raw, "workload", where)
    _check_keys(wl, _WORKLOAD, where, "workload.")
    deploy = _section(raw, "deployment", where)
    _check_keys(deploy, _DEPLOY, where, "deployment.")
    variants = tuple(_variant(v, i, where) for i, v in enumerate(_list(raw.get("variants") or [], where, "variants")))
    if not variants:
        raise AttnDseError("variants: none given", where=where, fix="add e.g. '- {variant: gqa, params: {n_heads: 64, n_kv_heads: [1, 8]}}'")
    strategy = raw.get("strategy", "grid")
    strategy = _choices(strategy, STRATEGIES, where, "strategy", one=True)[0]
    space = Space(
        name=_text(raw.get("name", Path(where).stem), where, "name"),
        description=_text(raw.get("description", ""), where, "description"),
        hardware=hardware, hardware_axes=hw_axes, variants=variants,
        phase=_choices(wl.get("phase", "decode"), PHASES, where, "workload.phase"),
        batch=_numbers(wl.get("batch", 1), where, "workload.batch"),
        context=_numbers(wl.get("context", 4096), where, "workload.context"),
        seq=_numbers(wl.get("seq", 1), where, "workload.seq"),
        dtype=_choices(wl.get("dtype", "bf16"), tuple(DTYPE_BYTES), where, "workload.dtype"),
        kv_dtype=_kv_formats(wl.get("kv_dtype"), where),
        kernel=_kernels(wl.get("kernel", "triton"), where),
        scope=_choices(wl.get("scope", "model"), SCOPES, where, "workload.scope", one=True)[0],
        causal=_flag(wl.get("causal", True), where, "workload.causal"),
        fused=_flag(wl.get("fused", True), where, "workload.fused"),
        mapping=_mapping(wl.get("mapping"), where),
        devices=_devices(deploy.get("devices"), where),
        usable_memory=_fraction(deploy.get("usable_memory", 0.9), where, "deployment.usable_memory"),
        weights_bytes=_quantity(deploy["weights"], "bytes", where, "deployment.weights") if "weights" in deploy else None,
        weight_dtype=None if deploy.get("weight_dtype") is None else
        _choices(deploy["weight_dtype"], tuple(DTYPE_BYTES), where, "deployment.weight_dtype", one=True)[0],
        constraints=tuple(_list(raw.get("constraints", [{"memory": True}]) or [], where, "constraints",
                                empty_ok=True)),  # [] = unconstrained
        objectives=tuple(_list(raw.get("objectives", [{"minimize": "time_per_token_s"}]), where, "objectives")),
        strategy=strategy, samples=_count(raw.get("samples", 10000), where, "samples"),
        parallel=_parallel(raw.get("parallel"), where), source=where)
    from attn_dse.dse.constraints import check_spec
    check_spec(space, where)
    if max_points is not None:
        check_grid(space, max_points)
    return space


def _parallel(raw, where: str) -> tuple[dict, ...]:
    """parallel: {devices: 8, nodes: 1, cp_scheme: [ring, ulysses]} -> every tp x cp = devices
    split; or explicit axes {tp: [...], cp: [...], nodes: [...], cp_scheme: [...]} (their grid)."""
    import itertools
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise AttnDseError(f"parallel: {_show(raw)} is not a mapping", where=where,
                           fix="write e.g. 'parallel: {devices: 8, cp_scheme: [ring, ulysses]}'")
    _check_keys(raw, {"devices", "tp", "cp", "nodes", "cp_scheme"}, where, "parallel.")
    if "devices" in raw and ("tp" in raw or "cp" in raw):
        raise AttnDseError("parallel: give devices (every split) or tp/cp axes, not both", where=where,
                           fix="e.g. 'parallel: {devices: 8}' or 'parallel: {tp: [1, 8], cp: [1, 8]}'")
    nodes = _numbers(raw.get("nodes", 1), where, "parallel.nodes")
    schemes = _choices(raw.get("cp_scheme", "ring"), ("ring", "ulysses"), where, "parallel.cp_scheme")
    if "devices" in raw:
        n = _count(raw["devices"], where, "parallel.devices")
        pairs = [(t, n // t) for t in range(1, n + 1) if n % t == 0]
    else:
        pairs = list(itertools.product(_numbers(raw.get("tp", 1), where, "parallel.tp"),
                                       _numbers(raw.get("cp", 1), where, "parallel.cp")))
    out = []
    for (tp, cp), m, scheme in itertools.product(pairs, nodes, schemes):
        if cp == 1 and scheme != schemes[0]:
            continue  # the scheme only matters with context parallelism
        out.append({"tp": int(tp), "cp": int(cp), "nodes": int(m), "cp_scheme": scheme})
    return tuple(out)


def _check_keys(raw: dict, known: set, where: str, prefix: str = "") -> None:
    for key in raw:
        if key not in known:
            raise AttnDseError(f"{prefix}{key}: unknown field", where=where, fix=did_you_mean(str(key), known))


def _section(raw: dict, name: str, where: str) -> dict:
    value = raw.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise AttnDseError(f"{name}: {_show(value)} is not a mapping of fields", where=where,
                           fix=f"write e.g. '{name}: {_EXAMPLES[name]}'")
    return value


_EXAMPLES = {"workload": "{phase: decode, batch: [1, 16], context: [4096, 32768]}",
             "deployment": "{devices: node, weight_dtype: fp8}"}


def _show(value: Any) -> str:
    """A value for a message, cut short (a long list is not dumped)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _list(value: Any, where: str, name: str, empty_ok: bool = False) -> list:
    """A list of values; one value stands for a list of one, but a mapping is an error."""
    if isinstance(value, dict):
        raise AttnDseError(f"{name}: expected a list, got a mapping", where=where,
                           fix=f"write each entry as a list item: '{name}:' then '  - ...' lines")
    values = value if isinstance(value, list) else [value]
    if not values and not empty_ok:
        raise AttnDseError(f"{name}: empty list", where=where, fix="give at least one value")
    return values


def _text(value: Any, where: str, name: str) -> str:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise AttnDseError(f"{name}: {_show(value)} is not text", where=where, fix=f"write e.g. '{name}: my-space'")
    return str(value)


def _kernels(value: Any, where: str) -> tuple[str, ...]:
    """workload.kernel: one implementation name or a list (checked against each hardware's
    knobs when the sweep runs: which are known depends on the hardware)."""
    names = _list(value, where, "workload.kernel")
    for i, v in enumerate(names):
        if not isinstance(v, str) or not v.strip():
            at = "workload.kernel" if not isinstance(value, list) else f"workload.kernel[{i}]"
            raise AttnDseError(f"{at}: {_show(v)} is not an implementation name", where=where,
                               fix="e.g. triton, cudnn, flash, flex, eager or auto")
    return tuple(names)


def _kv_formats(value: Any, where: str) -> tuple:
    """workload.kv_dtype: one format or a list (fp8, int4, a bit width); absent = the dtype."""
    if value is None:
        return (None,)
    from attn_dse.workloads.shape import kv_format
    out = []
    for i, v in enumerate(_list(value, where, "workload.kv_dtype")):
        try:
            out.append(kv_format(v))
        except AttnDseError as exc:
            at = "workload.kv_dtype" if not isinstance(value, list) else f"workload.kv_dtype[{i}]"
            raise AttnDseError(f"{at}: {_show(v)} is not a KV format", where=where, fix=exc.fix) from None
    return tuple(out)


def _choices(value: Any, known: tuple, where: str, name: str, one: bool = False) -> tuple:
    if one and isinstance(value, (list, dict)):
        raise AttnDseError(f"{name}: {_show(value)} is not one name", where=where, fix="one of " + ", ".join(known))
    values = _list(value, where, name)
    for i, v in enumerate(values):
        at = name if not isinstance(value, list) else f"{name}[{i}]"
        if not isinstance(v, str) or v not in known:
            hint = did_you_mean(v, known) if isinstance(v, str) else ""
            raise AttnDseError(f"{at}: {_show(v)} is unknown", where=where,
                               fix=(f"{hint} " if hint.startswith("did") else "") + "use one of " + ", ".join(known))
    return tuple(values)


def _flag(value: Any, where: str, name: str) -> bool:
    if not isinstance(value, bool):
        raise AttnDseError(f"{name}: {_show(value)} is not true or false", where=where, fix="write true or false")
    return value


def _finite(v: Any, where: str, name: str, what: str, example: str) -> float:
    """One number (not a bool, not text), finite and at most 2^53 in size."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise AttnDseError(f"{name}: {_show(v)} is not {what}", where=where, fix=f"write e.g. {example}")
    if not math.isfinite(v):
        raise AttnDseError(f"{name}: {v!r} is not finite", where=where, fix=f"write e.g. {example}")
    if abs(v) > MAX_NUMBER:
        raise AttnDseError(f"{name}: {v!r} is too large (the limit is 2^53)", where=where, fix=f"write e.g. {example}")
    return v


def _count(value: Any, where: str, name: str) -> int:
    v = _finite(value, where, name, "a positive whole number", f"'{name}: 5000'")
    if v <= 0 or v != int(v):
        raise AttnDseError(f"{name}: {v!r} is not a positive whole number", where=where, fix=f"write e.g. '{name}: 5000'")
    return int(v)


def _fraction(value: Any, where: str, name: str) -> float:
    example = f"'{name.rpartition('.')[2]}: 0.9'"
    v = _finite(value, where, name, "a fraction in (0, 1]", example)
    if not 0 < v <= 1:
        raise AttnDseError(f"{name}: {v!r} is not a fraction in (0, 1]", where=where, fix=f"write e.g. {example}")
    return float(v)


def _devices(value: Any, where: str) -> int | str | None:
    if value is None or value == "node":
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise AttnDseError(f"deployment.devices: {_show(value)} is not a positive whole number or 'node'", where=where,
                           fix="write e.g. 'devices: 8', or 'devices: node' for the devices of one node")
    return value


def _numbers(value: Any, where: str, name: str) -> tuple:
    """Positive whole numbers: a list, one value, or a range {from: 1024, to: 131072, times: 2}
    / {from: 1, to: 64, step: 8} (step 1 when neither is given)."""
    if isinstance(value, dict):
        values = _range(value, where, name)
    else:
        values = _list(value, where, name)
        if len(values) > MAX_AXIS_VALUES:
            raise AttnDseError(f"{name}: {len(values):,} values, more than {MAX_AXIS_VALUES:,}", where=where,
                               fix="give fewer values (or sample the space: --strategy random)")
    example = f"'{name.rpartition('.')[2]}: [1, 8, 64]'"
    for i, v in enumerate(values):
        at = f"{name}[{i}]" if isinstance(value, list) else name
        v = _finite(v, where, at, "a positive number", example)
        if v <= 0 or v != int(v):
            what = "a positive number" if v <= 0 else "a whole number"
            raise AttnDseError(f"{at}: {v!r} is not {what}", where=where, fix=f"write e.g. {example}")
    return tuple(values)


def _range(value: dict, where: str, name: str) -> list:
    _check_keys(value, {"from", "to", "times", "step"}, where, f"{name}.")
    if "times" in value and "step" in value:
        raise AttnDseError(f"{name}: give times or step, not both", where=where,
                           fix="e.g. {from: 1024, to: 131072, times: 2} or {from: 1, to: 64, step: 8}")
    example = "{from: 1024, to: 131072, times: 2}"
    for key in ("from", "to"):
        if value.get(key) is None:
            raise AttnDseError(f"{name}.{key}: missing", where=where, fix=f"write e.g. {example}")
    lo = _finite(value["from"], where, f"{name}.from", "a number", example)
    hi = _finite(value["to"], where, f"{name}.to", "a number", example)
    if lo <= 0:
        raise AttnDseError(f"{name}.from: {lo!r} must be > 0", where=where, fix=f"write e.g. {example}")
    if hi < lo:
        raise AttnDseError(f"{name}: empty range (from {lo!r} to {hi!r})", where=where, fix=f"write e.g. {example}")
    if "times" in value:
        times = _finite(value["times"], where, f"{name}.times", "a number", example)
        if times <= 1:
            raise AttnDseError(f"{name}.times: {times!r} must be > 1", where=where, fix=f"write e.g. {example}")
        n = math.floor(math.log(hi / lo) / math.log(times) + 1e-9) + 1
        step = None
    else:
        step = _finite(value.get("step", 1), where, f"{name}.step", "a number", "{from: 1, to: 64, step: 8}")
        if step <= 0:
            raise AttnDseError(f"{name}.step: {step!r} must be > 0", where=where, fix="write e.g. {from: 1, to: 64, step: 8}")
        n = math.floor((hi - lo) / step + 1e-9) + 1
    if n > MAX_AXIS_VALUES:
        raise AttnDseError(f"{name}: the range holds {n:,} values, more than {MAX_AXIS_VALUES:,}", where=where,
                           fix="use a larger step or times (or sample the space: --strategy random)")
    out = [lo + i * step if step is not None else lo * times**i for i in range(n)]
    return [v for v in out if v <= hi * (1 + 1e-12)]


def _mapping(raw, where: str) -> dict | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise AttnDseError("workload.mapping: expected a mapping", where=where, fix="e.g. 'mapping: {n_split: 1}'")
    _check_keys(raw, set(MAPPING_KEYS), where, "workload.mapping.")
    out = {}
    for key, v in raw.items():
        v = _finite(v, where, f"workload.mapping.{key}", "a positive whole number", f"'{key}: 1'")
        if v <= 0 or v != int(v):
            raise AttnDseError(f"workload.mapping.{key}: {v!r} is not a positive whole number", where=where,
                               fix=f"write e.g. '{key}: 1'")
        out[key] = float(v)
    return out


def _quantity(value, kind, where, name) -> float:
    try:
        number = parse_quantity(value, kind)
    except UnitError as exc:
        raise AttnDseError(f"{name}: {exc}", where=where) from None
    if not math.isfinite(number) or number <= 0:
        raise AttnDseError(f"{name}: {_show(value)} is not a positive finite quantity", where=where,
                           fix=f"write e.g. \"{KINDS[kind][2]}\"")
    return number


def _hardware(raw, where) -> tuple[tuple[str, ...], dict]:
    if raw is None:
        return (), {}
    if isinstance(raw, (str, list)):
        return _presets(raw, where, "hardware"), {}
    if not isinstance(raw, dict):
        raise AttnDseError("hardware: expected a list of presets or a mapping", where=where,
                           fix="write e.g. 'hardware: {presets: [h20, h100], hbm_bandwidth: [x0.5, x1, x2]}'")
    presets = _presets(raw["presets"], where, "hardware.presets") if "presets" in raw else ()
    axes = {}
    for key, values in raw.items():
        if key == "presets":
            continue
        name = ALIASES.get(key, key)
        if name not in SCALABLE:
            raise AttnDseError(f"hardware.{key}: unknown axis", where=where,
                               fix=did_you_mean(str(key), list(SCALABLE) + list(ALIASES)))
        vals = _list(values, where, f"hardware.{key}")
        for i, v in enumerate(vals):
            _hw_value(name, v, where, f"hardware.{key}" + (f"[{i}]" if isinstance(values, list) else ""))
        axes[name] = vals
    return presets, axes


def _presets(raw, where: str, name: str) -> tuple[str, ...]:
    """Preset names or YAML paths, each loaded now so a typo fails before the sweep starts."""
    from attn_dse.hardware.loader import load_hardware
    values = _list(raw, where, name)
    for i, v in enumerate(values):
        at = f"{name}[{i}]" if isinstance(raw, list) else name
        if not isinstance(v, str):
            raise AttnDseError(f"{at}: {_show(v)} is not a preset name", where=where, fix="write e.g. h100 or hw/h20.yaml")
        try:
            load_hardware(v)
        except AttnDseError as exc:
            raise AttnDseError(f"{at}: {exc}", where=where) from None
    return tuple(values)


def _hw_value(name: str, value, where: str, key: str | None = None) -> tuple[str, float]:
    """'x0.5' -> ('scale', 0.5); '4 TB/s' -> ('absolute', 4e12)."""
    key = key or f"hardware.{name}"
    if isinstance(value, str) and value.strip().startswith("x"):
        try:
            f = float(value.strip()[1:])
        except ValueError:
            f = -1
        if not (0 < f <= MAX_NUMBER):
            raise AttnDseError(f"{key}: '{value}' is not a scale", where=where, fix="write e.g. x0.5 or x2")
        return "scale", f
    return "absolute", _quantity(value, _HW_UNITS[name], where, key)


def _variant(raw, i, where) -> VariantAxis:
    if isinstance(raw, str):
        raw = {"model": raw} if raw in _model_names() else {"variant": raw}
    if not isinstance(raw, dict):
        raise AttnDseError(f"variants[{i}]: expected a mapping", where=where, fix="write e.g. '- {variant: gqa, params: {...}}'")
    _check_keys(raw, {"variant", "model", "params", "label", "weight_params"}, where, f"variants[{i}].")
    for key in ("variant", "model", "label"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise AttnDseError(f"variants[{i}].{key}: {_show(raw[key])} is not text", where=where,
                               fix=f"write e.g. '{key}: {'llama-3-70b' if key == 'model' else 'gqa'}'")
    if not raw.get("variant") and not raw.get("model"):
        raise AttnDseError(f"variants[{i}]: needs 'variant' or 'model'", where=where, fix="e.g. variant: gqa")
    params = raw.get("params") or {}
    if not isinstance(params, dict):
        raise AttnDseError(f"variants[{i}].params: {_show(params)} is not a mapping", where=where,
                           fix="write e.g. 'params: {n_heads: 64, n_kv_heads: [1, 8]}'")
    for k in params:
        if not isinstance(k, str) or not k.isidentifier() or k == "name":  # `name` would be the preset's
            raise AttnDseError(f"variants[{i}].params.{k}: unknown parameter", where=where,
                               fix="attn-dse variants lists each variant's parameters")
    params = {k: _param_values(v, where, f"variants[{i}].params.{k}") for k, v in params.items()}
    label = raw.get("label") or raw.get("model") or raw.get("variant")
    weights = raw.get("weight_params")
    try:  # YAML reads 70.6e9 (no sign in the exponent) as text
        weights = None if weights is None else float(weights)
    except (TypeError, ValueError):
        weights = math.nan
    if weights is not None and not (0 < weights <= MAX_NUMBER):
        raise AttnDseError(f"variants[{i}].weight_params: {_show(raw.get('weight_params'))} is not a number",
                           where=where, fix="write the parameter count, e.g. 70.6e9")
    axis = VariantAxis(label, raw.get("variant"), raw.get("model"), params, weights)
    _check_variant(axis, where, i)
    return axis


def _param_values(value, where: str, name: str) -> list:
    """A parameter's values: numbers (finite) or names; no nested lists or mappings."""
    if isinstance(value, dict):
        raise AttnDseError(f"{name}: {_show(value)} is not a value or a list of values", where=where,
                           fix=f"write e.g. '{name.rpartition('.')[2]}: [1, 8]'")
    values = _list(value, where, name)
    for j, v in enumerate(values):
        at = f"{name}[{j}]" if isinstance(value, list) else name
        if isinstance(v, (list, dict)):
            raise AttnDseError(f"{at}: {_show(v)} is not one value", where=where, fix="list plain values, e.g. [1, 8]")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            _finite(v, where, at, "a number", "[1, 8]")
    return values


def _check_variant(axis: VariantAxis, where: str, i: int) -> None:
    """Build the workload at every value of each axis (the others at their first), so a bad
    value fails now, named by its axis and index; then every combination of the numeric axes
    at once (what the grid will evaluate), when there are not too many."""
    import itertools

    import numpy as np
    from attn_dse.workloads.registry import attention

    def build(params, at):
        try:
            attention.from_model(axis.model, **params) if axis.model else attention(axis.variant, **params)
        except AttnDseError as exc:
            raise AttnDseError(f"{at}: {exc.problem}", where=where, fix=exc.fix) from None

    first = {k: v[0] for k, v in axis.params.items()}
    build(first, f"variants[{i}]")
    for key, values in axis.params.items():
        for j, v in enumerate(values[1:], start=1):
            build({**first, key: v}, f"variants[{i}].params.{key}[{j}]")
    numeric = {k: v for k, v in axis.params.items() if len(v) > 1 and not any(isinstance(x, str) for x in v)}
    if len(numeric) > 1 and math.prod(len(v) for v in numeric.values()) <= 100_000:
        grid = np.meshgrid(*[np.asarray(v, dtype=np.float64) for v in numeric.values()], indexing="ij")
        build({**first, **{k: g.ravel() for k, g in zip(numeric, grid)}},
              f"variants[{i}].params (a combination of {', '.join(numeric)})")


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
