"""The memory plan: weights counted as the step reads them, paged KV in its dtype, activations,
fragmentation, and the largest batch at a context, against hand counts."""
import numpy as np
import pytest

from attn_dse import attention, load_hardware, predict
from attn_dse.cost.capacity import capacity
from attn_dse.errors import AttnDseError

LLAMA_PARAMS = 80 * (2 * 8192 * 8192 + 2 * 8192 * 1024 + 3 * 8192 * 28672) + 2 * 128256 * 8192
LLAMA_KV_TOKEN = 80 * 2 * 8 * 128  # elements per token, all layers


def plan(model="llama-3-70b", hw="h200", ctx=32768, batch=1, **kw):
    wl = attention.from_model(model, **kw.pop("over", {}))
    return capacity(load_hardware(hw), wl, "decode", batch, ctx, 1, kw.pop("dtype", "bf16"), **kw)


def test_llama_3_70b_max_batch_on_an_h200():
    c = plan(weight_dtype="fp8", kv_block=16)
    usable = 0.9 * 141e9
    assert c.weight_bytes == LLAMA_PARAMS  # one byte each
    kv = 32768 * LLAMA_KV_TOKEN * 2  # bf16, 32768 is whole pages
    act = float(c.activation_bytes)
    assert 0 < act < 1e-3 * kv
    assert c.max_batch == np.floor((usable - LLAMA_PARAMS) / (kv + act)) == 5


def test_llama_3_70b_does_not_fit_an_h100_in_bf16():
    c = plan(hw="h100", ctx=8192)
    assert c.max_batch == 0 and not c.fits  # 141 GB of weights on 72 GB usable


def test_paging_rounds_each_context_up_to_whole_pages():
    a, b, c = (plan(ctx=1000, kv_block=k, weight_dtype="fp8") for k in (1, 16, 256))
    per_token = LLAMA_KV_TOKEN * 2
    assert a.kv_bytes == 1000 * per_token
    assert b.kv_bytes == 1008 * per_token  # 63 pages of 16
    assert c.kv_bytes == 1024 * per_token  # 4 pages of 256


def test_kv_dtype_and_fragmentation():
    bf16 = plan(weight_dtype="fp8", batch=4)
    fp8 = plan(weight_dtype="fp8", kv_dtype="fp8", batch=4)
    # fp8 stores one byte per element plus one fp32 scale per 128 elements
    fp8_per_bf16 = (1 + 4 / 128) / 2
    assert fp8.kv_bytes == pytest.approx(bf16.kv_bytes * fp8_per_bf16)
    assert fp8.max_batch == np.floor((0.9 * 141e9 - LLAMA_PARAMS)
                                     / (32768 * LLAMA_KV_TOKEN * (1 + 4 / 128) + fp8.activation_bytes / 4))
    frag = plan(weight_dtype="fp8", fragmentation=0.1)
    assert frag.fragmentation_bytes == pytest.approx(0.1 * 0.9 * 141e9)
    assert frag.memory_bytes == pytest.approx(frag.weight_bytes + frag.kv_bytes + frag.activation_bytes
                                              + frag.fragmentation_bytes)
    assert frag.max_batch < bf16.max_batch
    with pytest.raises(AttnDseError, match="fragmentation"):
        plan(fragmentation=1.0)


def test_deepseek_v3_weights_per_gpu_at_expert_parallel_8():
    """Routed experts spread over 8 GPUs (32 each); attention, dense layers, shared experts,
    routers, embeddings and LM head on every GPU (tp 1)."""
    E = 7168
    attn = 7168 * 1536 + 1536 * 128 * 192 + 7168 * 576 + 512 * 128 * 256 + 128 * 128 * 7168
    expert = 3 * E * 2048
    per_gpu = 61 * attn + 3 * 3 * E * 18432 + 58 * (32 * expert + expert + E * 256) + 2 * 129280 * E
    c = plan("deepseek-v3", weight_dtype="fp8", ctx=4096)
    assert c.weight_bytes == pytest.approx(per_gpu, rel=1e-9)
    c16 = plan("deepseek-v3", weight_dtype="fp8", ctx=4096, over={"expert_parallel": 16})
    assert c.weight_bytes - c16.weight_bytes == pytest.approx(58 * 16 * expert, rel=1e-9)
    # the latent cache: 576 bf16 per token per layer
    assert c.kv_bytes_per_token == 61 * 576 * 2


def test_the_plan_holds_what_the_step_reads():
    """Both scopes agree: a prefill step reads every layer weight the plan holds, and the LM
    head; the plan also holds the input embedding, which the step only gathers rows of."""
    wl = attention.from_model("llama-3-70b")
    p = predict("h200", wl, "prefill", 1, seq=8192, scope="model")
    c = capacity(load_hardware("h200"), wl, "prefill", 1, 8192, dtype="bf16")
    assert c.weight_bytes == pytest.approx(p.weight_bytes + 128256 * 8192 * 2, rel=1e-12)
    assert c.weight_bytes == 2 * LLAMA_PARAMS


def test_the_sweep_and_predict_use_the_same_plan():
    from click.testing import CliRunner
    import json
    from attn_dse.cli.main import cli
    from attn_dse.dse.evaluate import evaluate
    from attn_dse.dse.space import space_from_dict
    r = evaluate(space_from_dict({"variants": ["deepseek-v3"],
                                  "workload": {"phase": "decode", "batch": [8], "context": [8192], "dtype": "fp8"}}),
                 ("h200",))
    out = CliRunner().invoke(cli, ["predict", "h200", "--model", "deepseek-v3", "--phase", "decode", "--batch", "8",
                                   "--context", "8192", "--dtype", "fp8", "--scope", "model", "--kv-block", "1",
                                   "--kernel", "triton", "--json"])  # the sweep times our kernels
    data = json.loads(out.stdout)
    assert r.columns["weight_bytes"][0] == data["memory_weight_bytes"]
    assert r.columns["max_batch"][0] == data["max_batch"]
    assert r.columns["tokens_per_s_per_gpu"][0] == pytest.approx(data["tokens_per_s_per_gpu"])
