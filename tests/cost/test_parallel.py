"""Parallel schemes: FLOP conservation, ring overlap bounds, the TPLA mechanism, bad input."""
import pytest

from attn_dse import attention, predict
from attn_dse.cost.parallel import Parallel, predict_parallel, tpla_speedup
from attn_dse.errors import AttnDseError

GQA = attention("gqa", n_heads=64, n_kv_heads=8, head_dim=128, d_model=8192)


@pytest.mark.parametrize("tp", [2, 4, 8])
def test_tp_conserves_attention_flops(tp):
    one = predict("h200", GQA, "decode", 8, context=4096)
    many = predict_parallel("h200", GQA, "decode", 8, context=4096, par=Parallel(tp=tp))
    # 2 FLOP x (QK + PV) x 64 heads x 8 x 4097 keys x 128, split over tp devices
    assert many.flops == pytest.approx(one.flops) == pytest.approx(2 * 2 * 64 * 8 * 4097 * 128)
    assert many.flops_per_device == pytest.approx(one.flops / tp)


@pytest.mark.parametrize("cp,scheme", [(2, "ring"), (4, "ring"), (8, "ring"), (4, "ulysses")])
def test_cp_prefill_conserves_causal_pairs(cp, scheme):
    S = 16384
    many = predict_parallel("h200", GQA, "prefill", 1, S, par=Parallel(cp=cp, cp_scheme=scheme))
    pairs = S * (S + 1) / 2
    assert many.flops == pytest.approx(2 * 2 * 64 * pairs * 128)


def test_cp_decode_conserves_flops():
    many = predict_parallel("h200", GQA, "decode", 4, context=65536, par=Parallel(cp=4))
    assert many.flops == pytest.approx(2 * 2 * 64 * 4 * 65537 * 128, rel=1e-3)


def test_ring_overlap_bounds():
    r = predict_parallel("h200", GQA, "prefill", 1, 32768, par=Parallel(cp=4))
    b = r.breakdown
    assert r.latency_s >= b["attention"] + b["cp_merge"] - 1e-12  # comm can only add
    assert r.latency_s >= b["cp_send_recv"]
    assert r.latency_s <= b["attention"] * 1.1 + b["cp_merge"] + b["cp_send_recv"] + 1e-12  # never worse than serial
    assert 0 <= b["cp_exposed"] <= b["cp_send_recv"] + b["attention"] * 0.1


def test_ring_exposes_comm_across_nodes():
    inside = predict_parallel("h200", GQA, "prefill", 1, 8192, par=Parallel(cp=8))
    across = predict_parallel("h200", GQA, "prefill", 1, 8192, par=Parallel(cp=8, nodes=8))
    assert across.exposed_comm_s > inside.exposed_comm_s


def test_tpla_mechanism_kv_bytes_and_compute():
    mla = predict_parallel("h100", attention("mla", scheme="absorbed"), "decode", 1, context=32768, par=Parallel(tp=2))
    tpla = predict_parallel("h100", attention("tpla", tp=2), "decode", 1, context=32768, par=Parallel(tp=2))
    assert mla.kv_cache_bytes / tpla.kv_cache_bytes == pytest.approx(576 / 320)  # (512+64) vs (256+64) per token
    # TPLA keeps all 128 heads: per-device FLOPs 128 x (320 + 256) vs 64 x (576 + 512), x2 x keys
    assert tpla.flops_per_device / mla.flops_per_device == pytest.approx(128 * 576 / (64 * 1088), rel=1e-3)
    r = tpla_speedup("h100", 1)
    assert 1.0 < r["speedup"] < 576 / 320


def test_bad_parallel_inputs():
    with pytest.raises(AttnDseError, match="per node"):
        predict_parallel("h200", GQA, "decode", 1, context=4096, par=Parallel(tp=16))
    with pytest.raises(AttnDseError, match="no link between nodes"):
        predict_parallel("h20", GQA, "decode", 1, context=4096, par=Parallel(tp=8, cp=2, nodes=2))
    with pytest.raises(AttnDseError, match="equal chunks"):
        predict_parallel("h200", GQA, "prefill", 1, 1000, par=Parallel(cp=8))
    with pytest.raises(AttnDseError, match="not divisible"):
        predict_parallel("h200", GQA, "decode", 1, context=4096, par=Parallel(tp=3, nodes=1))
    with pytest.raises(AttnDseError, match="cp-scheme"):
        predict_parallel("h200", GQA, "prefill", 1, 4096, par=Parallel(cp=2, cp_scheme="zigzag"))


def test_parallel_doc_tables_are_current():
    from pathlib import Path

    from attn_dse.cost.parallel import tables
    doc = (Path(__file__).parents[2] / "docs" / "PARALLEL.md").read_text()
    assert tables("h200") in doc, "docs/PARALLEL.md is stale: python3 -m attn_dse.cost.parallel reprints its tables"
