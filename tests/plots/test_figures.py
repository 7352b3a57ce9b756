"""Every figure renders headless to PNG and SVG, and holds the model's numbers."""
import numpy as np
import pytest

from attn_dse import attention, load_hardware, predict
from attn_dse.cost import placement
from attn_dse.plots import heatmap, pareto, roofline, validation


def _is_png(path):
    return open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def _is_svg(path):
    return b"<svg" in open(path, "rb").read(2000)


@pytest.mark.parametrize("ext", ["png", "svg"])
def test_roofline_plots_model_points_and_preset_ceilings(tmp_path, ext):
    h100, h20 = load_hardware("h100"), load_hardware("h20")
    wls = {"gqa-8": attention("gqa", n_heads=64, n_kv_heads=8), "mla": attention("mla")}
    pts = [p for hw in (h100, h20) for p in placement.roofline_points(hw, wls, ("decode", "prefill"), (1024, 32768))]
    data = roofline.roofline_plot([h100, h20], pts, tmp_path / f"r.{ext}")
    assert (_is_png if ext == "png" else _is_svg)(data["path"])
    lines = {l["label"]: l for l in data["drawn"]["lines"]}
    # the HBM roof: y = min(peak, AI * bandwidth) with the preset's numbers
    hbm = lines["h100: hbm 3.35 TB/s"]
    x, y = np.array(hbm["x"]), np.array(hbm["y"])
    assert np.allclose(y, np.minimum(989.4e12, x * 3.35e12))
    assert any(np.isclose(l["y"][0], 148e12) for l in data["drawn"]["lines"] if len(l["y"]) == 2)  # H20 bf16 roof
    # each workload point sits at (FLOPs / min bytes, FLOPs / predicted latency)
    p = predict(h20, wls["mla"], "decode", 16, context=32768)
    want = (float(p.arithmetic_intensity), float(p.flops / p.latency_s))
    drawn = [xy for l in data["drawn"]["lines"] if l["label"].startswith(("mla decode", "_child"))
             for xy in zip(l["x"], l["y"])]
    assert any(np.allclose(xy, want) for xy in drawn)


def test_pareto_plot_highlights_the_front(tmp_path):
    rng = np.random.default_rng(3)
    cols = {"a": rng.random(200) + 0.1, "b": rng.random(200) + 0.1, "feasible": rng.random(200) > 0.2,
            "label": np.array(["x", "y"] * 100, dtype=object)}
    for ext in ("png", "svg"):
        data = pareto.pareto_plot(cols, "a", "b", tmp_path / f"p.{ext}")
        front_line = next(l for l in data["drawn"]["lines"] if l["label"] == "Pareto front")
        f = data["front"]
        assert sorted(front_line["x"]) == sorted(cols["a"][f].tolist())
        # no feasible point dominates a front point
        fa, fb = cols["a"][cols["feasible"]], cols["b"][cols["feasible"]]
        for x, y in zip(front_line["x"], front_line["y"]):
            assert not np.any((fa <= x) & (fb <= y) & ((fa < x) | (fb < y)))


def test_winner_heatmap_cells(tmp_path):
    grid = {"contexts": [1024, 2048], "batches": [1, 2, 4],
            "winner": [["mla", "gqa-8", None], ["mla", "mla", "swa"]],
            "speedup_vs_gqa8": [[1.5, 1.0, np.nan], [2.0, 2.5, np.nan]]}
    for ext in ("png", "svg"):
        data = heatmap.winner_heatmap(grid, tmp_path / f"h.{ext}")
        names = data["names"]
        assert names == ["gqa-8", "mla", "swa"]
        img = np.ma.filled(data["image"], -1)
        assert img[0, 0] == names.index("mla") and img[0, 2] == -1 and img[1, 2] == names.index("swa")
        assert "mla\n2.5x" in data["texts"] and "does not fit" in data["texts"]


def test_predicted_vs_measured(tmp_path):
    m = np.array([1e-4, 2e-4, 1e-3, 5e-3])
    p = m * np.array([1.05, 0.9, 1.2, 1.0])
    for ext in ("png", "svg"):
        data = validation.predicted_vs_measured(m, p, ["decode", "decode", "prefill", "prefill"], tmp_path / f"v.{ext}")
        pts = sorted(xy for s in data["drawn"]["scatter"] for xy in s["xy"])
        assert np.allclose(pts, sorted(zip(m, p)))
        labels = [s["label"] for s in data["drawn"]["scatter"]]
        assert "decode (MAPE 7.5%)" in labels and "prefill (MAPE 10.0%)" in labels
