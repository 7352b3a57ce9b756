"""Kernel families: each attention kernel goes to the family that models it, registered once."""
import pytest

from attn_dse import attention
from attn_dse.cost.family import Family, families, family_for, get_family
from attn_dse.errors import AttnDseError
from attn_dse.workloads.shape import make_shape


@pytest.mark.parametrize("variant,params,phase,family", [
    ("gqa", dict(n_heads=32, n_kv_heads=8), "decode", "decode"),
    ("gqa", dict(n_heads=32, n_kv_heads=8), "prefill", "prefill"),
    ("gqa", dict(n_heads=32, n_kv_heads=8), "train", "prefill"),
    ("mla", dict(scheme="absorbed"), "decode", "mla_decode"),
    ("mla", dict(scheme="absorbed"), "prefill", "prefill"),
    ("mla", dict(scheme="naive"), "decode", "decode"),
    ("block_sparse", dict(n_heads=32, n_kv_heads=8, top_k=4), "prefill", "block_sparse"),
    ("block_sparse", dict(n_heads=32, n_kv_heads=8, top_k=4), "decode", "block_sparse"),
    ("nsa", dict(n_heads=32, n_kv_heads=4), "decode", ("decode", "block_sparse", "decode")),  # cmp, sel, win
    ("dsa", {}, "decode", "block_sparse"),
    ("neighborhood", dict(n_heads=8, n_kv_heads=8, grid="32x32", window="7x7"), "prefill", "prefill"),
    ("swa", dict(n_heads=32, n_kv_heads=8, window=512), "decode", "decode"),
    ("linear", dict(n_heads=16), "decode", None),
])
def test_each_kernel_goes_to_its_family(variant, params, phase, family):
    wl = attention(variant, **params)
    s = make_shape(phase, 1, 1024 if phase != "decode" else 1, 4096 if phase == "decode" else None)
    got = tuple(family_for(spec) for spec, _ in wl.kernel_specs(s))
    names = tuple(f.name if f else None for f in got)
    assert names == (family if isinstance(family, tuple) else (family,))


def test_families_are_registered_once_with_their_knobs():
    names = list(families())
    assert len(names) == len(set(names)) and {"prefill", "decode", "block_sparse", "gemm", "unfused"} <= set(names)
    for fam in families().values():
        assert 0 < fam.compute_efficiency <= 1 and 0 < fam.memory_efficiency <= 1


def test_unknown_family_is_a_clear_error():
    with pytest.raises(AttnDseError, match="unknown kernel family 'prefil'.*did you mean 'prefill'"):
        get_family("prefil")


def thousand_programs_on_100_cores(**kw) -> float:
    """tiled.finish of 1000 programs on 100 cores, each wave paying 1 us and its cores' first
    64 KiB tiles at 0.5 x 4 TB/s."""
    from types import SimpleNamespace as NS

    from attn_dse.cost.tiled import finish
    hw = NS(cores=100, clock_hz=1e9)
    c = NS(matmul_flop_per_s=1e15, exp_per_s=1e13, vector_flop_per_s=1e14, core_memory_bytes_per_s=1e14,
           hbm_bytes_per_s=4e12, cache_bytes_per_s=None)
    knobs = NS(tile_overhead_cycles=10.0, exp_overlap=1.0, wave_latency_s=1e-6, launch_overhead_s=2e-6)
    fam = NS(compute_efficiency=0.8, memory_efficiency=0.5, tile_overhead_cycles=None, core_bytes_per_s=1e11)
    kernel = type("Kernel", (Family,), kw)()  # the mechanisms under test, else a plain kernel's
    return float(finish(hw, c, knobs, fam, 1e12, 1e9, 1e9, 1e9, 1e8, 1000.0, 1e5, 65536.0, True, 2,
                        detail=False, kernel=kernel)["time"])


def test_a_persistent_kernel_fills_its_pipeline_once():
    """tiled.finish: 1000 programs on 100 cores run in 10 waves, each paying a latency and its
    cores' first tiles through HBM; a persistent kernel (one program a core taking the blocks
    in turn) pays them once. Hand count: 9 saved fills of 1 us + 100 x 64 KiB at 0.5 x 4 TB/s."""
    blocked, persistent = (thousand_programs_on_100_cores(persistent=p) for p in (False, True))
    assert blocked - persistent == pytest.approx(9 * (1e-6 + 100 * 65536 / (0.5 * 4e12)), rel=1e-9)


def test_programs_a_core_holds_at_once_fill_together():
    """tiled.finish: 1000 programs on 100 cores take 10 per-core waves; a kernel whose cores hold
    2 programs at once fills its pipelines in 5 rounds. Hand count: 5 saved fills of 1 us +
    100 x 64 KiB at 0.5 x 4 TB/s."""
    one, two = (thousand_programs_on_100_cores(slots=n) for n in (1, 2))
    assert one - two == pytest.approx(5 * (1e-6 + 100 * 65536 / (0.5 * 4e12)), rel=1e-9)


def test_split_partials_that_fit_l2_are_combined_at_its_rate():
    """One 32k sequence, 128 heads, 32 splits: each split writes 128 x 514 fp32 partials (the
    output, its max and sum): 8.4 MB, read back by the combine, 16.8 MB in all, which the H200's
    L2 holds. With an L2 too small to hold them the combine streams them through HBM instead: the
    two predictions differ by exactly 16.8 MB at HBM's rate less 16.8 MB at L2's."""
    import dataclasses

    from attn_dse import load_hardware
    from attn_dse.cost.knobs import knobs_for
    from attn_dse.cost.predict import predict
    from attn_dse.cost.roofline import ceilings
    from attn_dse.hardware.spec import _scale_level
    h200 = load_hardware("h200")
    small = _scale_level(h200, h200.cache.name, "capacity_bytes", 1e6 / h200.cache.capacity_bytes)
    wl = attention("mla", n_heads=128, scheme="absorbed")
    at = dict(scope="core", kernel="triton", context=32767, mapping={"kernel": "mla_decode_seesaw", "n_split": 32})
    fits, spills = (float(predict(hw, wl, "decode", 1, **at).latency_s) for hw in (h200, small))
    partial = 2 * 128 * 514 * 4 * 32  # written and read
    c, eff = ceilings(h200), knobs_for(h200).family("mla_decode_seesaw").memory_efficiency
    assert spills - fits == pytest.approx(partial / (c.hbm_bytes_per_s * eff) - partial / c.cache_bytes_per_s, rel=1e-9)
