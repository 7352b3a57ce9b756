"""The vendor-kernel bench (attn_dse/gpu/vendor.py): its exact pair counts and top-k selection
against brute force on the CPU; on a GPU (marked `gpu`) the quick run, every check passing."""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from attn_dse.gpu import vendor  # noqa: E402


def brute_pairs(allowed: np.ndarray) -> int:
    return int(allowed.sum())


def dense_mask(seq, causal=True, window=None, sel=None, block=None):
    """Built element by element from the definitions (independent of vendor's vectorized masks)."""
    m = np.zeros((seq, seq), dtype=bool)
    for i in range(seq):
        for j in range(seq):
            ok = j <= i if causal else True
            if window is not None:
                ok = ok and i - j < window
            if sel is not None:
                ok = ok and bool(sel[i // block, j // block])
            m[i, j] = ok
    return m


@pytest.mark.parametrize("seq", [1, 7, 130, 300])
def test_dense_and_window_pairs(seq):
    assert vendor.dense_pairs(seq, True) == brute_pairs(dense_mask(seq)) == seq * (seq + 1) // 2
    assert vendor.dense_pairs(seq, False) == brute_pairs(dense_mask(seq, causal=False)) == seq * seq
    for w in (1, 5, 64, 299, 300, 1000):
        assert vendor.window_pairs(seq, w) == brute_pairs(dense_mask(seq, window=w)), (seq, w)
        assert np.array_equal(vendor.window_allowed(seq, w), dense_mask(seq, window=w))


@pytest.mark.parametrize("seq,block,top_k", [(300, 32, 3), (256, 32, 8), (333, 16, 1), (200, 64, 100)])
def test_topk_selection_and_pairs(seq, block, top_k):
    nb = -(-seq // block)
    sel = vendor.topk_block_selection(nb, top_k, np.random.default_rng(1))
    assert sel.shape == (nb, nb)
    for qb in range(nb):
        assert sel[qb, qb], "the diagonal block is always selected"
        assert not sel[qb, qb + 1:].any(), "no future block"
        assert sel[qb].sum() == min(top_k, qb + 1)
    brute = dense_mask(seq, sel=sel, block=block)
    assert np.array_equal(vendor.selection_allowed(sel, seq, block), brute)
    assert vendor.selection_pairs(sel, seq, block) == brute_pairs(brute)
    # the count the project's model uses for the same top-k rule (pairs.blocks_selected)
    from attn_dse.workloads import pairs
    assert vendor.selection_pairs(sel, seq, block) == pairs.blocks_selected(seq, 0, block, top_k, True)


def test_flops_conventions():
    # the project's prefill rows: 4 * B * H * pairs * d; MLA: 2 * B * H * L * (576 + 512)
    assert vendor.attention_flops(16, 32, vendor.dense_pairs(1024, False), 64) == 137438953472.0
    assert vendor.attention_flops(1, 128, 4096, 576, 512) == 1140850688.0
    assert vendor.attention_flops(1, 32, vendor.window_pairs(4096, 512), 128) == 32216449024.0
    assert vendor.kv_bytes(16, 1024, 8, 64) == 33554432


def test_grid_size():
    counts = vendor.shape_counts()
    assert set(counts) == set(vendor.IMPLEMENTATIONS)
    assert sum(counts.values()) <= 200  # about 90 s of device time on an H200
    assert all(1 <= n <= 3 for n in vendor.shape_counts(quick=True).values())


def test_eager_matches_reference_on_cpu():
    g = torch.Generator().manual_seed(0)

    def rnd(*s):
        return torch.randn(*s, generator=g).to(torch.bfloat16)

    q, k, v = rnd(2, 8, 77, 64), rnd(2, 2, 77, 64), rnd(2, 2, 77, 64)
    dropped = vendor.causal_dropped(77, "cpu")
    ref = vendor.reference(q, k, v, ~dropped)
    assert float((vendor.eager_attention(q, k, v, dropped).float() - ref).norm() / ref.norm()) < vendor.BOUND
    # SDPA's math path (CPU) with is_causal and enable_gqa means the same mask and head mapping
    if "enable_gqa" in (torch.nn.functional.scaled_dot_product_attention.__doc__ or ""):
        out = vendor.sdpa(q.float(), k.float(), v.float(), True, True)
        assert float((out - ref).norm() / ref.norm()) < 1e-4
    qm, kv = rnd(2, 16, 576), rnd(2, 50, 576)
    ref = vendor.mla_reference(qm, kv)
    assert float((vendor.eager_mla_decode(qm, kv).float() - ref).norm() / ref.norm()) < vendor.BOUND
    s = torch.einsum("bhd,bld->bhl", qm.float(), kv.float()) / math.sqrt(192)
    assert torch.allclose(ref, torch.einsum("bhl,bld->bhd", s.softmax(-1), kv[..., :512].float()), atol=1e-5)


def test_flex_mask_mods_on_cpu():
    fa = pytest.importorskip("torch.nn.attention.flex_attention")
    seq, block = 300, 128
    m = fa.create_mask(vendor.window_mask_mod(37), 1, 1, seq, seq, device="cpu")[0, 0].numpy()
    assert np.array_equal(m, dense_mask(seq, window=37))
    sel = vendor.topk_block_selection(-(-seq // block), 2, np.random.default_rng(2))
    mod = vendor.selection_mask_mod(torch.from_numpy(sel), block)
    m = fa.create_mask(mod, 1, 1, seq, seq, device="cpu")[0, 0].numpy()
    assert np.array_equal(m, dense_mask(seq, sel=sel, block=block))


@pytest.mark.gpu
def test_quick_run_on_gpu(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from attn_dse.gpu.harness import Recorder
    rec = Recorder(tmp_path)
    summary = vendor.measure_vendor(rec, quick=True)
    assert rec.checks and all(c["ok"] for c in rec.checks), [c for c in rec.checks if not c["ok"]]
    cols = vendor.columns()
    for impl in vendor.IMPLEMENTATIONS:
        rows = [r for r in rec.rows if r["implementation"] == impl]
        assert rows and not summary[impl]["skipped"], (impl, summary[impl])
        assert len(rows) == vendor.shape_counts(quick=True)[impl]
        for r in rows:
            assert not [c for c in cols if c not in r], (impl, r)
            assert r["median_s"] > 0 and r["flops"] > 0 and r["kv_bytes"] > 0
    vendor.write_vendor(rec, tmp_path)
    import csv
    with open(tmp_path / "vendor-measurements.csv", newline="") as f:
        written = list(csv.DictReader(f))
    assert len(written) == len(rec.rows) and set(cols) <= set(written[0])
