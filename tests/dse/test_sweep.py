"""The DSE engine: spaces, constraints, strategies, the built-in study, files on disk."""
import json

import numpy as np
import pytest

from attn_dse.dse.evaluate import evaluate
from attn_dse.dse.space import load_space, space_from_dict
from attn_dse.dse.study import builtin_space
from attn_dse.cli.figures import sweep_figures
from attn_dse.dse.sweep import run_sweep
from attn_dse.errors import AttnDseError

SMALL = {"variants": [{"model": "llama-3-8b", "params": {"n_kv_heads": [1, 2, 4, 8]}}],
         "workload": {"phase": ["decode", "prefill"], "batch": [1, 8, 64], "context": [4096, 32768]},
         "objectives": [{"minimize": "time_per_token_s"}, {"minimize": "kv_bytes_per_token"}]}


def test_grid_evaluates_every_point_and_keeps_columns():
    r = evaluate(space_from_dict(SMALL), ("h100",))
    assert r.n_points == 4 * 2 * 3 * 2 and len(r.columns["latency_s"]) == r.n_points
    assert set(np.unique(r.columns["n_kv_heads"])) == {1, 2, 4, 8}


def test_memory_constraint_matches_capacity():
    r = evaluate(space_from_dict(SMALL), ("h100",))
    c = r.columns
    usable = 0.9 * 80e9
    act = c["activation_bytes"] / c["batch"]  # per sequence
    kv_seq = c["kv_bytes_per_token"] * c["context"] + act
    assert np.array_equal(c["fits"], c["weight_bytes"] + c["batch"] * kv_seq <= usable)
    # max_batch is the largest batch whose KV and activations still fit beside the weights
    assert np.all(c["weight_bytes"] + c["max_batch"] * kv_seq <= usable)
    assert np.all(c["weight_bytes"] + (c["max_batch"] + 1) * kv_seq > usable)


def test_slo_and_expression_constraints():
    sp = space_from_dict({**SMALL, "constraints": [{"tpot_ms": 1.0}, {"ttft_s": 0.05},
                                                   {"expr": "arithmetic_intensity > 2 and batch >= 8"}]})
    c = evaluate(sp, ("h100",)).columns
    dec, pre = c["phase"] == "decode", c["phase"] == "prefill"
    assert np.array_equal(c["ok_tpot_ms"], ~dec | (c["latency_s"] <= 1e-3))
    assert np.array_equal(c["ok_ttft_s"], ~pre | (c["latency_s"] <= 0.05))
    assert np.array_equal(c["ok_expr"], (c["arithmetic_intensity"] > 2) & (c["batch"] >= 8))
    assert np.array_equal(c["feasible"], c["ok_tpot_ms"] & c["ok_ttft_s"] & c["ok_expr"])


def test_front_is_pareto_of_feasible_points():
    from attn_dse.dse.pareto import pareto_mask
    r = evaluate(space_from_dict(SMALL), ("h100",))
    c = r.columns
    f = c["feasible"]
    pts = np.stack([c["time_per_token_s"][f], c["kv_bytes_per_token"][f]], 1)
    expected = {tuple(p) for p in pts[pareto_mask(pts)]}
    got = set(zip(r.front["time_per_token_s"], r.front["kv_bytes_per_token"]))
    assert got == expected


def test_random_and_evolve_find_good_points():
    grid = evaluate(space_from_dict(SMALL), ("h100",))
    best = np.min(grid.columns["time_per_token_s"][grid.columns["feasible"]])
    rnd = evaluate(space_from_dict({**SMALL, "strategy": "random", "samples": 20}), ("h100",))
    assert 0 < rnd.n_points <= 24
    evo = evaluate(space_from_dict({**SMALL, "strategy": "evolve", "samples": 200}), ("h100",))
    assert np.min(evo.front["time_per_token_s"]) == pytest.approx(best)


