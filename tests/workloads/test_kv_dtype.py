"""The KV cache stored apart from the compute dtype: bytes follow the KV format and layout, the
attention matmuls keep their dtype, dequantization is vector work."""
import pytest

from attn_dse import attention, predict
from attn_dse.errors import AttnDseError
from attn_dse.workloads.shape import kv_format


def test_flashmla_fp8_layout_sets_decode_intensity():
    # FlashMLA README: 656 B per token; absorbed DeepSeek-V3 core 2*128*(2*512+64) FLOP per KV token
    expected = 2 * 128 * (2 * 512 + 64) / 656  # 424.6
    wl = attention("mla", scheme="absorbed", kv_layout="flashmla_fp8")
    p = predict("h100", wl, phase="decode", batch=1, context=1 << 20)
    assert float(p.arithmetic_intensity) == pytest.approx(expected, rel=0.01)
    assert float(p.kv_cache_bytes) == 656 * (1 << 20)
    bf16 = predict("h100", attention("mla", scheme="absorbed"), phase="decode", batch=1, context=1 << 20)
    assert float(bf16.arithmetic_intensity) == pytest.approx(2 * 128 * 1088 / 1152, rel=0.01)
    # the layout changes the traffic the kernel streams, not only the footprint
    assert float(p.hbm_bytes) < 0.6 * float(bf16.hbm_bytes)


@pytest.mark.parametrize("kv,bytes_per_element", [("fp8", 1 + 4 / 128), ("int4", 0.5 + 4 / 128),
                                                  ("6", 0.75 + 4 / 128), ("bf16", 2.0)])
def test_kv_bytes_follow_the_format_with_block_scales(kv, bytes_per_element):
    wl = attention("gqa", n_heads=32, n_kv_heads=8, head_dim=128)
    p = predict("h100", wl, phase="decode", batch=4, context=4096, kv_dtype=kv)
    assert float(p.kv_cache_bytes) == pytest.approx(4 * 4096 * 2 * 8 * 128 * bytes_per_element)


def test_default_kv_dtype_is_the_compute_dtype():
    wl = attention("gqa", n_heads=32, n_kv_heads=8)
    for dtype in ("bf16", "fp8"):
        a = predict("h100", wl, phase="decode", batch=8, context=8192, dtype=dtype)
        b = predict("h100", wl, phase="decode", batch=8, context=8192, dtype=dtype, kv_dtype=dtype)
        assert float(a.latency_s) == float(b.latency_s) and float(a.hbm_bytes) == float(b.hbm_bytes)


def test_fp8_mla_decode_is_bounded_by_dequantization_not_the_fp8_peak():
    """FlashMLA's FP8 decode dequantizes the cache to bf16 on the CUDA cores and runs bf16 MMAs
    (FlashMLA deep dive, 2025-09-29): 410 TFLOP/s against 660 for bf16 on an H800."""
    wl = attention("mla", scheme="absorbed", kv_layout="flashmla_fp8")
    kw = dict(phase="decode", batch=128, seq=2, context=8192)
    fp8 = predict("h100", wl, dtype="fp8", **kw)
    bf16 = predict("h100", attention("mla", scheme="absorbed"), **kw)
    rate_fp8 = float(fp8.flops / fp8.latency_s)
    assert rate_fp8 < float(bf16.flops / bf16.latency_s)  # dequantization costs time
    assert rate_fp8 < 0.5 * 1978.9e12  # nowhere near the fp8 tensor peak
    assert fp8.limiter in ("vector", "matmul")


def test_sub_8_bit_kv_expresses_deepseek_v2_reduction():
    """DeepSeek-V2 (arXiv 2405.04434, section 3.2.2): 93.3% less KV cache than DeepSeek 67B, with
    MLA and the cache quantized to 6 bits per element on average."""
    v2 = attention("mla", scheme="absorbed", n_layers=60)
    ds67 = attention("gqa", n_heads=64, n_kv_heads=8, head_dim=128, n_layers=95)
    kv_v2 = predict("h100", v2, phase="decode", batch=1, context=1000, scope="model", kv_dtype=6).kv_cache_bytes
    kv_67 = predict("h100", ds67, phase="decode", batch=1, context=1000, scope="model").kv_cache_bytes
    assert 1 - float(kv_v2 / kv_67) == pytest.approx(0.933, abs=0.005)


def test_bad_kv_dtypes_are_one_clear_error():
    for bad in ("fp9", "7.5", 0, 40):
        with pytest.raises(AttnDseError):
            kv_format(bad)
    assert kv_format(6) == "int6" and kv_format("16") == "bf16" and kv_format(None, "fp8") == "fp8"


def test_predict_cli_takes_kv_dtype():
    import json

    from click.testing import CliRunner

    from attn_dse.cli.main import cli
    args = ["predict", "h100", "--variant", "gqa", "--param", "n_heads=32", "--param", "n_kv_heads=8",
            "--phase", "decode", "--batch", "2", "--context", "1024", "--json"]
    bf16 = json.loads(CliRunner().invoke(cli, args).output)
    int4 = json.loads(CliRunner().invoke(cli, args + ["--kv-dtype", "int4"]).output)
    assert int4["kv_dtype"] == "int4" and bf16["kv_dtype"] == "bf16"
    assert int4["kv_cache_bytes"] == pytest.approx(bf16["kv_cache_bytes"] * (0.5 + 4 / 128) / 2)
    bad = CliRunner().invoke(cli, args + ["--kv-dtype", "fp9"])
    assert bad.exit_code == 2 and "kv" in bad.output.lower()


def test_spaces_sweep_a_kv_dtype_axis(tmp_path):
    import csv

    from click.testing import CliRunner

    from attn_dse.cli.main import cli
    space = tmp_path / "kv.yaml"
    space.write_text("name: kv\nvariants:\n  - {variant: gqa, params: {n_heads: 32, n_kv_heads: 8, n_layers: 32}}\n"
                     "workload: {phase: decode, batch: [16], context: [8192], kv_dtype: [bf16, fp8, 4]}\n")
    out = CliRunner().invoke(cli, ["sweep", "h100", str(space), "--out", str(tmp_path / "o"), "--format", "csv"])
    assert out.exit_code == 0, out.output
    rows = {r["kv_dtype"]: r for r in csv.DictReader(open(tmp_path / "o" / "points.csv"))}
    assert set(rows) == {"bf16", "fp8", "int4"}
    per_token = {k: float(r["kv_bytes_per_token"]) for k, r in rows.items()}
    assert per_token["int4"] == pytest.approx(32 * 2 * 8 * 128 * (0.5 + 4 / 128))
    assert float(rows["fp8"]["latency_s"]) < float(rows["bf16"]["latency_s"])
    space.write_text(space.read_text().replace("kv_dtype: [bf16, fp8, 4]", "kv_dtype: fp9"))
    bad = CliRunner().invoke(cli, ["sweep", "h100", str(space), "--out", str(tmp_path / "o2")])
    assert bad.exit_code == 2 and "kv_dtype" in bad.output
