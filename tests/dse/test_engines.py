"""One sweep, three engines: this process, a local process pool and a Dask LocalCluster give
the same rows in the same order, the same front and the same summary; an interrupted sweep
resumed equals an uninterrupted one, and evaluates only the chunks that were not finished."""
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from attn_dse.dse import engine
from attn_dse.dse import evaluate as ev
from attn_dse.dse.sweep import run_sweep
from attn_dse.errors import AttnDseError

# two variants with different parameters (MLA has no n_kv_heads), two phases, a string axis:
# blocks of several sizes, packed into chunks of 7 points
SPACE = {"variants": [{"variant": "gqa", "params": {"n_heads": 32, "n_kv_heads": [2, 8], "n_layers": 32}},
                      {"variant": "mla", "params": {"n_heads": 16, "n_layers": 61, "kv_layout": ["native", "flashmla_fp8"]}}],
         "workload": {"phase": ["decode", "prefill"], "batch": [1, 8, 64], "context": [2048, 32768]},
         "objectives": [{"minimize": "time_per_token_s"}, {"minimize": "kv_bytes_per_token"}]}
N = (2 + 2) * 2 * 3 * 2
CHUNK = 7


@pytest.fixture
def space_file(tmp_path):
    p = tmp_path / "space.yaml"
    p.write_text(yaml.safe_dump(SPACE))
    return str(p)


def _run(space_file, out, **kw):
    s, _ = run_sweep("h100", space_file, out, formats=("parquet", "csv"), chunk=CHUNK, **kw)
    return s, pq.read_table(out / "points.parquet").to_pydict(), (out / "points.csv").read_text()


def _same(a, b):
    """Summaries and tables equal, NaN equal to NaN."""
    sa, ta, ca = a
    sb, tb, cb = b
    assert ca == cb
    assert ta.keys() == tb.keys()
    for k in ta:
        x, y = ta[k], tb[k]
        if x and isinstance(x[0], float):
            np.testing.assert_array_equal(np.array(x, float), np.array(y, float), err_msg=k)
        else:
            assert x == y, k
    drop = {"elapsed_s", "engine"}
    assert {k: v for k, v in sa.items() if k not in drop} == {k: v for k, v in sb.items() if k not in drop}


