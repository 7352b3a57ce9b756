"""The whole step at --scope model: FLOPs against counts by hand from each model's config.json,
and the behaviour of the MLP/MoE, chunking, training and serving figures.

The hand counts below are written from the models' published shapes, not from the code: a
token's matmul FLOPs are 2 x the weights it multiplies (every layer's attention projections
and MLP or active experts, and the LM head on the tokens that produce logits), plus the
attention core's 2 x heads x (d_qk + d_v) per attended (query, key) pair."""
import json

import numpy as np
import pytest

from attn_dse import attention, predict
from attn_dse.cost.step import serving


def rel(a, b):
    return abs(float(a) / float(b) - 1)


# ---- Llama-3-70B (https://huggingface.co/meta-llama/Meta-Llama-3-70B/blob/main/config.json)
E, L, H, KV, D, I, V = 8192, 80, 64, 8, 128, 28672, 128256
LLAMA_LAYER = E * H * D + 2 * E * KV * D + H * D * E + 3 * E * I  # q, k, v, o, gate, up, down


def llama_prefill(S, B=1):
    pairs = S * (S + 1) / 2  # causal
    return B * (2 * S * L * LLAMA_LAYER + L * 2 * H * 2 * D * pairs + 2 * E * V)  # logits of the last token


def llama_decode(B, ctx):
    return B * (2 * L * LLAMA_LAYER + L * 2 * H * 2 * D * (ctx + 1) + 2 * E * V)


@pytest.mark.parametrize("S", [1024, 8192, 32768])
def test_llama_3_70b_prefill_flops_match_the_hand_count(S):
    p = predict("h100", attention.from_model("llama-3-70b"), "prefill", 2, seq=S, scope="model")
    assert rel(p.flops, llama_prefill(S, 2)) < 0.01
    assert rel(p.flops, llama_prefill(S, 2)) < 1e-9  # in fact exact


def test_llama_3_70b_decode_flops_match_the_hand_count():
    p = predict("h100", attention.from_model("llama-3-70b"), "decode", 32, context=8192, scope="model")
    assert rel(p.flops, llama_decode(32, 8192)) < 0.01
    # the whole model is ~4x what --scope model counted before (attention and projections only)
    attn_only = 32 * (2 * L * (E * H * D + 2 * E * KV * D + H * D * E) + L * 2 * H * 2 * D * 8193)
    assert p.flops > 3.5 * attn_only


# ---- DeepSeek-V3 (https://huggingface.co/deepseek-ai/DeepSeek-V3/blob/main/config.json)
# MLA: 128 heads, kv_lora_rank 512, q_lora_rank 1536, rope 64, nope 128, v 128; 3 dense layers
# of 18432, then 58 MoE layers of 256 routed experts (8 per token) + 1 shared, each 2048 wide.
DE, DL, DH, DC, DR, DN, DV, DQ = 7168, 61, 128, 512, 64, 128, 128, 1536
DV3_ATTN = DE * DQ + DQ * DH * (DN + DR) + DE * (DC + DR) + DH * DN * DC + DH * DC * DV + DH * DV * DE
DV3_NAIVE_ATTN = DE * DQ + DQ * DH * (DN + DR) + DE * (DC + DR) + DC * DH * (DN + DV) + DH * DV * DE
DV3_MLP_DENSE = 3 * DE * 18432
DV3_MLP_MOE = DE * 256 + 3 * DE * 2048 * (8 + 1)  # router + 8 routed + 1 shared expert
DV3_VOCAB = 129280


