"""Importing a model from a Hugging Face config.json: each family's fields, the counted
parameters against the model cards, and one clear error for what is unsupported or missing."""
import json

import pytest
from click.testing import CliRunner

from attn_dse import attention, predict
from attn_dse.cli.main import cli
from attn_dse.errors import AttnDseError

LLAMA3_70B = {"model_type": "llama", "hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80,
              "num_attention_heads": 64, "num_key_value_heads": 8, "vocab_size": 128256,
              "tie_word_embeddings": False, "max_position_embeddings": 8192}
MIXTRAL_8X7B = {"model_type": "mixtral", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                "num_attention_heads": 32, "num_key_value_heads": 8, "num_local_experts": 8,
                "num_experts_per_tok": 2, "vocab_size": 32000, "sliding_window": None, "tie_word_embeddings": False,
                "max_position_embeddings": 32768}
MISTRAL_7B_V01 = {"model_type": "mistral", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                  "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000, "sliding_window": 4096,
                  "max_position_embeddings": 32768, "tie_word_embeddings": False}
GEMMA2_9B = {"model_type": "gemma2", "hidden_size": 3584, "intermediate_size": 14336, "num_hidden_layers": 42,
             "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 256, "vocab_size": 256000,
             "sliding_window": 4096, "max_position_embeddings": 8192}
DEEPSEEK_V2_LITE = {"model_type": "deepseek_v2", "hidden_size": 2048, "intermediate_size": 10944,
                    "moe_intermediate_size": 1408, "num_hidden_layers": 27, "num_attention_heads": 16,
                    "n_shared_experts": 2, "n_routed_experts": 64, "num_experts_per_tok": 6, "first_k_dense_replace": 1,
                    "moe_layer_freq": 1, "kv_lora_rank": 512, "q_lora_rank": None, "qk_rope_head_dim": 64,
                    "qk_nope_head_dim": 128, "v_head_dim": 128, "vocab_size": 102400, "tie_word_embeddings": False}
DEEPSEEK_V3 = {"model_type": "deepseek_v3", "hidden_size": 7168, "intermediate_size": 18432,
               "moe_intermediate_size": 2048, "num_hidden_layers": 61, "num_attention_heads": 128,
               "n_shared_experts": 1, "n_routed_experts": 256, "num_experts_per_tok": 8, "first_k_dense_replace": 3,
               "moe_layer_freq": 1, "kv_lora_rank": 512, "q_lora_rank": 1536, "qk_rope_head_dim": 64,
               "qk_nope_head_dim": 128, "v_head_dim": 128, "vocab_size": 129280, "tie_word_embeddings": False}


def write(tmp_path, cfg, name="m"):
    d = tmp_path / name
    d.mkdir(exist_ok=True)
    (d / "config.json").write_text(json.dumps(cfg))
    return str(d / "config.json")


def test_llama_config_gives_the_presets_model(tmp_path):
    wl = attention.from_model(write(tmp_path, LLAMA3_70B))
    preset = attention.from_model("llama-3-70b")
    assert wl.variant.name == "gqa" and wl.params == preset.params
    assert wl.model.params == preset.model.counted_params == pytest.approx(70.6e9, rel=0.002)
    a = predict("h100", wl, "decode", 8, context=4096, scope="model")
    b = predict("h100", preset, "decode", 8, context=4096, scope="model")
    assert a.flops == b.flops and a.latency_s == b.latency_s


def test_mixtral_is_a_mixture_of_eight_experts(tmp_path):
    wl = attention.from_model(write(tmp_path, MIXTRAL_8X7B))
    f = wl.model.ffn
    assert (f.n_experts, f.top_k, f.expert_intermediate_size) == (8, 2, 14336)
    assert wl.variant.name == "gqa"  # sliding_window null: full attention
    assert wl.model.params == pytest.approx(46.7e9, rel=0.01)  # "46.7B total parameters"
    assert wl.model.active_params == pytest.approx(12.9e9, rel=0.02)  # "12.9B per token"


