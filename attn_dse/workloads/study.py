"""The iso-model study tables: every variant at the width, depth and head count of one model
class (a 70B-class and a DeepSeek-V3-class shape), so variants differ only in their attention.
The built-in study runs each inside its class's model (`model`: the preset whose MLP or
experts, vocabulary and depth surround the attention), so its times are whole steps.

Used by the built-in sweep (`dse/study.py`) and by figures that name variants
(`attn-dse roofline --variants gqa,mla`)."""
from __future__ import annotations

from attn_dse.errors import AttnDseError
from attn_dse.workloads.registry import Workload, attention

_MLA = dict(kv_lora_rank=512, qk_rope_dim=64, qk_nope_dim=128, v_head_dim=128, q_lora_rank=1536)
ISO_MODELS = {
    "70b": dict(d_model=8192, n_layers=80, heads=64, params=70.6e9, model="llama-3-70b"),  # Llama-3-70B's shape
    # DeepSeek-V3's shape; its experts kept whole on each GPU of the study's pipeline (expert_parallel 1)
    "v3": dict(d_model=7168, n_layers=61, heads=128, params=671e9, model="deepseek-v3",
               step=dict(expert_parallel=1)),
}


def iso_variants(tag: str) -> list[tuple[str, str, dict]]:
    """(label, variant, parameters) of every variant at the model class `tag`."""
    shape = ISO_MODELS[tag]
    H = shape["heads"]
    gqa8 = dict(n_heads=H, n_kv_heads=8, head_dim=128)
    table = [
        ("mha", "mha", dict(n_heads=H, head_dim=128)),
        ("gqa-8", "gqa", gqa8),
        ("mqa", "mqa", dict(n_heads=H, head_dim=128)),
        ("mla", "mla", dict(n_heads=H, **_MLA)),
        ("tpla-2", "tpla", dict(n_heads=H, tp=2, **_MLA)),
        ("sqa-sym", "sqa", dict(n_heads=H, form="symmetric", head_dim=128)),
        ("cla2-gqa-8", "cla", dict(base="gqa", share=2, **gqa8)),
        ("swa-4k", "swa", dict(window=4096, **gqa8)),
        ("moba-4x256", "block_sparse", dict(block_size=256, top_k=4, **gqa8)),
        ("nsa", "nsa", dict(n_heads=H, n_kv_heads=8, head_dim=128)),
        ("linear", "linear", dict(n_heads=H, head_dim=128)),
        ("ccgqa-2-8", "ccgqa", dict(n_heads=H, q_compression=2, kv_compression=8)),
        ("cca-4", "cca", dict(n_heads=H // 2, compression=4)),
        ("mfa-256", "mfa", dict(n_heads=H, latent=256)),
        ("mfa_kr-256", "mfa_kr", dict(n_heads=H, latent=256)),
    ]
    common = dict(d_model=shape["d_model"], n_layers=shape["n_layers"])
    return [(label, variant, {**common, **p}) for label, variant, p in table]


def named_workloads(variants: str | None, models: tuple[str, ...]) -> dict[str, Workload]:
    """Model presets by name, and variants (comma list) at the 70B-class settings."""
    out: dict[str, Workload] = {}
    for m in models:
        out[m] = attention.from_model(m)
    if variants:
        entries = {variant: (label, p) for label, variant, p in iso_variants("70b")}
        for name in (v.strip() for v in variants.split(",") if v.strip()):
            if name not in entries:
                raise AttnDseError(f"unknown variant '{name}' for --variants",
                                   fix="choose from: " + ", ".join(sorted(entries)))
            label, p = entries[name]
            out[label] = attention(name, **p)
    if not out:
        raise AttnDseError("nothing to plot", fix="pass --variants gqa,mla or --model llama-3-70b")
    return out
