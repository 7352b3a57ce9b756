"""Model presets: real models' attention shapes plus what the DSE needs (width, depth, weights).

Each YAML under workloads/models/ names its source; `attention.from_model("llama-3-70b")`.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from attn_dse import strict_yaml
from attn_dse.errors import AttnDseError, did_you_mean
from attn_dse.workloads.registry import Workload, attention

_FIELDS = {"name", "source", "d_model", "n_layers", "params", "active_params", "attention", "layers"}


@dataclass(frozen=True)
class ModelInfo:
    name: str
    source: str
    d_model: int
    n_layers: int
    params: float  # total parameters (all experts)
    active_params: float  # parameters touched per token

    def weight_bytes(self, bytes_per_param: float) -> float:
        return self.params * bytes_per_param


def model_dir() -> Path:
    return Path(str(resources.files("attn_dse") / "workloads" / "models"))


def model_names() -> list[str]:
    return sorted(p.stem for p in model_dir().glob("*.yaml"))


def from_model(name: str, **overrides) -> Workload:
    """The preset's attention as a Workload with d_model and n_layers filled in; overrides
    replace attention parameters (e.g. n_kv_heads=4 for a what-if)."""
    path = model_dir() / f"{name}.yaml"
    if not path.is_file():
        raise AttnDseError(f"unknown model preset '{name}'", fix=did_you_mean(name, model_names()))
    raw = strict_yaml.read(path)
    unknown = set(raw) - _FIELDS
    if unknown:
        raise AttnDseError(f"{sorted(unknown)[0]}: unknown field", where=str(path), fix=did_you_mean(sorted(unknown)[0], _FIELDS))
    spec = dict(raw["attention"])
    variant = spec.pop("variant")
    spec.update(d_model=raw["d_model"], n_layers=raw["n_layers"])
    spec.update(overrides)
    info = ModelInfo(raw["name"], raw["source"], raw["d_model"], raw["n_layers"], float(raw["params"]),
                     float(raw.get("active_params", raw["params"])))
    wl = attention(variant, **spec)
    groups = tuple(_layer_group(g, variant, spec, path) for g in raw.get("layers") or ())
    if groups and sum(c for c, _ in groups) != raw["n_layers"]:
        raise AttnDseError(f"layers: counts add to {sum(c for c, _ in groups)}, not n_layers={raw['n_layers']}",
                           where=str(path), fix="make the layer counts add up")
    return Workload(wl.variant, wl.params, label=name, model=info, layer_groups=groups)


def _layer_group(raw: dict, variant: str, spec: dict, path: Path) -> tuple:
    """One run of identical layers: {count, variant?, params?} over the model's attention."""
    if not isinstance(raw, dict) or "count" not in raw:
        raise AttnDseError("layers: each entry needs a count", where=str(path), fix="e.g. {count: 21, variant: swa}")
    return int(raw["count"]), attention(raw.get("variant", variant), **{**spec, **(raw.get("params") or {})})

