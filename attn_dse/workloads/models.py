"""Model presets: real models' attention shapes plus the rest of the step (FFN or MoE,
embeddings, LM head) and what the DSE needs (width, depth, weights).

Each YAML under workloads/models/ names its source (the model's Hugging Face config.json);
`attention.from_model("llama-3-70b")`, or `attention.from_model("path/to/config.json")` to
import a model (`workloads/hf_config.py`). `from_model(name, variant="mla", ...)` keeps the
model's FFN, vocabulary and depth and swaps its attention (the iso-model what-if).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from attn_dse import strict_yaml
from attn_dse.errors import AttnDseError, did_you_mean
from attn_dse.workloads.registry import Workload, attention

_FIELDS = {"name", "source", "d_model", "n_layers", "params", "active_params", "attention", "layers", "ffn",
           "vocab_size", "tie_embeddings", "prefill_chunk"}


@dataclass(frozen=True)
class FfnShape:
    """The MLP of every layer: dense (gated: gate, up, down; SwiGLU/GeGLU) or mixture of experts.

    MoE layers route each token to `top_k` of `n_experts` experts of width
    `expert_intermediate_size`, plus `n_shared_experts` always-on experts (width
    `shared_intermediate_size`); the first `first_k_dense` layers are dense of width
    `intermediate_size`. Experts are spread over `expert_parallel` GPUs; `imbalance` is the
    busiest GPU's routed tokens over the mean (1 = perfectly balanced)."""

    intermediate_size: Any = 0
    n_experts: Any = 0
    top_k: Any = 0
    n_shared_experts: Any = 0
    expert_intermediate_size: Any = 0
    shared_intermediate_size: Any = None  # default n_shared_experts * expert_intermediate_size
    first_k_dense: Any = 0
    expert_parallel: Any = 1
    imbalance: Any = 1.0
    gated: bool = True  # three matrices (gate, up, down); False: two (up, down)

    @property
    def matrices(self) -> int:
        return 3 if self.gated else 2

    @property
    def is_moe(self) -> bool:
        return bool(np.any(np.asarray(self.n_experts) > 0))

    @property
    def shared_width(self):
        if self.shared_intermediate_size is not None:
            return self.shared_intermediate_size
        return self.n_shared_experts * self.expert_intermediate_size

    def moe_layers(self, n_layers):
        return np.where(np.asarray(self.n_experts) > 0, n_layers - self.first_k_dense, 0)

    def dense_layers(self, n_layers):
        return n_layers - self.moe_layers(n_layers)

    def params(self, d_model, n_layers):
        """Parameters of every layer's MLP (all experts, routers included)."""
        m = self.matrices
        moe = self.moe_layers(n_layers)
        per_moe = m * d_model * (self.n_experts * self.expert_intermediate_size + self.shared_width) \
            + d_model * self.n_experts
        return self.dense_layers(n_layers) * m * d_model * self.intermediate_size + moe * per_moe

    def active_params(self, d_model, n_layers):
        """Parameters one token's MLP touches (top_k routed experts, the shared ones, the router)."""
        m = self.matrices
        moe = self.moe_layers(n_layers)
        per_moe = m * d_model * (self.top_k * self.expert_intermediate_size + self.shared_width) \
            + d_model * self.n_experts
        return self.dense_layers(n_layers) * m * d_model * self.intermediate_size + moe * per_moe


FFN_FIELDS = tuple(f.name for f in dataclasses.fields(FfnShape))


@dataclass(frozen=True)
class ModelInfo:
    name: str
    source: str
    d_model: int
    n_layers: int
    params: float  # total parameters (all experts), as the source states them
    active_params: float  # parameters touched per token
    ffn: FfnShape | None = None  # None: the preset gives attention only (the step is attention)
    vocab_size: int = 0
    tie_embeddings: bool = False
    prefill_chunk: Any = 0  # tokens per prefill chunk (0: the whole prompt at once)
    counted_params: float | None = None  # counted from the shapes (attention + MLP + embeddings)

    def weight_bytes(self, bytes_per_param: float) -> float:
        return self.params * bytes_per_param

    def embedding_params(self):
        """Token embedding plus the LM head (one matrix when they are tied)."""
        return self.vocab_size * self.d_model * (1 if self.tie_embeddings else 2)


def model_dir() -> Path:
    return Path(str(resources.files("attn_dse") / "workloads" / "models"))


