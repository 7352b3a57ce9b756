"""Our seesaw MLA decode kernel measured on an H200 (2026-12-04, h200-mla-seesaw-measurements.csv,
docs/device-logs/h200-mla-seesaw-2026-12-04.log): its rows are timed by its own family, and the
MLA family dispatches to it as our kernels do (more than 32 heads) where its knobs were fitted."""
import csv

import numpy as np
import pytest

from attn_dse import attention, load_hardware
from attn_dse.cost.predict import predict
from attn_dse.validation.compare import compare, data_dir, held_out_mask, kernel_of, load_measurements

H200 = load_hardware("h200")
CSV = data_dir() / "h200-mla-seesaw-measurements.csv"


def test_the_run_passed_every_check_and_names_its_kernels():
    checks = list(csv.DictReader(open(data_dir() / "h200-mla-seesaw-checks.csv")))
    assert len(checks) == 61 and all(c["ok"] == "True" for c in checks)
    # the check grid's 128- and 96-head shapes (the A/B benchmark checked 11 more: its log)
    assert sum("seesaw" in c["kernel"] for c in checks) == 3
    kernels = [kernel_of(r) for r in load_measurements(CSV)]
    assert kernels.count("mla_decode_seesaw") == 12 and kernels.count("mla_decode") == 6  # 16 heads: tokens layout


def test_held_out_rows_of_the_seesaw():
    """Fitted on 3/4 of the rows (its family's knobs alone), every 4th held out: measured 4.2%."""
    rows = load_measurements(CSV)
    c = compare(H200, rows, "triton")
    held = held_out_mask(len(rows)) & (c.families == "mla_decode_seesaw")
    assert held.sum() >= 3 and c.errors[held].mean() <= 0.06
    assert c.errors[c.families == "mla_decode_seesaw"].mean() <= 0.08


@pytest.mark.parametrize("heads,kernel", [(128, "mla_decode_seesaw"), (64, "mla_decode_seesaw"), (32, "mla_decode"),
                                          (16, "mla_decode")])
def test_the_mla_family_dispatches_as_our_kernels_do(heads, kernel):
    wl = attention("mla", n_heads=heads, scheme="absorbed")
    at = dict(scope="core", kernel="triton")
    unpinned = predict(H200, wl, "decode", [8, 64], context=8192, **at).latency_s
    pinned = predict(H200, wl, "decode", [8, 64], context=8192, mapping={"kernel": kernel}, **at).latency_s
    assert np.array_equal(unpinned, pinned)


def test_where_the_seesaw_was_never_measured_the_split_tile_kernel_times_many_heads_else_the_familys_own():
    """The H100 measured the split-tile Gluon kernel (128 heads) and not the seesaw; a preset with
    neither measured (the H20: defaults) times every head count with the MLA family's kernel."""
    wl = attention("mla", n_heads=128, scheme="absorbed")
    at = dict(scope="core", kernel="triton")
    for hw, kernel in ((load_hardware("h100"), "mla_decode_wgmma"), (load_hardware("h20"), "mla_decode")):
        assert predict(hw, wl, "decode", 64, context=8192, **at).latency_s == \
            predict(hw, wl, "decode", 64, context=8192, mapping={"kernel": kernel}, **at).latency_s, hw.name


def test_a_latent_wider_than_the_gluon_kernels_runs_the_familys_kernel_point_by_point():
    """The Gluon kernels hold a latent of at most 512 columns (two warpgroups of wgmma N = 256):
    of one vectorized prediction, the 1024-wide latent's points are the Triton kernel's (whose
    tiles fit), the 512-wide ones the seesaw's, each as predicted alone."""
    at = dict(scope="core", kernel="triton")
    wide = attention("mla", n_heads=128, kv_lora_rank=np.array([[512], [1024]]), qk_rope_dim=64, scheme="absorbed")
    both = predict(H200, wide, "decode", np.array([8, 64]), context=8192, **at).latency_s
    for i, (rank, kernel) in enumerate(((512, "mla_decode_seesaw"), (1024, "mla_decode"))):
        wl = attention("mla", n_heads=128, kv_lora_rank=rank, qk_rope_dim=64, scheme="absorbed")
        alone = predict(H200, wl, "decode", np.array([8, 64]), context=8192, mapping={"kernel": kernel}, **at)
        assert np.array_equal(both[i], alone.latency_s), rank
