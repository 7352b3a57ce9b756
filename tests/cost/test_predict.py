"""The performance model: hand-checkable predictions, regimes of real kernels, invariants."""
import numpy as np
import pytest

from attn_dse.cost.knobs import knobs_for
from attn_dse.hardware.loader import load_hardware
from hypothesis import given, settings
from hypothesis import strategies as st

from attn_dse import attention, load_hardware, predict
from attn_dse.cost import tiled

H100, H20 = load_hardware("h100"), load_hardware("h20")


def test_long_context_gqa_decode_runs_at_kv_bytes_over_bandwidth():
    wl = attention("gqa", n_heads=64, n_kv_heads=8, head_dim=128)
    p = predict(H100, wl, "decode", batch=32, context=65536)
    kv_read = 32 * 65536 * 8 * 256 * 2
    hand = kv_read / H100.hbm_bytes_per_s()  # KV bytes / measured copy bandwidth
    assert p.bound == "memory"
    assert hand <= p.latency_s <= 1.2 * hand


def test_mha_decode_intensity_is_one():
    p = predict(H100, attention("mha", n_heads=32), "decode", batch=8, context=32768)
    assert p.arithmetic_intensity == pytest.approx(1.0, rel=0.01) and p.bound == "memory"


def test_mla_absorbed_decode_compute_bound_on_h20_balanced_on_h100():
    wl = attention.from_model("deepseek-v3")  # scheme auto: absorbed in decode
    kw = dict(phase="decode", batch=64, context=32768)
    on_h20, on_h100 = predict(H20, wl, **kw), predict(H100, wl, **kw)
    assert on_h20.arithmetic_intensity == pytest.approx(240, rel=0.02)
    assert H20.ridge_point() == pytest.approx(37, rel=0.01)
    assert on_h20.bound == "compute"
    # on the H100 the intensity sits near the ridge point (datasheet 295, measured-ceiling 266)
    assert 0.6 <= on_h100.arithmetic_intensity / H100.ridge_point() <= 1.4
    assert 0.6 <= on_h100.arithmetic_intensity / H100.ridge_point(achievable=True) <= 1.4


def test_split_kv_fills_the_gpu_where_one_cta_per_head_cannot():
    """Both regimes, predicted and as measured on the H100 (stored CSV, GQA-8, 32k context)."""
    from attn_dse.validation.compare import default_measurements, load_measurements
    wl = attention("gqa", n_heads=64, n_kv_heads=8)
    kv = 32768 * 8 * 256 * 2
    best = predict(H100, wl, "decode", batch=1, context=32767)  # the model's own split choice
    split = predict(H100, wl, "decode", batch=1, context=32767, mapping={"n_split": 33})  # the kernel's
    single = predict(H100, wl, "decode", batch=1, context=32767, mapping={"n_split": 1})
    bw = H100.hbm_bytes_per_s()
    assert kv / single.latency_s < 0.3 * bw  # 8 CTAs on 132 SMs: most SMs idle
    assert kv / best.latency_s > 0.5 * bw and best.mapping["n_split"] > 1  # split-KV fills the SMs
    assert single.latency_s > 4 * best.latency_s
    rows = [r for r in load_measurements(default_measurements("h100")) if r["family"] == "decode"
            and r["batch"] == "1" and r["context"] == "32767" and r["n_kv_heads"] == "8" and r["seq"] == "1"]
    measured = {int(r["n_split"]) == 1: float(r["median_s"]) for r in rows}
    assert kv / measured[True] < 0.3 * bw and kv / measured[False] > 0.6 * bw
    assert single.latency_s == pytest.approx(measured[True], rel=0.15)
    assert split.latency_s == pytest.approx(measured[False], rel=0.25)


def test_unfused_prefill_is_slower_and_moves_scores():
    wl = attention("gqa", n_heads=32, n_kv_heads=8)
    fused = predict(H100, wl, "prefill", seq=8192)
    unfused = predict(H100, wl, "prefill", seq=8192, fused=False)
    assert unfused.latency_s > fused.latency_s and unfused.hbm_bytes > 10 * fused.hbm_bytes


def test_datasheet_vs_achievable_ceilings():
    wl = attention("gqa", n_heads=32, n_kv_heads=8)
    a = predict(H100, wl, "decode", batch=64, context=8192)
    d = predict(H100, wl, "decode", batch=64, context=8192, achievable=False)
    assert a.ceilings == "achievable" and d.ceilings == "datasheet"
    assert d.latency_s < a.latency_s  # 3.35 TB/s datasheet vs 3.0 measured


VARIANTS = {"gqa": dict(n_heads=32, n_kv_heads=8), "mla": {}, "mha": dict(n_heads=16),
            "swa": dict(n_heads=32, n_kv_heads=8, window=2048), "mfa": dict(d_model=4096, n_heads=32),
            "linear": dict(n_heads=16), "nsa": dict(n_heads=32, n_kv_heads=4),
            "block_sparse": dict(n_heads=32, n_kv_heads=8, block_size=64, top_k=4)}
points = st.fixed_dictionaries({
    "name": st.sampled_from(sorted(VARIANTS)), "hw": st.sampled_from(["h100", "h20", "tpu-v5e", "mi300x", "b200"]),
    "phase": st.sampled_from(["prefill", "decode"]), "batch": st.integers(1, 128),
    "length": st.integers(256, 65536), "scope": st.sampled_from(["core", "layer"])})


