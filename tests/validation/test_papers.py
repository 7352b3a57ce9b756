"""The published-results suite: every claim of the reference list is in papers.yaml, each is
within its tolerance or names why not, and `attn-dse papers` prints them."""
import json
import math

import pytest
from click.testing import CliRunner

from attn_dse.cli.main import cli
from attn_dse.errors import AttnDseError
from attn_dse.validation.papers import evaluate_all, load_claims

# one id per figure of the reference list of published results (TPLA, CCA, MoBA, NSA x4, SQA x4,
# BLASST, FlashMLA FP8 layout, FlashMLA bandwidth and throughput, Rethinking)
EXPECTED = {"tpla-deepseek-v3-32k", "cca-vs-mha-prefill-16k", "moba-prefill-1m", "nsa-forward-8k", "nsa-forward-16k",
            "nsa-forward-32k", "nsa-forward-64k", "sqa-xsqa-200k", "sqa-sqa-200k", "sqa-xsqa-32k", "sqa-xsqa-time-200k",
            "blasst-prefill", "flashmla-fp8-intensity", "flashmla-memory-bound", "flashmla-compute-bound",
            "rethinking-absorbed-prefill"}
RESULTS = evaluate_all()


def test_every_published_claim_is_in_the_suite():
    assert EXPECTED <= {r.id for r in RESULTS}


@pytest.mark.parametrize("result", RESULTS, ids=lambda r: r.id)
def test_claim_within_tolerance_or_named(result):
    assert result.source.get("url", "").startswith("https://") and result.source.get("where")
    assert result.setup_sources, "the setup says where each detail is stated"
    assert math.isfinite(result.ratio) and result.ratio > 0
    if result.reason:
        assert len(result.reason.split()) >= 12  # a reason, not a label
    else:
        assert abs(result.ratio - 1) <= result.tolerance, f"{result.id}: predicted {result.predicted:.4g}"


def test_papers_cli_table_and_json():
    out = CliRunner().invoke(cli, ["papers", "--json"])
    assert out.exit_code == 0
    rows = json.loads(out.output)
    assert {r["id"] for r in rows} == {r.id for r in RESULTS}
    one = next(r for r in rows if r["id"] == "flashmla-fp8-intensity")
    assert one["predicted"] == pytest.approx(424.6, rel=0.01) and one["within"]
    table = CliRunner().invoke(cli, ["papers"])
    assert table.exit_code == 0 and "tpla-deepseek-v3-32k" in table.output


def test_bad_claims_file_is_one_clear_error(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("claims:\n  - {id: x, source: {}, quantity: speed, published: 1, tolerance: 0.1, hardware: h100, candidate: {}}\n")
    with pytest.raises(AttnDseError, match="quantity"):
        load_claims(bad)


def test_each_claim_names_the_knobs_it_ran_with():
    """A preset with its own stored knobs names that file; a preset without any (the A100) says the
    family defaults ran; one without its own (the H200 for triton) names its same-silicon relative's."""
    from pathlib import Path

    import attn_dse.calibration as calibration
    store = Path(calibration.__file__).parent / "knobs"
    for r in RESULTS:
        own = store / r.hardware / "triton.yaml"
        if own.is_file():
            assert r.knobs == f"{r.hardware}/triton.yaml"
        elif not (store / r.hardware).is_dir():
            assert r.knobs.startswith("family defaults") and r.hardware in r.knobs
        else:
            assert r.knobs.endswith("/triton.yaml") and (store / r.knobs).is_file()
    assert {r.hardware for r in RESULTS} >= {"a100", "h100", "h200"}  # all three paths are exercised


def test_up_to_claims_take_the_largest_value_over_their_grid(tmp_path):
    """An 'up to X' claim is the maximum over its benchmark grid, each point predicted on its own."""
    from attn_dse import attention, predict
    path = tmp_path / "p.yaml"
    path.write_text("claims:\n  - {id: g, source: {url: 'https://x', where: y}, quantity: flop_rate, published: 1.0e14,\n"
                    "     tolerance: 0.1, hardware: h100, predict: {phase: decode, batch: 8, context: 2048},\n"
                    "     up_to: {seq: [1, 2], n_heads: [16, 128]}, candidate: {variant: mla, params: {scheme: absorbed}},\n"
                    "     setup_sources: {x: y}}\n")
    from attn_dse.validation.papers import evaluate
    result = evaluate(load_claims(path)[0])
    rates = []
    for seq in (1, 2):
        for heads in (16, 128):
            p = predict("h100", attention("mla", scheme="absorbed", n_heads=heads), phase="decode", batch=8, seq=seq, context=2048)
            rates.append(float(p.flops / p.latency_s))
    assert result.predicted == pytest.approx(max(rates), rel=1e-12) and max(rates) > min(rates)
    assert "max over seq in [1, 2], n_heads in [16, 128]" in __import__(
        "attn_dse.validation.papers", fromlist=["describe_setup"]).describe_setup(result)
    path.write_text(path.read_text().replace("seq: [1, 2]", "seq: 1"))
    with pytest.raises(AttnDseError, match="up_to must map axes to lists"):
        load_claims(path)