def model_names() -> list[str]:
    return sorted(p.stem for p in model_dir().glob("*.yaml"))


def from_model(name: str, variant: str | None = None, **overrides) -> Workload:
    """The preset's attention as a Workload with d_model and n_layers filled in (and its FFN,
    embeddings and LM head on `Workload.model`); overrides replace attention parameters (e.g.
    n_kv_heads=4 for a what-if), FFN fields (expert_parallel=16, imbalance=1.3) or
    prefill_chunk. `name` may be a path to a Hugging Face config.json. `variant` swaps the
    attention for another variant at the model's width and depth."""
    if str(name).endswith(".json") or Path(str(name)).is_file():
        from attn_dse.workloads.hf_config import read_config
        raw, path = read_config(name), Path(name)
    else:
        path = model_dir() / f"{name}.yaml"
        if not path.is_file():
            raise AttnDseError(f"unknown model preset '{name}'",
                               fix=did_you_mean(name, model_names()) + " (or give a path to a config.json)")
        raw = strict_yaml.read(path)
    return build_model(raw, str(path), variant, overrides)


def build_model(raw: dict, where: str, variant: str | None = None, overrides: dict | None = None) -> Workload:
    """A Workload from a preset's fields (YAML, or translated from a config.json)."""
    overrides = dict(overrides or {})
    unknown = set(raw) - _FIELDS
    if unknown:
        raise AttnDseError(f"{sorted(unknown)[0]}: unknown field", where=where, fix=did_you_mean(sorted(unknown)[0], _FIELDS))
    for key in ("name", "source", "d_model", "n_layers", "attention"):
        if key not in raw:
            raise AttnDseError(f"missing field '{key}'", where=where, fix="see workloads/models/llama-3-70b.yaml")
    ffn = _ffn(raw.get("ffn"), where, {k: overrides.pop(k) for k in list(overrides) if k in FFN_FIELDS})
    chunk = overrides.pop("prefill_chunk", raw.get("prefill_chunk", 0))
    if np.any(np.asarray(chunk) < 0):
        raise AttnDseError(f"prefill_chunk={chunk} must be >= 0", where=where, fix="0 = the whole prompt, e.g. 2048")
    spec = dict(raw["attention"])
    own = spec.pop("variant")
    swapped = variant is not None and variant != own
    if swapped:
        spec = {}
    spec.update(d_model=raw["d_model"], n_layers=raw["n_layers"])
    spec.update(overrides)
    info_params = raw.get("params")
    counted = None
    wl = attention(variant or own, **spec)
    vocab, tied = int(raw.get("vocab_size", 0)), bool(raw.get("tie_embeddings", False))
    if ffn is not None:
        counted = count_params(wl, ffn, raw["d_model"], raw["n_layers"], vocab, tied)
    if info_params is None and counted is None:
        raise AttnDseError("missing field 'params'", where=where, fix="give the parameter count, or the ffn shape to count it")
    stated = info_params is not None and not swapped
    params = float(info_params if stated else counted[0])
    active = float(raw.get("active_params", info_params) if stated else counted[1])
    info = ModelInfo(raw["name"], raw["source"], raw["d_model"], raw["n_layers"], params, active, ffn, vocab, tied,
                     chunk, counted[0] if counted else None)
    groups = () if swapped else tuple(_layer_group(g, own, spec, where) for g in raw.get("layers") or ())
    if groups and sum(c for c, _ in groups) != raw["n_layers"]:
        raise AttnDseError(f"layers: counts add to {sum(c for c, _ in groups)}, not n_layers={raw['n_layers']}",
                           where=where, fix="make the layer counts add up")
    label = raw["name"] if not swapped else f"{raw['name']}/{variant}"
    return Workload(wl.variant, wl.params, label=label, model=info, layer_groups=groups)