def test_serial_pool_and_dask_give_identical_results(space_file, tmp_path):
    distributed = pytest.importorskip("distributed")
    serial = _run(space_file, tmp_path / "serial", workers=1)
    parts = sorted((tmp_path / "serial" / "points.parquet").glob("part-*.parquet"))
    sizes = [pq.read_metadata(p).num_rows for p in parts]
    assert serial[0]["points"] == N == sum(sizes) and max(sizes) <= CHUNK and len(parts) >= -(-N // CHUNK)
    assert serial[0]["engine"] == {"name": "serial", "workers": 1, "chunks": len(parts)}
    pool = _run(space_file, tmp_path / "pool", workers=2)
    assert pool[0]["engine"]["name"] == "processes"
    _same(serial, pool)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        dask = _run(space_file, tmp_path / "dask", scheduler=c.scheduler_address)
    assert dask[0]["engine"] == {"name": "dask", "workers": 2, "chunks": len(parts)}
    _same(serial, dask)
    # every chunk has the space's columns: MLA rows have n_kv_heads empty, GQA rows kv_layout
    t = serial[1]
    mla = [i for i, v in enumerate(t["variant"]) if v == "mla"]
    assert mla and all(np.isnan(t["n_kv_heads"][i]) for i in mla)
    assert {t["kv_layout"][i] for i in range(N) if i not in mla} == {None}
    # prefill rows carry their prompt as seq
    assert all(t["seq"][i] == t["context"][i] for i in range(N) if t["phase"][i] == "prefill")


def test_an_interrupted_sweep_resumes_to_the_uninterrupted_result(space_file, tmp_path, monkeypatch):
    whole = _run(space_file, tmp_path / "whole", workers=1)
    n_chunks = whole[0]["engine"]["chunks"]
    calls = {"n": 0}
    real = ev.run_task

    def interrupted(job, task):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(job, task)
    monkeypatch.setattr(ev, "run_task", interrupted)
    out = tmp_path / "again"
    s, _ = run_sweep("h100", space_file, out, formats=("parquet", "csv"), chunk=CHUNK, workers=1)
    first3 = sum(pq.read_metadata(p).num_rows for p in sorted((tmp_path / "whole" / "points.parquet").iterdir())[:3])
    assert s["partial"] and s["points"] == first3
    assert pq.read_table(out / "points.parquet").num_rows == first3  # the summary counts what is on disk
    assert len(list((out / "chunks").glob("*.pkl"))) == 3

    calls["n"] = -10**9  # no more interrupts; count the chunks the resumed run evaluates
    resumed = _run(space_file, out, workers=1, resume=True)
    assert calls["n"] == -10**9 + n_chunks - 3  # only the unfinished chunks
    _same(whole, resumed)
    assert not (out / "chunks").exists()  # complete: nothing left to resume
    assert json.loads((out / "summary.json").read_text())["partial"] is False


def test_resume_refuses_another_sweep_or_none(space_file, tmp_path, monkeypatch):
    with pytest.raises(AttnDseError, match="holds no interrupted sweep"):
        run_sweep("h100", space_file, tmp_path / "o", resume=True)
    monkeypatch.setattr(ev, "run_task", lambda job, task: (_ for _ in ()).throw(KeyboardInterrupt))
    s, _ = run_sweep("h100", space_file, tmp_path / "o", chunk=CHUNK)
    assert s["partial"] and s["points"] == 0
    with pytest.raises(AttnDseError, match="another space, hardware or options"):
        run_sweep("h200", space_file, tmp_path / "o", chunk=CHUNK, resume=True)


def test_a_fresh_sweep_replaces_what_an_earlier_one_left(space_file, tmp_path):
    out = tmp_path / "o"
    run_sweep("h100", space_file, out, chunk=5)
    s, _ = run_sweep("h100", space_file, out, chunk=CHUNK)
    assert pq.read_table(out / "points.parquet").num_rows == s["points"] == N
    assert len(list((out / "points.parquet").glob("part-*"))) == s["engine"]["chunks"]


def test_an_unreachable_scheduler_is_one_clear_error():
    pytest.importorskip("distributed")
    with pytest.raises(AttnDseError) as e:
        engine.Dask("tcp://127.0.0.1:9", timeout_s=1)
    assert "cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'" in str(e.value) and "dask scheduler" in str(e.value)


def test_small_sweeps_run_here_unless_workers_are_asked_for():
    assert engine.make_engine(points=engine.SMALL).name == "serial"
    big = engine.make_engine(points=engine.SMALL + 1)
    assert big.name == ("processes" if engine.cores() > 1 else "serial")
    assert engine.make_engine(workers=1, points=10**9).name == "serial"


def test_above_the_keep_limit_results_hold_every_kth_row_and_the_same_front(space_file):
    from attn_dse.dse.evaluate import evaluate
    from attn_dse.dse.space import load_space
    sp = load_space(space_file)
    whole = evaluate(sp, ("h100",), chunk=CHUNK)
    thin = evaluate(sp, ("h100",), chunk=CHUNK, keep_limit=10)
    k = -(-N // 10)  # every 5th row of each chunk
    assert not whole.sampled and len(whole.columns["latency_s"]) == N
    assert thin.sampled and k == 5
    # rows 0, 5, 10, ... of each chunk
    from attn_dse.dse import evaluate as ev
    bl = ev.blocks(sp, ("h100",))
    sizes = [sum(len(p) for _, p in t.segments) for t in ev.tasks(ev._indexed(ev._plan(sp, bl, 0), bl), CHUNK)]
    assert len(thin.columns["latency_s"]) == sum(-(-n // k) for n in sizes) < N / 3
    assert set(thin.columns["latency_s"]) <= set(whole.columns["latency_s"])
    for key in ("latency_s", "kv_bytes_per_token"):
        np.testing.assert_array_equal(np.sort(thin.front[key]), np.sort(whole.front[key]))
    assert thin.n_points == whole.n_points and thin.n_feasible == whole.n_feasible
    np.testing.assert_array_equal(thin.best["latency_s"], whole.best["latency_s"])
