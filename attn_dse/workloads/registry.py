"""The variant registry: each variant registers itself with a name and a parameter schema.

`attention("gqa", n_heads=32, n_kv_heads=8, head_dim=128)` returns a `Workload`: the variant
plus checked parameters (scalars, or numpy arrays for vectorized sweeps).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from attn_dse.errors import AttnDseError, did_you_mean
from attn_dse.workloads import ops as O
from attn_dse.workloads.kernel_spec import KernelSpec
from attn_dse.workloads.shape import SCOPES, Shape, make_shape

REQUIRED = object()
_REGISTRY: dict[str, type["Variant"]] = {}


@dataclass(frozen=True)
class Param:
    name: str
    kind: type = int
    default: Any = REQUIRED
    doc: str = ""
    choices: tuple = ()
    minimum: float | None = 1  # for numbers


class Variant:
    name: ClassVar[str]
    summary: ClassVar[str] = ""
    params: ClassVar[tuple[Param, ...]] = ()
    common: ClassVar[tuple[Param, ...]] = (
        Param("d_model", int, None, "model width (default n_heads*head_dim)"),
        Param("n_layers", int, None, "layers, for scope=model"),
    )

    def schema(self) -> dict[str, Param]:
        return {p.name: p for p in self.params + self.common}

    def schema_for(self, given: Mapping[str, Any]) -> dict[str, Param]:
        """The schema for these given parameters (CLA's depends on its base)."""
        return self.schema()

    def check(self, p: Mapping[str, Any]) -> None:
        """Cross-parameter rules; raise AttnDseError naming the parameter and the fix."""

    def resolve(self, p: dict) -> dict:
        """Fill derived defaults (e.g. d_model); called after defaults are applied."""
        return p

    def layer_ops(self, p: Mapping[str, Any], s: Shape) -> list[O.Op]:
        raise NotImplementedError

    def core_ops(self, p: Mapping[str, Any], s: Shape) -> list[O.Op]:
        """The attention core's ops (group "core") of one layer: scope=core."""
        return [op for op in self.layer_ops(p, s) if op.group == "core"]

    def kv_bytes_per_token(self, p: Mapping[str, Any], s: Shape) -> Any:
        """KV-cache bytes one sequence holds per token of context, one layer."""
        raise NotImplementedError

    def kv_cache_tokens(self, p: Mapping[str, Any], s: Shape) -> Any:
        return s.context

    def kernel_spec(self, p: Mapping[str, Any], s: Shape) -> KernelSpec | tuple | None:
        """The fused softmax-attention kernel's work, or None (linear attention has none); a tuple
        where the variant runs several attention kernels (NSA's three branches)."""
        return None

    def model_layer_factor(self, p: Mapping[str, Any], group: str) -> Any:
        """How many of n_layers carry ops of this group (CLA: K/V projections in 1/k)."""
        return 1.0


def register(cls: type[Variant]) -> type[Variant]:
    _REGISTRY[cls.name] = cls
    return cls


def variants() -> dict[str, type[Variant]]:
    """Every registered variant (the `workloads.variants` package registers them on import)."""
    return dict(_REGISTRY)


def get_variant(name: str) -> Variant:
    if name not in _REGISTRY:
        raise AttnDseError(f"unknown variant '{name}'", fix=did_you_mean(name, _REGISTRY))
    return _REGISTRY[name]()



@dataclass(frozen=True)
class Workload:
    variant: Variant
    params: Mapping[str, Any]
    label: str = ""
    # model presets: [(layers, Workload)] groups, e.g. sliding-window and global layers
    layer_groups: tuple = ()
    model: Any = None

    @property
    def name(self) -> str:
        return self.label or self.variant.name

    def shape(self, phase="decode", batch=1, seq=None, context=None, causal=True, dtype="bf16") -> Shape:
        return make_shape(phase, batch, seq, context, causal, dtype)

    def ops(self, s: Shape, scope: str = "core") -> list[O.Op]:
        """The op list for one of the scopes: the attention kernel, one layer, all layers."""
        if scope not in SCOPES:
            raise AttnDseError(f"unknown scope '{scope}'", fix="use core, layer or model")
        if scope == "model":
            return self._model_ops(s)
        ops = self.variant.core_ops(self.params, s) if scope == "core" else self.variant.layer_ops(self.params, s)
        if s.phase == "train":
            ops = ops + O.backward(ops)
        return ops

    def _model_ops(self, s: Shape) -> list[O.Op]:
        out: list[O.Op] = []
        for i, (count, wl) in enumerate(self._groups()):
            layer = wl.ops(s, "layer")
            for group in {op.group for op in layer}:
                factor = count * wl.variant.model_layer_factor(wl.params, group)
                out += O.scaled([op for op in layer if op.group == group], factor, prefix=f"g{i}.")
        return out

    def _groups(self) -> tuple:
        if self.layer_groups:
            return self.layer_groups
        n = self.params.get("n_layers")
        if n is None:
            raise AttnDseError("scope=model needs n_layers",
                               fix="pass --param n_layers=80, or use --model NAME")
        return ((n, self),)

    def kv_cache_bytes(self, s: Shape, scope: str = "core") -> Any:
        """KV cache held for the whole batch at the shape's context: one layer for
        core/layer scope, all layers for model scope."""
        if scope != "model":
            v = self.variant
            return s.batch * v.kv_cache_tokens(self.params, s) * v.kv_bytes_per_token(self.params, s)
        total = 0.0
        for count, wl in self._groups():
            per_layer = wl.kv_cache_bytes(s, "layer") * wl.variant.model_layer_factor(wl.params, "kv_cache")
            total = total + count * per_layer
        return total

    def cost(self, phase="decode", batch=1, seq=None, context=None, causal=True, dtype="bf16",
             scope="core", fused=True) -> O.Cost:
        s = self.shape(phase, batch, seq, context, causal, dtype)
        return O.total_cost(self.ops(s, scope), fused, self.kv_cache_bytes(s, scope))

    def graph(self, phase="decode", batch=1, seq=None, context=None, causal=True, dtype="bf16",
              scope="core", fused=True):
        s = self.shape(phase, batch, seq, context, causal, dtype)
        return O.build_graph(self.ops(s, scope), fused)

    def kernel_specs(self, s: Shape, scope: str = "core") -> list[tuple[KernelSpec | None, Any]]:
        """The attention kernels to time, with how many times each runs (layers at model scope)."""
        groups = self._groups() if scope == "model" else ((1, self),)
        out = []
        for count, wl in groups:
            spec = wl.variant.kernel_spec(wl.params, s)
            for one in (spec if isinstance(spec, tuple) else (spec,)):
                out.append((one if one is None or one.phase == s.phase else dataclasses.replace(one, phase=s.phase), count))
        return out


def attention(name: str, /, **params: Any) -> Workload:
    """Build a workload: attention("mla", scheme="absorbed"); `attention.from_model("llama-3-70b")`
    (attached by the `workloads` package, which also registers the variants)."""
    variant = get_variant(name)
    return Workload(variant, check_params(variant, params))


def check_params(variant: Variant, params: Mapping[str, Any]) -> dict:
    schema = variant.schema_for(params)
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key not in schema:
            raise AttnDseError(f"{variant.name}: unknown parameter '{key}'",
                               fix=did_you_mean(key, schema))
        if value is not None:  # null = not given: the default, or an error if there is none
            out[key] = _convert(variant.name, schema[key], value)
    for p in schema.values():
        if p.name not in out:
            if p.default is REQUIRED:
                raise AttnDseError(f"{variant.name}: missing parameter '{p.name}'",
                                   fix=f"pass {p.name}=... ({p.doc})")
            out[p.name] = p.default
    out = variant.resolve(out)
    variant.check(out)
    return out


def _convert(vname: str, p: Param, value: Any) -> Any:
    where = f"{vname}: {p.name}"
    if p.kind is str or p.kind is bool:
        if p.kind is bool and isinstance(value, str):
            value = value.lower() in ("1", "true", "yes")
        if p.choices and value not in p.choices:
            raise AttnDseError(f"{where}={value!r} is not one of {', '.join(map(str, p.choices))}",
                               fix="pick one of those")
        return p.kind(value) if value is not None else None
    if value is None:
        return None
    if isinstance(value, (str, bytes, dict, bool)):
        raise AttnDseError(f"{where}={value!r} is not a number", fix=p.doc or "give a number")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise AttnDseError(f"{where}={value!r} is not a number", fix=p.doc or "give a number") from None
    # each message shows the first offending value only (an axis may hold thousands)
    for bad, problem in ((~np.isfinite(arr) | (np.abs(arr) > 2.0**53), "is not a finite number (at most 2^53)"),
                         ((arr != np.floor(arr)) if p.kind is int else None, "is not a whole number"),
                         ((arr < p.minimum) if p.minimum is not None else None, f"must be >= {p.minimum or 0:g}")):
        if bad is not None and np.any(bad):
            raise AttnDseError(f"{where}={arr[bad].flat[0]:g} {problem}", fix=p.doc or "give a number")
    return arr if arr.ndim else float(arr)


def require(cond, message: str, fix: str) -> None:
    """Vectorized check: raise if the condition fails anywhere."""
    if not np.all(cond):
        raise AttnDseError(message, fix=fix)


def show(x) -> str:
    """A parameter value for a message: 8, or [1..64] for an array."""
    arr = np.asarray(x)
    return f"{arr.item():g}" if arr.ndim == 0 else f"[{arr.min():g}..{arr.max():g}]"