def _predict(pt, hw=None, length=None):
    wl = attention(pt["name"], **VARIANTS[pt["name"]])
    n = length or pt["length"]
    kw = dict(context=n) if pt["phase"] == "decode" else dict(seq=n)
    return predict(hw or load_hardware(pt["hw"]), wl, pt["phase"], pt["batch"], scope=pt["scope"], **kw)


@settings(max_examples=40, deadline=None)
@given(pt=points, f=st.floats(1.01, 8.0), what=st.sampled_from(["hbm_bandwidth", "matmul", "exp"]))
def test_more_bandwidth_or_flops_never_slower(pt, f, what):
    hw = load_hardware(pt["hw"])
    assert _predict(pt, hw.scaled(**{what: f})).latency_s <= _predict(pt, hw).latency_s * (1 + 1e-12)


@settings(max_examples=40, deadline=None)
@given(pt=points, extra=st.integers(1, 50000))
def test_larger_context_never_makes_decode_faster(pt, extra):
    pt = dict(pt, phase="decode")
    if pt["name"] == "nsa":  # a step that completes a compression block (every 16 tokens) also
        extra *= 16          # runs the compression MLP: compare steps at the same point of that period
    assert _predict(pt, length=pt["length"] + extra).latency_s >= _predict(pt).latency_s * (1 - 1e-12)


@settings(max_examples=40, deadline=None)
@given(pt=points)
def test_chosen_mapping_fits_on_chip(pt):
    hw = load_hardware(pt["hw"])
    wl = attention(pt["name"], **VARIANTS[pt["name"]])
    kw = dict(context=pt["length"]) if pt["phase"] == "decode" else dict(seq=pt["length"])
    p = predict(hw, wl, pt["phase"], pt["batch"], **kw)
    for spec, _ in wl.kernel_specs(wl.shape(pt["phase"], pt["batch"], **kw)):
        if p.mapping:
            assert np.all(tiled.fits_on_chip(hw, spec, p.mapping["block_m"], p.mapping["block_n"],
                                                p.mapping["stages"]))


def test_predict_broadcasts_over_arrays():
    ctx = np.array([1024, 8192, 65536])
    wl = attention("gqa", n_heads=32, n_kv_heads=8)
    vec = predict(H100, wl, "decode", batch=np.array([1, 16, 64]), context=ctx)
    for i, (b, c) in enumerate([(1, 1024), (16, 8192), (64, 65536)]):
        one = predict(H100, wl, "decode", batch=b, context=c)
        assert vec.latency_s[i] == pytest.approx(one.latency_s)
        assert vec.limiter[i] == one.limiter


def test_train_is_the_forward_plus_its_own_backward_kernel():
    """FlashAttention-2's backward recomputes S = QK^T and runs dP = dO V^T, dV, dK and dQ: five
    d-wide matmuls per pair against the forward's two, so a training step executes 3.5x the
    forward's FLOPs; its time follows the backward family's own knobs, not a FLOP ratio."""
    import dataclasses
    wl = attention("gqa", n_heads=32, n_kv_heads=8)
    tr = predict(H100, wl, "train", seq=8192)
    pf = predict(H100, wl, "prefill", seq=8192)
    assert tr.flops == pytest.approx(3.5 * pf.flops, rel=1e-9)
    # executed: the backward may pick other tiles, so its diagonal waste differs a little
    assert tr.executed_flops == pytest.approx(3.5 * pf.executed_flops, rel=0.01)
    knobs = knobs_for(load_hardware(H100))
    slow = knobs.with_values({"compute_efficiency.backward": knobs.family("backward").compute_efficiency / 2})
    slower = predict(H100, wl, "train", seq=8192, kernel=slow)
    backward = tr.breakdown["attention"] - pf.breakdown["attention"]
    # the backward's matmuls at half the rate: its time nearly doubles (its exps and fills do not)
    assert 1.6 * backward < slower.breakdown["attention"] - pf.breakdown["attention"] <= 2 * backward
    assert dataclasses.replace(slow).family("prefill") == knobs.family("prefill")


@pytest.mark.parametrize("phase", ["decode", "prefill"])
def test_points_searched_in_passes_equal_the_same_points_one_at_a_time(phase):
    """The mapping search over more points than one pass (timed in passes, winners re-timed)
    gives each point what predicting it alone gives (one flat candidate axis, Python floats)."""
    from attn_dse.cost.tiled import POINTS_PER_PASS
    rng = np.random.default_rng(7)
    n = 2 * POINTS_PER_PASS + 7
    b, c = rng.integers(1, 257, n).astype(float), rng.integers(1, 131073, n).astype(float)
    wl = attention("gqa", n_heads=32, n_kv_heads=8, head_dim=128)
    kw = dict(seq=1, context=c) if phase == "decode" else dict(seq=c)
    many = predict("h100", wl, phase, b, **kw)
    for i in rng.choice(n, 24, replace=False):
        one = predict("h100", wl, phase, b[i], **{k: (v[i] if np.ndim(v) else v) for k, v in kw.items()})
        assert many.latency_s[i] == one.latency_s and many.hbm_bytes[i] == one.hbm_bytes
        assert many.limiter[i] == one.limiter and many.bound[i] == one.bound
        assert {k: v[i] for k, v in many.mapping.items()} == one.mapping