def test_hardware_axes_scale_and_absolute():
    sp = space_from_dict({**SMALL, "hardware": {"presets": ["h20"], "hbm_bandwidth": ["x0.5", "x2", "6 TB/s"]}})
    c = evaluate(sp, ()).columns
    labels = sorted(set(c["hardware"]))
    assert labels == ["h20[hbm_bandwidth=6 TB/s]", "h20[hbm_bandwidth=x0.5]", "h20[hbm_bandwidth=x2]"]
    dec = (c["phase"] == "decode") & (c["context"] == 32768) & (c["batch"] == 64) & (c["n_kv_heads"] == 8)
    t = {h: c["latency_s"][dec & (c["hardware"] == h)][0] for h in labels}
    assert t["h20[hbm_bandwidth=x2]"] < t["h20[hbm_bandwidth=6 TB/s]"] < t["h20[hbm_bandwidth=x0.5]"]


@pytest.mark.parametrize("raw,msg", [
    ({**SMALL, "workload": {"phaze": "decode"}}, "workload.phaze: unknown field"),
    ({**SMALL, "workload": {"batch": []}}, "workload.batch: empty list"),
    ({**SMALL, "workload": {"context": {"from": 10, "to": 1}}}, "empty range"),
    ({**SMALL, "constraints": [{"expr": "latency_ms < 3"}]}, "unknown field 'latency_ms'"),
    ({**SMALL, "constraints": [{"tpot": 3}]}, "unknown constraint 'tpot'"),
    ({**SMALL, "objectives": [{"minimize": "speed"}]}, "unknown field 'speed'"),
    ({**SMALL, "hardware": {"presets": ["h20"], "hbm_bandwith": ["x2"]}}, "did you mean 'hbm_bandwidth'"),
    ({**SMALL, "variants": [{"variant": "gqa", "params": {"n_heads": 32, "n_kv_heads": 5}}]}, "not divisible"),
    ({"variants": [], "workload": {}}, "variants"),
])
def test_bad_spaces_get_clear_errors(raw, msg):
    with pytest.raises(AttnDseError, match=msg):
        space_from_dict(raw)


def test_example_spaces_load_and_run(tmp_path):
    import pathlib
    for path in sorted((pathlib.Path(__file__).resolve().parents[2] / "spaces").glob("*.yaml")):
        sp = load_space(path)
        r = evaluate(sp, ("h100",) if not sp.hardware else ())
        assert r.n_points > 0 and r.n_feasible > 0, path


def test_builtin_study_answers_the_questions(tmp_path):
    s, res = run_sweep("h20", None, tmp_path, formats=("parquet", "csv", "jsonl"))
    sweep_figures(res, s, tmp_path)  # what `attn-dse sweep` draws after the library's job
    st = s["study"]
    assert s["points"] == len(builtin_space().variants) * 2 * 8 * 9
    assert len(st["conclusions"]) >= 5 and any("fastest" in c for c in st["conclusions"])
    assert {r["bound"] for r in st["winners"]} <= {"compute", "memory"}
    # GQA-8 at 70B class: KV 160 KiB per token in fp8; capacity at 128k on H20 is a small batch
    gqa = [r for r in st["capacity"] if r["variant"] == "gqa-8" and r["class"] == "70b"]
    assert gqa[0]["kv_bytes_per_token"] == 2 * 8 * 128 * 1 * 80
    # serving: per (class, context, TPOT target) the most tokens/s per GPU among points that fit
    assert len(st["serving"]) == 2 * 8 * 3 and any("tokens/s per GPU" in c for c in st["conclusions"])
    for r in st["serving"]:
        if r["winner"]:
            assert r["tpot_s"] * 1e3 <= r["tpot_target_ms"]
            assert r["tokens_per_s_per_gpu"] >= r["gqa8_tokens_per_s_per_gpu"]
    files = {p.name for p in tmp_path.iterdir()}
    assert {"points.parquet", "points.csv", "points.jsonl", "summary.json", "pareto.png",
            "winners-70b-decode.png"} <= files
    lines = (tmp_path / "points.csv").read_text().splitlines()
    assert len(lines) == s["points"] + 1
    # the Parquet file holds the same rows as the CSV, labels dictionary-encoded
    import csv
    import pyarrow as pa
    import pyarrow.parquet as pq
    table = pq.read_table(tmp_path / "points.parquet")
    assert table.num_rows == s["points"]
    assert pa.types.is_dictionary(table.schema.field("variant").type)
    by_csv = list(csv.DictReader(open(tmp_path / "points.csv")))
    assert [str(v) for v in table.column("variant").to_pylist()] == [r["variant"] for r in by_csv]
    assert table.column("latency_s").to_pylist() == pytest.approx([float(r["latency_s"]) for r in by_csv], rel=1e-12)
    assert json.loads((tmp_path / "summary.json").read_text())["points"] == s["points"]


