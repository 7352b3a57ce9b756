"""The study's serving table: the best variant per (context, TPOT target) in tokens/s per GPU."""
import numpy as np

from attn_dse.dse.study import best_under_tpot


def cols(rows):
    keys = ("label", "phase", "context", "batch", "tpot_s", "tokens_per_s_per_gpu", "feasible")
    out = {k: np.array([r[i] for r in rows], dtype=object if k in ("label", "phase") else float) for i, k in enumerate(keys)}
    out["feasible"] = out["feasible"].astype(bool)
    return out


def test_picks_the_highest_throughput_that_meets_the_target_and_fits():
    c = cols([("x/gqa-8", "decode", 8192, 8, 0.010, 800, True),
              ("x/gqa-8", "decode", 8192, 64, 0.040, 1600, True),
              ("x/mla", "decode", 8192, 64, 0.030, 2100, True),
              ("x/mla", "decode", 8192, 256, 0.090, 2800, True),
              ("x/nsa", "decode", 8192, 256, 0.045, 5000, False),  # does not fit
              ("x/nsa", "prefill", 8192, 1, np.nan, 9000, True)])  # not a decode step
    short = np.array([l.split("/")[1] for l in c["label"]], dtype=object)
    rows = {r["tpot_target_ms"]: r for r in best_under_tpot(c, short, np.ones(6, bool), "x", (8192,), (20, 50, 100))}
    assert (rows[20]["winner"], rows[20]["batch"], rows[20]["tokens_per_s_per_gpu"]) == ("gqa-8", 8, 800)
    assert (rows[50]["winner"], rows[50]["tokens_per_s_per_gpu"], rows[50]["gqa8_tokens_per_s_per_gpu"]) == ("mla", 2100, 1600)
    assert (rows[100]["winner"], rows[100]["batch"]) == ("mla", 256)
    none = best_under_tpot(c, short, np.ones(6, bool), "x", (8192,), (5,))[0]
    assert none["winner"] is None and none["tokens_per_s_per_gpu"] == 0


def test_serving_curves_under_tensor_parallel_8():
    from attn_dse.dse.study import serving_curves
    rows = serving_curves("h100", ("gqa-8", "mla"), (8192,))
    gqa = [r for r in rows if r["label"] == "gqa-8"]
    mla = [r for r in rows if r["label"] == "mla"]
    # hand count: Llama-3-70B's 70.55 B fp8 weights over 8 GPUs; GQA-8 keeps one KV head per GPU:
    # 80 layers x (K, V) x 128 x 1 byte = 20 KiB per token, 8192 tokens per sequence
    weights = (80 * (2 * 8192 * 8192 + 2 * 8192 * 1024 + 3 * 8192 * 28672) + 2 * 128256 * 8192) / 8
    kv = 8192 * 80 * 2 * 128
    assert gqa[0]["max_batch"] == np.floor((0.9 * 80e9 - weights) / kv) == 376  # activations < 0.5% of KV
    # MLA's latent (576 per token per layer) is held whole by every GPU: 2.25x GQA-8's bytes here
    assert mla[0]["max_batch"] < gqa[0]["max_batch"] / 2
    for curve in (gqa, mla):
        assert [r["batch"] for r in curve] == sorted(r["batch"] for r in curve)
        assert all(b["tpot_s"] > a["tpot_s"] and b["tokens_per_s_per_gpu"] > a["tokens_per_s_per_gpu"]
                   for a, b in zip(curve, curve[1:]))
        assert max(r["batch"] for r in curve) <= curve[0]["max_batch"]


def test_step_figure_script(tmp_path):
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "step_figure.py"
    spec = importlib.util.spec_from_file_location("step_figure", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows = mod.curves()
    out = mod.draw(rows, tmp_path / "f.png")
    assert out.stat().st_size > 10_000
    text = mod.table(rows)
    assert text.count("\n") == 1 + 2 * 2 * 3 and "| h20 | 32k | mla |" in text