def test_deepseek_v3_decode_flops_match_the_hand_count():
    B, ctx = 64, 4096
    # absorbed decode: per cached token per head, q.latent (576) and p.latent (512)
    core = DH * 2 * (DC + DR + DC) * (ctx + 1)
    per_token = 2 * DL * DV3_ATTN + DL * core + 2 * (3 * DV3_MLP_DENSE + 58 * DV3_MLP_MOE) + 2 * DE * DV3_VOCAB
    p = predict("h200", attention.from_model("deepseek-v3"), "decode", B, context=ctx, scope="model", dtype="fp8")
    assert rel(p.flops, B * per_token) < 0.01
    # the per-token weights of this count are the "37B activated" of the model card
    assert DV3_ATTN * DL + 3 * DV3_MLP_DENSE + 58 * DV3_MLP_MOE + DE * DV3_VOCAB == pytest.approx(37e9, rel=0.02)


def test_deepseek_v3_prefill_flops_match_the_hand_count():
    S = 4096
    pairs = S * (S + 1) / 2
    # prefill decompresses the latent (MHA mode): q.k over 192, p.v over 128 per head
    core = DH * 2 * (DN + DR + DV) * pairs
    hand = 2 * S * DL * DV3_NAIVE_ATTN + DL * core + 2 * S * (3 * DV3_MLP_DENSE + 58 * DV3_MLP_MOE) + 2 * DE * DV3_VOCAB
    p = predict("h100", attention.from_model("deepseek-v3"), "prefill", 1, seq=S, scope="model")
    assert rel(p.flops, hand) < 0.01


# ---- Qwen3, imported from a config.json written here
QWEN3_8B = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 4096,
            "intermediate_size": 12288, "num_hidden_layers": 36, "num_attention_heads": 32,
            "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936, "tie_word_embeddings": False,
            "max_position_embeddings": 40960, "sliding_window": None, "use_sliding_window": False,
            "rms_norm_eps": 1e-6, "rope_theta": 1000000, "torch_dtype": "bfloat16"}
QWEN3_30B_A3B = {"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "hidden_size": 2048,
                 "intermediate_size": 6144, "moe_intermediate_size": 768, "num_experts": 128,
                 "num_experts_per_tok": 8, "decoder_sparse_step": 1, "mlp_only_layers": [],
                 "num_hidden_layers": 48, "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128,
                 "vocab_size": 151936, "tie_word_embeddings": False, "max_position_embeddings": 40960,
                 "sliding_window": None, "use_sliding_window": False}


def write(tmp_path, cfg, name):
    d = tmp_path / name
    d.mkdir()
    (d / "config.json").write_text(json.dumps(cfg))
    return str(d / "config.json")


def test_qwen3_dense_from_config_json_step_flops(tmp_path):
    wl = attention.from_model(write(tmp_path, QWEN3_8B, "Qwen3-8B"))
    e, n, h, kv, d, i, v = 4096, 36, 32, 8, 128, 12288, 151936
    layer = e * h * d + 2 * e * kv * d + h * d * e + 3 * e * i
    assert wl.model.params == pytest.approx(n * layer + 2 * v * e) and wl.model.params == pytest.approx(8.19e9, rel=0.01)
    S, B = 4096, 4
    hand = B * (2 * S * n * layer + n * 2 * h * 2 * d * S * (S + 1) / 2 + 2 * e * v)
    p = predict("h100", wl, "prefill", B, seq=S, scope="model")
    assert rel(p.flops, hand) < 0.01


def test_qwen3_moe_from_config_json_step_flops(tmp_path):
    wl = attention.from_model(write(tmp_path, QWEN3_30B_A3B, "Qwen3-30B-A3B"))
    e, n, h, kv, d, v = 2048, 48, 32, 4, 128, 151936
    attn = e * h * d + 2 * e * kv * d + h * d * e
    moe_active = e * 128 + 3 * e * 768 * 8
    assert wl.model.params == pytest.approx(30.5e9, rel=0.01)  # "30.5B in total"
    assert wl.model.active_params == pytest.approx(3.3e9, rel=0.03)  # "3.3B activated"
    B, ctx = 16, 16384
    hand = B * (2 * n * (attn + moe_active) + n * 2 * h * 2 * d * (ctx + 1) + 2 * e * v)
    p = predict("h100", wl, "decode", B, context=ctx, scope="model")
    assert rel(p.flops, hand) < 0.01


