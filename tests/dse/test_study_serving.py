"""The study's serving table: the best variant per (context, TPOT target) in tokens/s per GPU."""
import numpy as np

from attn_dse.dse.study import best_under_tpot


def cols(rows):
    keys = ("label", "phase", "context", "batch", "tpot_s", "tokens_per_s_per_gpu", "feasible")
    out = {k: np.array([r[i] for r in rows], dtype=object if k in ("label", "phase") else float) for i, k in enumerate(keys)}
    out["feasible"] = out["feasible"].astype(bool)
    return out


def test_picks_the_highest_throughput_that_meets_the_target_and_fits():
    c = cols([("x/gqa-8", "decode", 8192, 8, 0.010, 800, True),
              ("x/gqa-8", "decode", 8192, 64, 0.040, 1600, True),
              ("x/mla", "decode", 8192, 64, 0.030, 2100, True),
              ("x/mla", "decode", 8192, 256, 0.090, 2800, True),
              ("x/nsa", "decode", 8192, 256, 0.045, 5000, False),  # does not fit
              ("x/nsa", "prefill", 8192, 1, np.nan, 9000, True)])  # not a decode step
    short = np.array([l.split("/")[1] for l in c["label"]], dtype=object)
    rows = {r["tpot_target_ms"]: r for r in best_under_tpot(c, short, np.ones(6, bool), "x", (8192,), (20, 50, 100))}
    assert (rows[20]["winner"], rows[20]["batch"], rows[20]["tokens_per_s_per_gpu"]) == ("gqa-8", 8, 800)
    assert (rows[50]["winner"], rows[50]["tokens_per_s_per_gpu"], rows[50]["gqa8_tokens_per_s_per_gpu"]) == ("mla", 2100, 1600)
    assert (rows[100]["winner"], rows[100]["batch"]) == ("mla", 256)
    none = best_under_tpot(c, short, np.ones(6, bool), "x", (8192,), (5,))[0]
    assert none["winner"] is None and none["tokens_per_s_per_gpu"] == 0
