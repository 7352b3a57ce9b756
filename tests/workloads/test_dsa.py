"""DSA at 128k context: indexer and main attention per layer per query as variants.md 2.2 counts
them (indexer 2*64*128*L fp8 FLOPs over 132-byte keys; main absorbed MLA over 2048 tokens of
FlashMLA's 656-byte FP8 rows)."""
import pytest

from attn_dse import attention, predict

L = 128 * 1024


def _split(wl, s):
    ops = wl.ops(s, "core")
    indexer = [op for op in ops if op.name.startswith("index")]
    main = [op for op in ops if op.kernel == "attention"]
    def cache(group):
        return sum(float(t.bytes) for op in group for t in op.reads if t.kind == "kv_cache") / (2 if group is main else 1)
    return indexer, main, cache


def test_dsa_indexer_and_main_attention_at_128k():
    wl = attention("dsa")
    s = wl.shape("decode", 1, context=L)
    indexer, main, cache = _split(wl, s)
    # the query's own new token is one more visible key for the indexer
    assert sum(float(op.flops) for op in indexer) == pytest.approx(2 * 64 * 128 * (L + 1))  # 2.15 GFLOP
    assert cache(indexer) == pytest.approx(L * 132)  # 17.3 MB
    assert sum(float(op.flops) for op in main) == pytest.approx(2 * 128 * (2 * 512 + 64) * 2048)  # 0.57 GFLOP
    assert cache(main) == pytest.approx(2048 * 656)  # 1.34 MB (QK and PV read the one latent once)
    assert wl.cost("decode", 1, context=L).hbm_bytes == pytest.approx(L * 132 + 2048 * 656, rel=0.02)
    assert wl.kv_cache_bytes(s) == L * (656 + 132)


def test_dsa_beats_dense_mla_at_long_context_and_not_at_short():
    dense = attention("mla", scheme="absorbed", kv_layout="flashmla_fp8")
    sparse = attention("dsa")
    kw = dict(phase="decode", batch=32)
    long = [predict("h100", w, context=L, **kw).latency_s for w in (dense, sparse)]
    short = [predict("h100", w, context=2048, **kw).latency_s for w in (dense, sparse)]
    assert long[1] < long[0] / 4  # 2048 of 128k tokens: the indexer is what remains
    assert short[1] >= short[0]  # below top_k the indexer is pure overhead


def test_indexer_runs_at_its_own_dtype():
    fp8 = attention("dsa", index_dtype="fp8")
    bf16 = attention("dsa", index_dtype="bf16")
    kw = dict(phase="prefill", seq=32768)
    assert predict("h100", fp8, **kw).latency_s < predict("h100", bf16, **kw).latency_s
