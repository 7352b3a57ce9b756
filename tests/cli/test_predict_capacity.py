"""`predict` says whether the point fits one device: the KV cache of every layer plus the
scope's weights against the usable 90% of HBM, in the table, in --json, and as a warning."""
from __future__ import annotations

import json

from click.testing import CliRunner

from attn_dse import attention, predict
from attn_dse.cli.main import cli

LLAMA = ["predict", "h100", "--model", "llama-3-70b", "--phase", "decode"]
KV_PER_TOKEN = 80 * 2 * 8 * 128 * 2  # layers x (K, V) x KV heads x head_dim x bf16 bytes


def run_json(*args):
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), result.stderr


def test_335_tb_of_kv_does_not_fit_an_h100_and_says_so():
    data, err = run_json(*LLAMA, "--batch", "1024", "--context", "1000000")
    assert data["memory_bytes"] == 1024 * 1_000_000 * KV_PER_TOKEN  # 335.5 TB, no weights at scope core
    assert data["fits"] is False and data["usable_bytes"] == 0.9 * 80e9
    assert err.startswith("warning: does not fit: 335.5 TB needed") and err.count("\n") == 1


def test_a_small_batch_fits_without_a_warning():
    data, err = run_json(*LLAMA, "--batch", "16", "--context", "8192")
    assert data["fits"] is True and data["memory_bytes"] == 16 * 8192 * KV_PER_TOKEN and err == ""


def test_the_scope_decides_which_weights_count():
    core, _ = run_json(*LLAMA, "--batch", "16", "--context", "8192")
    layer, _ = run_json(*LLAMA, "--batch", "16", "--context", "8192", "--scope", "layer")
    model, err = run_json(*LLAMA, "--batch", "16", "--context", "8192", "--scope", "model")
    wl = attention.from_model("llama-3-70b")
    one_layer = predict("h100", wl, "decode", 16, context=8192, scope="layer").weight_bytes
    assert layer["memory_bytes"] - core["memory_bytes"] == one_layer
    # scope model: the whole model's weights, counted by hand from Llama-3-70B's config.json
    # (80 layers of q/o 8192x8192, k/v 8192x1024, gate/up/down 8192x28672; embeddings and LM head
    # 128256x8192 each), in bf16, plus the step's activations
    params = 80 * (2 * 8192 * 8192 + 2 * 8192 * 1024 + 3 * 8192 * 28672) + 2 * 128256 * 8192
    assert params == 70_552_387_584  # the 70.6 B the model card states
    assert model["memory_weight_bytes"] == 2 * params
    assert model["memory_bytes"] - core["memory_bytes"] == 2 * params + model["activation_bytes"]
    assert 0 < model["activation_bytes"] < 1e-3 * model["memory_bytes"]  # one decode token per sequence
    assert model["fits"] is False and "does not fit" in err
    assert "scope model" in model["capacity_counts"] and "scope core" in core["capacity_counts"]


def test_a_variant_without_depth_counts_one_layer():
    data, _ = run_json("predict", "h100", "--variant", "gqa", "--param", "n_heads=32", "--param", "n_kv_heads=8",
                       "--batch", "4", "--context", "4096")
    assert data["memory_bytes"] == data["kv_cache_bytes"] == 4 * 4096 * 2 * 8 * 128 * 2
    assert "one layer" in data["capacity_counts"]


def test_the_table_reports_fit_and_bytes():
    result = CliRunner().invoke(cli, [*LLAMA, "--batch", "1024", "--context", "1000000"])
    assert result.exit_code == 0
    assert "DOES NOT FIT one device" in result.stdout and "335.5 TB needed of 72 GB usable" in result.stdout