# ---- behaviour
def test_decode_amortises_the_weights_over_the_batch():
    wl = attention.from_model("llama-3-70b")
    t = [predict("h100", wl, "decode", b, context=1024, scope="model", dtype="fp8").latency_s for b in (1, 8, 64)]
    per_token = [x / b for x, b in zip(t, (1, 8, 64))]
    assert t[0] < t[1] < t[2]  # a bigger step...
    assert per_token[0] > 4 * per_token[1] > 4 * per_token[2]  # ...costs far less per token
    # batch 1 reads the ~70.5 GB of fp8 weights once: at most the HBM's 3.35 TB/s
    assert t[0] > 70.5e9 / 3.35e12


def test_small_decode_batches_read_only_the_experts_they_route_to():
    from attn_dse.cost.ffn import moe_ffn
    from attn_dse.cost.roofline import ceilings
    from attn_dse.cost.step import gemm_costs
    from attn_dse.cost.knobs import knobs_for
    from attn_dse.hardware.loader import load_hardware
    hw = load_hardware("h100")
    wl = attention.from_model("deepseek-v3", expert_parallel=1)
    c, g = ceilings(hw, "bf16"), gemm_costs(hw, knobs_for(hw, "triton"))
    one = 3 * DE * 2048 * 2  # bytes of one expert in bf16
    w = [moe_ffn(c, g, wl.model.ffn, np.float64(t), DE, 1.0, 2, 2, 450e9).weight_bytes for t in (1, 4, 1024)]
    assert w[0] == pytest.approx(one * (8 + 1) + DE * 256 * 2)  # 8 routed + 1 shared + router
    assert one * 8 < w[1] - one - DE * 512 < one * 32  # 4 tokens: ~31 distinct experts
    assert w[2] == pytest.approx(one * 257 + DE * 256 * 2, rel=1e-6)  # every expert


def test_load_imbalance_slows_the_step_but_not_its_flops():
    base = predict("h200", attention.from_model("deepseek-v3"), "prefill", 1, seq=8192, scope="model", dtype="fp8")
    skew = predict("h200", attention.from_model("deepseek-v3", imbalance=1.5), "prefill", 1, seq=8192,
                   scope="model", dtype="fp8")
    assert skew.flops == base.flops
    assert skew.breakdown["ffn"] > 1.3 * base.breakdown["ffn"]


def test_chunked_prefill_keeps_the_flops_and_costs_weight_rereads():
    whole = predict("h100", attention.from_model("llama-3-70b"), "prefill", 1, seq=8192, scope="model")
    chunks = [predict("h100", attention.from_model("llama-3-70b", prefill_chunk=c), "prefill", 1, seq=8192,
                      scope="model") for c in (8192, 2048, 256)]
    assert all(p.flops == whole.flops for p in chunks)
    assert chunks[0].latency_s == whole.latency_s
    assert whole.latency_s < chunks[1].latency_s < chunks[2].latency_s
    # 32 chunks of 256 re-read the layers' bf16 weights (all but the embedding and LM head,
    # 2 x 128256 x 8192) 31 more times than one pass, and the earlier chunks' KV
    layers = 2 * 80 * LLAMA_LAYER
    extra = chunks[2].hbm_bytes - whole.hbm_bytes
    kv_reads = 256 * 32 * 31 / 2 * 80 * 2 * KV * D * 2
    assert extra == pytest.approx(31 * layers + kv_reads, rel=0.01)


