"""Spaces with a parallel section: every split of a GPU count, evaluated; bad keys refused."""
from pathlib import Path

import numpy as np
import pytest

from attn_dse.dse.evaluate import evaluate
from attn_dse.dse.space import grid_size, load_space, space_from_dict
from attn_dse.errors import AttnDseError

SPACE = Path(__file__).parents[2] / "attn_dse" / "dse" / "spaces" / "parallel-split.yaml"


def test_splits_of_eight_and_grid_size():
    s = load_space(SPACE)
    # 8 = 1x8, 2x4, 4x2 (each ring or ulysses) and 8x1: 7 splits; x 2 phases x 3 batches x 2 contexts
    assert len(s.parallel) == 7 and grid_size(s) == 7 * 2 * 3 * 2
    assert {(p["tp"], p["cp"]) for p in s.parallel} == {(1, 8), (2, 4), (4, 2), (8, 1)}


def test_sweep_picks_a_split_per_point():
    res = evaluate(load_space(SPACE), ("h200",))
    c = res.columns
    assert set(np.unique(c["devices"])) == {8.0}
    decode = (c["phase"] == "decode") & c["feasible"]
    assert decode.any()
    # decode of one token has nothing to split by sequence that pays: tensor parallel wins
    i = np.argmin(np.where(decode, c["latency_s"], np.inf))
    assert c["tp"][i] == 8


def test_bad_parallel_section():
    base = {"variants": [{"variant": "gqa", "params": {"n_heads": 8, "n_kv_heads": 2}}]}
    with pytest.raises(AttnDseError, match="parallel.tpp"):
        space_from_dict({**base, "parallel": {"tpp": [2]}})
    with pytest.raises(AttnDseError, match="not both"):
        space_from_dict({**base, "parallel": {"devices": 8, "tp": [2]}})
    with pytest.raises(AttnDseError, match="cp_scheme"):
        space_from_dict({**base, "parallel": {"devices": 2, "cp_scheme": "zigzag"}})
