"""Invariants of the workload models, by hypothesis, plus graph/array agreement."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attn_dse import attention
from attn_dse.errors import AttnDseError
from attn_dse.workloads.ops import graph_cost
from attn_dse.workloads.registry import variants

heads = st.sampled_from([1, 2, 4, 8, 16, 32, 64])
dims = st.sampled_from([32, 64, 128, 256])
lengths = st.integers(1, 200_000)
batches = st.integers(1, 512)


@given(h=heads, g=st.sampled_from([1, 2, 4]), d=dims, b=batches, s=st.integers(1, 20000),
       phase=st.sampled_from(["prefill", "train"]))
def test_gqa_with_all_kv_heads_equals_mha(h, g, d, b, s, phase):
    gqa = attention("gqa", n_heads=h * g, n_kv_heads=h * g, head_dim=d)
    mha = attention("mha", n_heads=h * g, head_dim=d)
    for scope in ("core", "layer"):
        a, m = gqa.cost(phase, b, s, scope=scope), mha.cost(phase, b, s, scope=scope)
        assert (a.flops, a.hbm_bytes, a.kv_cache_bytes) == (m.flops, m.hbm_bytes, m.kv_cache_bytes)


@given(h=heads, d=dims, b=batches, k=st.integers(2, 16), ctx=lengths)
def test_flops_bytes_kv_linear_in_batch(h, d, b, k, ctx):
    wl = attention("gqa", n_heads=h, n_kv_heads=1, head_dim=d)
    one, many = wl.cost("decode", b, context=ctx), wl.cost("decode", b * k, context=ctx)
    assert many.flops == pytest.approx(k * one.flops)
    assert many.kv_cache_bytes == pytest.approx(k * one.kv_cache_bytes)
    assert many.hbm_bytes == pytest.approx(k * one.hbm_bytes)


@given(name=st.sampled_from(["gqa", "mla", "swa", "block_sparse", "cca", "mfa", "sqa"]),
       s=st.integers(1, 50000), b=st.integers(1, 64))
def test_causal_never_exceeds_non_causal(name, s, b):
    params = {"gqa": dict(n_heads=32, n_kv_heads=8), "swa": dict(n_heads=32, n_kv_heads=8, window=1024),
              "block_sparse": dict(n_heads=32, n_kv_heads=8, block_size=64, top_k=1),
              "cca": dict(d_model=4096, n_heads=16), "mfa": dict(d_model=4096, n_heads=16),
              "sqa": dict(n_heads=32, form="symmetric"), "mla": {}}[name]
    wl = attention(name, **params)
    assert wl.cost("prefill", b, s, causal=True).flops <= wl.cost("prefill", b, s, causal=False).flops


@given(s=st.integers(1, 30000), extra=st.integers(0, 10000), phase=st.sampled_from(["prefill", "decode"]))
def test_window_covering_context_equals_full_causal(s, extra, phase):
    kw = dict(seq=s) if phase == "prefill" else dict(context=s)
    full = attention("gqa", n_heads=8, n_kv_heads=2).cost(phase, 3, **kw)
    swa = attention("swa", n_heads=8, n_kv_heads=2, window=s + 1 + extra).cost(phase, 3, **kw)
    assert swa.flops == full.flops and swa.hbm_bytes == full.hbm_bytes and swa.kv_cache_bytes == full.kv_cache_bytes


@given(k=st.sampled_from([1, 2, 3, 4, 8]), m=st.integers(1, 10), ctx=lengths,
       base=st.sampled_from(["gqa", "mla", "mfa"]))
def test_cla_model_kv_is_base_over_k(k, m, ctx, base):
    extra = {"gqa": dict(n_heads=32, n_kv_heads=8), "mla": {}, "mfa": dict(d_model=4096, n_heads=16)}[base]
    cla = attention("cla", base=base, share=k, n_layers=k * m, **extra)
    plain = attention(base, n_layers=k * m, **extra)
    a = cla.cost("decode", 4, context=ctx, scope="model").kv_cache_bytes
    b = plain.cost("decode", 4, context=ctx, scope="model").kv_cache_bytes
    assert a == pytest.approx(b / k)
    # per-layer decode traffic of the attention kernel does not change (CLA section 2.3)
    assert cla.cost("decode", 4, context=ctx).hbm_bytes == plain.cost("decode", 4, context=ctx).hbm_bytes


EXAMPLES = {"gqa": dict(n_heads=8, n_kv_heads=2), "mha": dict(n_heads=8), "mqa": dict(n_heads=8),
            "sqa": dict(n_heads=8, form="symmetric"), "swa": dict(n_heads=8, n_kv_heads=2, window=64),
            "mla": {}, "tpla": {}, "dsa": {}, "neighborhood": dict(n_heads=8, n_kv_heads=2, grid="300", window="9"), "cla": dict(n_heads=8, n_kv_heads=2),
            "block_sparse": dict(n_heads=8, n_kv_heads=2, block_size=64, top_k=2),
            "nsa": dict(n_heads=8, n_kv_heads=2), "linear": dict(n_heads=8), "cca": dict(d_model=1024, n_heads=8),
            "ccgqa": dict(d_model=1024, n_heads=8), "mfa": dict(d_model=1024, n_heads=8),
            "mfa_kr": dict(d_model=1024, n_heads=8)}


GRID_ONLY = {"neighborhood"}  # defined over a whole token grid: prefill/train only


def test_every_registered_variant_has_an_example():
    assert set(EXAMPLES) == set(variants())


@pytest.mark.parametrize("name", sorted(EXAMPLES))
@pytest.mark.parametrize("phase", ["prefill", "decode", "train"])
@pytest.mark.parametrize("fused", [True, False])
def test_graph_agrees_with_vectorized_cost(name, phase, fused):
    if name in GRID_ONLY and phase == "decode":
        pytest.skip("attention over a whole token grid has no decode step")
    wl = attention(name, **EXAMPLES[name])
    kw = dict(context=700) if phase == "decode" else dict(seq=300)
    for scope in ("core", "layer"):
        cost = wl.cost(phase, 3, scope=scope, fused=fused, **kw)
        g = graph_cost(wl.graph(phase, 3, scope=scope, fused=fused, **kw))
        assert g["flops"] == pytest.approx(cost.flops) and g["exps"] == pytest.approx(cost.exps)
        assert g["hbm_bytes"] == pytest.approx(cost.hbm_bytes)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_core_scope_is_the_layers_core_ops(name, phase):
    """scope=core builds the core without the projections; it must be exactly the layer's ops
    of group core (a variant with layer ops of its own must not inherit another's core)."""
    if name in GRID_ONLY and phase == "decode":
        pytest.skip("attention over a whole token grid has no decode step")
    wl = attention(name, **EXAMPLES[name])
    s = wl.shape(phase, 3, **(dict(context=700) if phase == "decode" else dict(seq=300)))
    layer = [op for op in wl.variant.layer_ops(wl.params, s) if op.group == "core"]
    assert layer and wl.ops(s, "core") == layer


def test_unfused_moves_scores_through_hbm():
    wl = attention("gqa", n_heads=32, n_kv_heads=8)
    fused, unfused = wl.cost("prefill", 1, 4096), wl.cost("prefill", 1, 4096, fused=False)
    pairs = 4096 * 4097 / 2
    # fp32 scores and bf16 probabilities, each written once and read once
    assert unfused.hbm_bytes - fused.hbm_bytes == pytest.approx(32 * pairs * (4 + 2) * 2)
    assert unfused.flops == fused.flops


def test_vectorized_over_arrays_equals_pointwise():
    ctx = np.array([1024, 8192, 131072])
    kv = np.array([1, 2, 8])
    wl = attention("gqa", n_heads=32, n_kv_heads=kv, head_dim=128)
    vec = wl.cost("decode", 16, context=ctx)
    for i in range(3):
        one = attention("gqa", n_heads=32, n_kv_heads=int(kv[i])).cost("decode", 16, context=int(ctx[i]))
        assert vec.flops[i] == one.flops and vec.hbm_bytes[i] == one.hbm_bytes


@pytest.mark.parametrize("name,params,fix", [
    ("gqa", dict(n_heads=32, n_kv_heads=6), "divisors of n_heads"),
    ("swa", dict(n_heads=8, n_kv_heads=2, window=0), "window"),
    ("gqa", dict(n_heads=32, n_kv_heads=8, n_kv_head=4), "did you mean 'n_kv_heads'"),
    ("gqa", dict(n_heads=32), "missing parameter 'n_kv_heads'"),
    ("gqx", dict(n_heads=32), "unknown variant 'gqx'"),
    ("mla", dict(scheme="fast"), "not one of"),
    ("sqa", dict(n_heads=8, n_query_heads=16, n_kv_heads=4), "n_query_heads must be <= n_heads"),
])
def test_bad_parameters_get_clear_errors(name, params, fix):
    with pytest.raises(AttnDseError, match=fix):
        attention(name, **params)


def test_top_k_beyond_blocks_is_an_error():
    wl = attention("block_sparse", n_heads=8, n_kv_heads=2, block_size=512, top_k=16)
    with pytest.raises(AttnDseError, match="top_k=16 exceeds the 8 blocks"):
        wl.cost("decode", 1, context=4095)


def test_reference_figures():
    """Published/derived figures from shared/reference/variants.md."""
    mla = attention("mla", scheme="absorbed")
    c = mla.cost("decode", 1, context=32768)
    assert c.flops / c.hbm_bytes == pytest.approx(241.8, rel=0.01)  # AI of absorbed MLA
    assert mla.kv_cache_bytes(mla.shape("decode", 1, context=1), "core") == 1152  # bytes/token/layer
    fp8 = attention("mla", kv_layout="flashmla_fp8")
    assert fp8.kv_cache_bytes(fp8.shape("decode", 1, context=1)) == 656
    v3 = attention("mla", scheme="naive")
    # DeepSeek-V3 projections: 374.3 MFLOP per token per layer (variants.md 2.2)
    proj = v3.cost("decode", 1, context=0, scope="layer").flops - v3.cost("decode", 1, context=0).flops
    assert proj == pytest.approx(374.3e6, rel=0.001)
    # MLA in decode: score matmul 4x the naive per-KV-token FLOPs ratio 278528/81920 = 3.4
    absorbed = mla.cost("decode", 1, context=100000).flops / 100001
    naive = v3.cost("decode", 1, context=100000).flops / 100001
    assert absorbed == pytest.approx(278528, rel=1e-3) and naive == pytest.approx(81920, rel=1e-3)
    tpla = attention("tpla", tp=2).cost("decode", 1, context=32768)
    assert tpla.flops / tpla.hbm_bytes == pytest.approx(230, rel=0.01)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
@pytest.mark.parametrize("phase", ["prefill", "decode", "train"])
def test_each_tensor_has_one_size(name, phase):
    """Ops that pass a tensor agree on its bytes (else the graph's traffic would be wrong)."""
    if name in GRID_ONLY and phase == "decode":
        pytest.skip("attention over a whole token grid has no decode step")
    wl = attention(name, **EXAMPLES[name])
    kw = dict(context=700) if phase == "decode" else dict(seq=300)
    s = wl.shape(phase, 3, **kw)
    sizes = {}
    for op in wl.ops(s, "layer"):
        for t in op.reads + op.writes:
            sizes.setdefault(t.name, set()).add(float(t.bytes))
    assert {k: v for k, v in sizes.items() if len(v) > 1} == {}