def attention_params(wl: Workload, per_device: bool = False) -> float:
    """Attention weights of every layer (one device's share under the variant's tp when
    `per_device`), counted off the op graph of a one-token decode step. MLA is counted in its
    naive scheme: the absorbed scheme's op graph lists W_UK and W_UV as one head's matrices
    (its FLOPs are per head, its weight tensors are not), which would under-count them."""
    from attn_dse.workloads.ops import total_cost

    def plain(w: Workload) -> Workload:
        p = dict(w.params)
        if "tp" in p and not per_device:
            p["tp"] = 1.0
        if "scheme" in p and "kv_layout" in p:
            p.update(scheme="naive", kv_layout="native")
        return dataclasses.replace(w, params=p)
    counted = plain(wl)
    if wl.layer_groups:
        counted = dataclasses.replace(counted, layer_groups=tuple((c, plain(g)) for c, g in wl.layer_groups))
    # one byte per weight: bytes = parameters (a long context: sparse variants need blocks to select)
    s = counted.shape("decode", 1, 1, 131072, True, "fp8")
    return float(np.max(total_cost(counted.ops(s, "model")).weight_bytes))


def count_params(wl: Workload, ffn: FfnShape, d_model, n_layers, vocab, tied) -> tuple[float, float]:
    """(total, active) parameters: attention (op graph) + MLP + embeddings and LM head.
    Norm weights (a few d_model vectors per layer) are left out: under 0.01% of any model here."""
    attn = attention_params(wl)
    emb = vocab * d_model * (1 if tied else 2)
    total = attn + np.max(ffn.params(d_model, n_layers)) + emb
    active = attn + np.max(ffn.active_params(d_model, n_layers)) + emb
    return float(total), float(active)


def _ffn(raw, where: str, overrides: dict) -> FfnShape | None:
    if raw is None and not overrides:
        return None
    if raw is None:
        raise AttnDseError(f"{sorted(overrides)[0]}: this model has no ffn shape", where=where,
                           fix="add 'ffn: {intermediate_size: ...}' to the preset, or drop the parameter")
    if not isinstance(raw, dict):
        raise AttnDseError("ffn: is not a mapping", where=where, fix="write e.g. 'ffn: {intermediate_size: 28672}'")
    bad = set(raw) - set(FFN_FIELDS)
    if bad:
        k = sorted(bad)[0]
        raise AttnDseError(f"ffn.{k}: unknown field", where=where, fix=did_you_mean(k, FFN_FIELDS))
    values = {**raw, **overrides}
    for k, v in values.items():
        if k == "gated":
            continue
        if k == "shared_intermediate_size" and v is None:
            continue
        arr = np.asarray(v, dtype=object)
        if isinstance(v, (bool, str)) or not all(isinstance(x, (int, float, np.number)) for x in arr.ravel()):
            raise AttnDseError(f"ffn.{k}: {v!r} is not a number", where=where, fix=f"write e.g. {k}: 8")
        arr = np.asarray(v, dtype=np.float64)
        low = 1 if k in ("expert_parallel", "imbalance") else 0
        if np.any(arr < low) or not np.all(np.isfinite(arr)):
            raise AttnDseError(f"ffn.{k}={v!r} must be >= {low}", where=where, fix=f"write e.g. {k}: {max(low, 1)}")
    shape = FfnShape(**values)
    if shape.is_moe:
        if np.any(np.asarray(shape.top_k) < 1) or np.any(np.asarray(shape.top_k) > np.asarray(shape.n_experts)):
            raise AttnDseError(f"ffn.top_k={shape.top_k} must be 1..n_experts={shape.n_experts}", where=where,
                               fix="e.g. top_k: 8")
        if np.any(np.asarray(shape.expert_intermediate_size) <= 0):
            raise AttnDseError("ffn.expert_intermediate_size: missing for a mixture of experts", where=where,
                               fix="e.g. expert_intermediate_size: 2048")
        if np.any(np.mod(shape.n_experts, shape.expert_parallel) != 0):
            raise AttnDseError(f"ffn.expert_parallel={shape.expert_parallel} does not divide n_experts={shape.n_experts}",
                               where=where, fix="pick a divisor of the expert count, e.g. 8")
    elif np.any(np.asarray(shape.intermediate_size) <= 0):
        raise AttnDseError("ffn.intermediate_size: missing for a dense MLP", where=where, fix="e.g. intermediate_size: 28672")
    return shape


def _layer_group(raw: dict, variant: str, spec: dict, where: str) -> tuple:
    """One run of identical layers: {count, variant?, params?} over the model's attention."""
    if not isinstance(raw, dict) or "count" not in raw:
        raise AttnDseError("layers: each entry needs a count", where=where, fix="e.g. {count: 21, variant: swa}")
    return int(raw["count"]), attention(raw.get("variant", variant), **{**spec, **(raw.get("params") or {})})
