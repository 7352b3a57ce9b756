"""Import a model from a local Hugging Face `config.json`: its attention, MLP or mixture of
experts, vocabulary and depth, as the fields of a model preset (`workloads/models.py`).

Families (by `model_type`): llama, mistral, mixtral, qwen2, qwen2_moe, qwen3, qwen3_moe,
gemma, gemma2, gemma3 (text config), deepseek_v2, deepseek_v3. Field names follow the
transformers configuration classes of each family (`LlamaConfig`, `DeepseekV3Config`, ...).
Anything the step needs that is missing or that the model uses in a way not modelled here is
one AttnDseError naming the file, the field and the fix.
"""
from __future__ import annotations

import json
from pathlib import Path

from attn_dse.errors import AttnDseError

DENSE = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "gemma3_text")
MOE = ("mixtral", "qwen2_moe", "qwen3_moe")
MLA = ("deepseek_v2", "deepseek_v3")
SUPPORTED = DENSE + MOE + MLA


def read_config(path) -> dict:
    """The preset fields of the model a config.json describes."""
    path = Path(path)
    if not path.is_file():
        raise AttnDseError(f"no such config file '{path}'", fix="give the path of a Hugging Face config.json")
    try:
        cfg = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AttnDseError(f"is not JSON ({exc})", where=str(path), fix="give the model's config.json") from None
    if not isinstance(cfg, dict):
        raise AttnDseError("is not a JSON object", where=str(path), fix="give the model's config.json")
    return from_config(cfg, str(path))


def from_config(cfg: dict, where: str = "config.json") -> dict:
    kind = cfg.get("model_type")
    if kind == "gemma3" and isinstance(cfg.get("text_config"), dict):  # multimodal wrapper
        cfg = {**cfg["text_config"], "model_type": "gemma3_text"}
        kind = "gemma3_text"
    if kind not in SUPPORTED:
        raise AttnDseError(f"model_type {kind!r} is not supported", where=where,
                           fix="supported: " + ", ".join(SUPPORTED) + " (or write a preset YAML, see workloads/models/)")
    get = _Getter(cfg, where)
    E, L, H = get.int("hidden_size"), get.int("num_hidden_layers"), get.int("num_attention_heads")
    name = cfg.get("_name_or_path") or Path(where).parent.name or kind
    raw = {"name": str(name), "d_model": E, "n_layers": L, "vocab_size": get.int("vocab_size"),
           "tie_embeddings": bool(cfg.get("tie_word_embeddings", kind.startswith("gemma"))),
           "source": f"{where} (model_type {kind})"}
    if kind in MLA:
        raw["attention"] = _mla(get)
        raw["ffn"] = _deepseek_ffn(get, L)
        return raw
    kv = get.int("num_key_value_heads", H)
    head = get.int("head_dim", E // H) if cfg.get("head_dim") is not None else E // H
    attn = {"variant": "gqa", "n_heads": H, "n_kv_heads": kv, "head_dim": head}
    raw["attention"] = attn
    window = cfg.get("sliding_window")
    uses_window = window is not None and cfg.get("use_sliding_window", kind not in ("qwen2", "qwen3", "qwen2_moe", "qwen3_moe"))
    if uses_window:
        window = get.int("sliding_window")
        if kind == "gemma2":  # even layers local, odd global (Gemma2DecoderLayer: is_sliding = not layer_idx % 2)
            raw["layers"] = [{"count": (L + 1) // 2, "variant": "swa", "params": {"window": window}},
                             {"count": L // 2, "variant": "gqa"}]
        elif kind == "gemma3_text":  # every pattern-th layer global, the rest local
            pattern = get.int("sliding_window_pattern", 6)
            n_global = L // pattern
            raw["layers"] = [{"count": L - n_global, "variant": "swa", "params": {"window": window}},
                             {"count": n_global, "variant": "gqa"}]
        elif window < get.int("max_position_embeddings", 2**31):
            attn.update(variant="swa", window=window)
    if kind in MOE:
        raw["ffn"] = _moe_ffn(get, kind, L)
    else:
        raw["ffn"] = {"intermediate_size": get.int("intermediate_size")}
    return raw


def _mla(get: "_Getter") -> dict:
    q_rank = get.cfg.get("q_lora_rank")
    return {"variant": "mla", "n_heads": get.int("num_attention_heads"), "kv_lora_rank": get.int("kv_lora_rank"),
            "q_lora_rank": 0 if q_rank is None else get.int("q_lora_rank"),
            "qk_rope_dim": get.int("qk_rope_head_dim"), "qk_nope_dim": get.int("qk_nope_head_dim"),
            "v_head_dim": get.int("v_head_dim")}


def _deepseek_ffn(get: "_Getter", n_layers: int) -> dict:
    routed = get.cfg.get("n_routed_experts")
    if routed is None:  # a dense DeepSeek
        return {"intermediate_size": get.int("intermediate_size")}
    if get.cfg.get("moe_layer_freq", 1) != 1:
        get.unsupported("moe_layer_freq", "only every layer after first_k_dense_replace being MoE (moe_layer_freq 1) is modelled")
    return {"intermediate_size": get.int("intermediate_size"), "n_experts": get.int("n_routed_experts"),
            "top_k": get.int("num_experts_per_tok"), "n_shared_experts": get.int("n_shared_experts", 0),
            "expert_intermediate_size": get.int("moe_intermediate_size"),
            "first_k_dense": min(get.int("first_k_dense_replace", 0), n_layers)}


def _moe_ffn(get: "_Getter", kind: str, n_layers: int) -> dict:
    if kind == "mixtral":  # intermediate_size is each expert's width; no shared expert
        width = get.int("intermediate_size")
        return {"intermediate_size": width, "n_experts": get.int("num_local_experts"),
                "top_k": get.int("num_experts_per_tok"), "expert_intermediate_size": width}
    if get.cfg.get("mlp_only_layers") or get.cfg.get("decoder_sparse_step", 1) != 1:
        get.unsupported("decoder_sparse_step", "only every layer being MoE (decoder_sparse_step 1, no mlp_only_layers) is modelled")
    out = {"intermediate_size": get.int("intermediate_size"), "n_experts": get.int("num_experts"),
           "top_k": get.int("num_experts_per_tok"), "expert_intermediate_size": get.int("moe_intermediate_size")}
    shared = get.cfg.get("shared_expert_intermediate_size")
    if shared:  # Qwen2-MoE: one shared expert of its own width
        out.update(n_shared_experts=1, shared_intermediate_size=get.int("shared_expert_intermediate_size"))
    return out


class _Getter:
    def __init__(self, cfg: dict, where: str):
        self.cfg, self.where = cfg, where

    def int(self, key: str, default=None) -> int:
        value = self.cfg.get(key, default)
        if value is None:
            raise AttnDseError(f"missing field '{key}'", where=self.where,
                               fix=f"a {self.cfg.get('model_type')} config.json has '{key}'; add it")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 0:
            raise AttnDseError(f"{key}: {value!r} is not a whole number", where=self.where, fix=f"write e.g. \"{key}\": 8")
        return int(value)

    def unsupported(self, key: str, why: str):
        raise AttnDseError(f"{key}: {self.cfg.get(key)!r} is not supported", where=self.where, fix=why)
