"""A space's `workload.kernel` axis: each implementation is a block of its own, and its points
are the predictions of that implementation's knobs."""
import numpy as np
import pytest

from attn_dse.cost.predict import predict
from attn_dse.dse.evaluate import evaluate
from attn_dse.dse.space import space_from_dict
from attn_dse.errors import AttnDseError
from attn_dse.workloads import attention

GQA = {"variant": "gqa", "params": {"n_heads": 32, "n_kv_heads": 8, "head_dim": 128, "n_layers": 32}}


def test_kernel_axis_times_each_implementation():
    space = space_from_dict({"variants": [GQA], "workload": {"phase": "prefill", "context": [4096, 16384],
                                                              "scope": "core", "kernel": ["triton", "cudnn", "auto"]}})
    cols = evaluate(space, ("h200",)).columns
    assert len(cols["latency_s"]) == 6
    wl = attention("gqa", n_heads=32, n_kv_heads=8, head_dim=128)
    for name in ("triton", "cudnn"):
        sel = cols["kernel"] == name
        assert sel.sum() >= 2
        want = [float(predict("h200", wl, "prefill", seq=s, kernel=name).latency_s) for s in cols["context"][sel]]
        assert np.allclose(cols["latency_s"][sel], want)
    auto = np.isin(cols["kernel"], ["flash", "flex", "eager"]) | (cols["kernel"] == "cudnn")
    assert auto.sum() >= 2  # auto's points are named by the implementation it picked


def test_unknown_kernel_in_a_space_is_one_error():
    space = space_from_dict({"variants": [GQA], "workload": {"phase": "decode", "kernel": ["flashinfer"],
                                                              "scope": "core"}})
    with pytest.raises(AttnDseError, match="flashinfer"):
        evaluate(space, ("h200",))


def test_kernel_must_be_a_name():
    with pytest.raises(AttnDseError, match="workload.kernel"):
        space_from_dict({"variants": [GQA], "workload": {"kernel": [3]}})