def test_interrupt_leaves_partial_result(monkeypatch, tmp_path):
    import attn_dse.dse.evaluate as ev
    calls = {"n": 0}
    real = ev.evaluate_rows

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)
    monkeypatch.setattr(ev, "evaluate_rows", flaky)
    s, _ = run_sweep("h100", None, tmp_path, formats=("parquet", "csv"), chunk=50)
    assert s["partial"] and 0 < s["points"] < 4320
    rows = (tmp_path / "points.csv").read_text().splitlines()
    assert len(rows) == s["points"] + 1
    import pyarrow.parquet as pq
    assert pq.read_table(tmp_path / "points.parquet").num_rows == s["points"]
    assert not list(tmp_path.glob("*.part")) and not list(tmp_path.glob("points.parquet/.*"))  # all renamed


def test_pinned_mapping_in_a_space():
    base = {"variants": [{"variant": "gqa", "params": {"n_heads": 64, "n_kv_heads": 8, "n_layers": 80}}],
            "workload": {"phase": "decode", "batch": [1], "context": [32768], "scope": "core"}, "constraints": []}
    free = evaluate(space_from_dict(base), ("h100",)).columns
    pinned = evaluate(space_from_dict({**base, "workload": {**base["workload"], "mapping": {"n_split": 1}}}),
                      ("h100",)).columns
    assert pinned["n_split"][0] == 1 and free["n_split"][0] > 1
    assert pinned["latency_s"][0] > 3 * free["latency_s"][0]  # one CTA per KV head leaves SMs idle
    with pytest.raises(AttnDseError, match="workload.mapping.splits: unknown field"):
        space_from_dict({**base, "workload": {**base["workload"], "mapping": {"splits": 1}}})


def test_every_column_a_space_may_name_is_in_the_output():
    """Constraints and objectives are checked against NUMERIC_COLUMNS: each must be a real column
    (a comment once swallowed flops/executed_flops, and 'minimize: flops' died with a KeyError)."""
    from attn_dse.dse.constraints import NUMERIC_COLUMNS
    space = space_from_dict({"variants": [{"variant": "gqa", "params": {"n_heads": 32, "n_kv_heads": 8,
                                                                          "n_layers": 32}}],
                             "workload": {"phase": ["decode", "prefill"], "batch": [1, 4], "context": [4096]}})
    cols = evaluate(space, ("h100",)).columns
    assert set(NUMERIC_COLUMNS) <= set(cols), set(NUMERIC_COLUMNS) - set(cols)
    for name in NUMERIC_COLUMNS:
        res = evaluate(space_from_dict({**space_dict_for(name)}), ("h100",))
        assert res.n_points == 4 and res.front, name


def space_dict_for(objective: str) -> dict:
    return {"variants": [{"variant": "gqa", "params": {"n_heads": 32, "n_kv_heads": 8, "n_layers": 32}}],
            "workload": {"phase": ["decode", "prefill"], "batch": [1, 4], "context": [4096]},
            "objectives": [{"minimize": objective}]}


def test_flops_objective_counts_the_attended_pairs():
    res = evaluate(space_from_dict({**space_dict_for("flops"), "workload": {
        "phase": "prefill", "batch": [1], "context": [1024], "scope": "core"}}), ("h100",))
    assert res.columns["flops"][0] == 4 * 32 * (1024 * 1025 / 2) * 128