def test_training_flops_match_the_hand_count():
    """Llama-3-8B (hidden 4096, 32 layers, 32/8 heads of 128, MLP 14336, vocab 128256): every
    GEMM 3x its forward (input and weight gradients), logits of every token, the attention
    core 3.5x its forward (FlashAttention's backward: 4 matmuls plus QK^T recomputed)."""
    e, n, h, kv, d, i, v, S = 4096, 32, 32, 8, 128, 14336, 128256, 4096
    layer = e * h * d + 2 * e * kv * d + h * d * e + 3 * e * i
    core = n * 2 * h * 2 * d * S * (S + 1) / 2
    hand = 3 * (2 * S * n * layer + 2 * S * e * v) + 3.5 * core
    tr = predict("h100", attention.from_model("llama-3-8b"), "train", 1, seq=4096, scope="model")
    assert rel(tr.flops, hand) < 0.01
    pre = predict("h100", attention.from_model("llama-3-8b"), "prefill", 1, seq=4096, scope="model")
    assert tr.latency_s > 2.5 * pre.latency_s


def test_serving_figures():
    wl = attention.from_model("llama-3-70b", tp=8)
    d = predict("h100", wl, "decode", 64, context=4096, scope="model")
    s = serving(d, wl)
    assert s["tpot_s"] == d.latency_s and np.isnan(s["ttft_s"])
    assert s["tokens_per_s_per_gpu"] == pytest.approx(64 / d.latency_s / 8)
    spec = predict("h100", wl, "decode", 64, seq=4, context=4096, scope="model")  # 4 tokens per step
    assert serving(spec, wl)["tpot_s"] == pytest.approx(spec.latency_s / 4)
    pf = predict("h100", wl, "prefill", 1, seq=4096, scope="model")
    assert serving(pf, wl)["ttft_s"] == pf.latency_s and np.isnan(serving(pf, wl)["tpot_s"])


def test_the_step_broadcasts_over_arrays():
    wl = attention.from_model("deepseek-v3")
    b = np.array([1, 8, 64, 256])
    arr = predict("h200", wl, "decode", b, context=np.array([1024, 4096, 16384, 65536]), scope="model")
    for i in range(4):
        one = predict("h200", wl, "decode", int(b[i]), context=[1024, 4096, 16384, 65536][i], scope="model")
        assert arr.latency_s[i] == pytest.approx(one.latency_s, rel=1e-12)
        assert arr.flops[i] == pytest.approx(one.flops, rel=1e-12)


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(E=st.sampled_from([512, 2048, 7168]), layers=st.integers(1, 8), dense=st.integers(0, 3),
       experts=st.sampled_from([0, 8, 64]), k=st.integers(1, 8), shared=st.integers(0, 2),
       tokens=st.integers(1, 4096), imbalance=st.floats(1.0, 3.0), ep=st.sampled_from([1, 2, 8]))
def test_mlp_flops_are_two_per_active_weight_per_token(E, layers, dense, experts, k, shared, tokens, imbalance, ep):
    """Whatever the routing skew and expert placement, the MLP's FLOPs per token are twice the
    weights one token multiplies (counted separately, from the model's shape)."""
    from attn_dse.cost.ffn import ffn_all_layers
    from attn_dse.cost.knobs import knobs_for
    from attn_dse.cost.roofline import ceilings
    from attn_dse.cost.step import gemm_costs
    from attn_dse.hardware.loader import load_hardware
    from attn_dse.workloads.models import FfnShape
    k = min(k, experts) if experts else 0
    f = FfnShape(intermediate_size=4 * E, n_experts=experts, top_k=k, n_shared_experts=shared if experts else 0,
                 expert_intermediate_size=E // 2 if experts else 0, first_k_dense=min(dense, layers) if experts else 0,
                 expert_parallel=ep if experts and experts % ep == 0 else 1, imbalance=imbalance)
    hw = load_hardware("h100")
    out = ffn_all_layers(ceilings(hw), gemm_costs(hw, knobs_for(hw, "triton")), f, np.float64(tokens), E, layers,
                         np.float64(1.0), 2, 2, 450e9)
    assert float(out.flops) == pytest.approx(2 * tokens * float(f.active_params(E, layers)), rel=1e-9)
    assert float(out.time_s) > 0
