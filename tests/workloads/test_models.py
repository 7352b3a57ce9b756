import pytest

from attn_dse import attention
from attn_dse.errors import AttnDseError
from attn_dse.workloads.models import model_names

REQUIRED = {"llama-3-8b", "llama-3-70b", "llama-3.1-405b", "qwen2.5-72b", "mistral-7b", "deepseek-v3",
            "kimi-k2", "sqa-paper", "cca-paper", "step-3-mfa", "cla-paper"}


def test_required_presets_exist_and_build():
    assert REQUIRED <= set(model_names())
    for name in model_names():
        wl = attention.from_model(name)
        assert wl.model.source and wl.model.params > 0
        assert wl.cost("decode", 2, context=1000, scope="model").kv_cache_bytes > 0


def test_kv_per_token_matches_hand_count():
    # Llama-3-70B: 2 (K,V) x 8 heads x 128 x 2 B x 80 layers; DeepSeek-V3: 576 x 2 B x 61
    s = dict(phase="decode", batch=1, context=1, scope="model")
    assert attention.from_model("llama-3-70b").cost(**s).kv_cache_bytes == 2 * 8 * 128 * 2 * 80
    assert attention.from_model("deepseek-v3").cost(**s).kv_cache_bytes == 576 * 2 * 61
    assert attention.from_model("kimi-k2").params["n_heads"] == 64


def test_mistral_window_bounds_the_cache():
    wl = attention.from_model("mistral-7b")
    a = wl.cost("decode", 1, context=4096, scope="model").kv_cache_bytes
    b = wl.cost("decode", 1, context=65536, scope="model").kv_cache_bytes
    assert a == b


def test_overrides_and_unknown_model():
    assert attention.from_model("llama-3-70b", n_kv_heads=4).params["n_kv_heads"] == 4
    with pytest.raises(AttnDseError, match="did you mean 'llama-3-70b'"):
        attention.from_model("llama-3-70")


def test_interleaved_local_global_layers():
    """Gemma-2: 21 sliding-window (4096) layers and 21 global ones."""
    from attn_dse import load_hardware, predict
    wl = attention.from_model("gemma-2-9b")
    per_token_layer = 2 * 8 * 256 * 2
    kv = wl.cost("decode", 1, context=32768, scope="model").kv_cache_bytes
    assert kv == 21 * 4096 * per_token_layer + 21 * 32768 * per_token_layer
    flops = wl.cost("prefill", 1, seq=8192, scope="model").flops
    local = attention("swa", n_heads=16, n_kv_heads=8, head_dim=256, d_model=3584, window=4096)
    glob = attention("gqa", n_heads=16, n_kv_heads=8, head_dim=256, d_model=3584)
    assert flops == 21 * (local.cost("prefill", 1, seq=8192, scope="layer").flops
                          + glob.cost("prefill", 1, seq=8192, scope="layer").flops)
    p = predict(load_hardware("h100"), wl, "decode", batch=8, context=65536, scope="model")
    assert p.latency_s > 0 and p.bound == "memory"