def test_mistral_window_becomes_sliding_window_attention(tmp_path):
    wl = attention.from_model(write(tmp_path, MISTRAL_7B_V01))
    assert wl.variant.name == "swa" and wl.params["window"] == 4096
    assert wl.model.params == pytest.approx(7.24e9, rel=0.005)


def test_gemma2_alternates_local_and_global_layers(tmp_path):
    wl = attention.from_model(write(tmp_path, GEMMA2_9B))
    assert [(c, g.variant.name) for c, g in wl.layer_groups] == [(21, "swa"), (21, "gqa")]
    assert wl.model.tie_embeddings and wl.model.params == pytest.approx(9.24e9, rel=0.005)


def test_deepseek_v2_lite_without_a_query_latent(tmp_path):
    wl = attention.from_model(write(tmp_path, DEEPSEEK_V2_LITE))
    assert wl.variant.name == "mla" and wl.params["q_lora_rank"] == 0
    f = wl.model.ffn
    assert (f.n_experts, f.top_k, f.n_shared_experts, f.first_k_dense) == (64, 6, 2, 1)
    assert wl.model.params == pytest.approx(15.7e9, rel=0.01)  # "15.7B total"
    # "2.4B activated": the model card leaves out the input embedding (a lookup, no multiply)
    assert wl.model.active_params - 102400 * 2048 == pytest.approx(2.4e9, rel=0.03)  # 2.45B, rounded


def test_deepseek_v3_config_matches_the_preset(tmp_path):
    wl = attention.from_model(write(tmp_path, DEEPSEEK_V3))
    preset = attention.from_model("deepseek-v3", expert_parallel=1)
    assert wl.params == preset.params and wl.model.ffn == preset.model.ffn
    assert wl.model.params == pytest.approx(671e9, rel=0.005)
    a = predict("h200", wl, "prefill", 1, seq=2048, scope="model")
    b = predict("h200", preset, "prefill", 1, seq=2048, scope="model")
    assert a.flops == b.flops


def test_predict_takes_a_config_json(tmp_path):
    path = write(tmp_path, LLAMA3_70B)
    r = CliRunner().invoke(cli, ["predict", "h200", "--model", path, "--phase", "decode", "--batch", "8",
                                 "--context", "4096", "--scope", "model", "--dtype", "fp8", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["max_batch"] >= 8 and data["tpot_s"] == data["latency_s"]


@pytest.mark.parametrize("cfg, words", [
    ({**LLAMA3_70B, "model_type": "falcon"}, ("model_type 'falcon' is not supported", "llama")),
    ({k: v for k, v in LLAMA3_70B.items() if k != "intermediate_size"}, ("missing field 'intermediate_size'",)),
    ({k: v for k, v in DEEPSEEK_V3.items() if k != "kv_lora_rank"}, ("missing field 'kv_lora_rank'",)),
    ({**DEEPSEEK_V3, "moe_layer_freq": 2}, ("moe_layer_freq: 2 is not supported",)),
    ({**LLAMA3_70B, "hidden_size": "8k"}, ("hidden_size: '8k' is not a whole number",)),
    ({**MIXTRAL_8X7B, "num_experts_per_tok": 9}, ("top_k=9 must be 1..n_experts=8",)),
])
def test_bad_configs_are_one_clear_error(tmp_path, cfg, words):
    path = write(tmp_path, cfg)
    with pytest.raises(AttnDseError) as e:
        attention.from_model(path)
    assert path in str(e.value)
    for w in words:
        assert w in str(e.value)
    r = CliRunner().invoke(cli, ["predict", "h100", "--model", path, "--scope", "model", "--context", "8"])
    assert r.exit_code == 2 and "Traceback" not in r.output


def test_not_json_and_missing_file(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(AttnDseError, match="is not JSON"):
        attention.from_model(str(bad))
    with pytest.raises(AttnDseError, match="no such config file"):
        attention.from_model(str(tmp_path / "nope" / "config.json"))
