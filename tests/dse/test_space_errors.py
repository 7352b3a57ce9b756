"""Space files: the grid is counted before it is built, and no file, however mangled, gets
past the loader with anything but an AttnDseError (hypothesis mutates the committed spaces)."""
from __future__ import annotations

import contextlib
import itertools
import pathlib
import tempfile

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attn_dse.dse.evaluate import blocks, evaluate
from attn_dse.dse.space import MAX_POINTS, check_grid, grid_size, load_space, space_from_dict
from attn_dse.errors import AttnDseError
from tests.cli.yaml_mutations import mutate, time_limit

REPO = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "spaces").glob("*.yaml"))
TINY = {"variants": [{"variant": "gqa", "params": {"n_heads": 8, "n_kv_heads": [1, 2], "head_dim": 64,
                                                   "n_layers": 2}}],
        "workload": {"phase": ["decode", "prefill"], "batch": [1, 4], "context": [1024], "seq": [1, 2]}}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_grid_size_counts_what_evaluate_builds(path):
    space = load_space(path)
    hw = () if space.hardware else ("h100",)
    assert grid_size(space, None) == sum(b.size for b in blocks(space, hw))


def test_grid_size_sums_phases_and_multiplies_the_rest():
    space = space_from_dict({**TINY, "hardware": {"presets": ["h100", "h20"], "hbm_bandwidth": ["x1", "x2", "x3"]},
                             "workload": {**TINY["workload"], "dtype": ["bf16", "fp8"]}})
    per_variant = 2 * 2 * ((2 * 1 * 2) + (2 * 1))  # n_kv_heads x dtypes x (decode: batch x context x seq + prefill)
    assert grid_size(space) == 2 * 3 * per_variant
    assert grid_size(space, n_hardware=1) == per_variant
    assert grid_size(space, n_hardware=1) == evaluate(space, ("h100",)).n_points / 3  # axes still apply


def test_a_grid_above_the_limit_is_refused_with_its_count_and_the_way_out(write_yaml):
    raw = {**TINY, "workload": {"phase": "decode", "batch": {"from": 1, "to": 100_000, "step": 1},
                                "context": {"from": 1, "to": 10_000, "step": 1}}}
    path = write_yaml("huge.yaml", yaml.safe_dump(raw))
    space = load_space(path)  # loading alone builds no grid
    assert grid_size(space) == 2 * 100_000 * 10_000 > MAX_POINTS
    with pytest.raises(AttnDseError, match=r"huge.yaml: the grid has 2,000,000,000 points, more than the limit "
                                           r"of 100,000,000.*--strategy random --samples N"):
        check_grid(space)
    with pytest.raises(AttnDseError, match="2,000,000,000 points"):
        load_space(path, max_points=MAX_POINTS)
    sampled = load_space(write_yaml("sampled.yaml", yaml.safe_dump({**raw, "strategy": "random", "samples": 50})),
                         max_points=MAX_POINTS)
    assert check_grid(sampled) == 2_000_000_000  # sampling never builds the grid: allowed
    assert check_grid(space, max_points=10**10) == 2_000_000_000


def test_ranges_keep_their_values():
    space = space_from_dict({**TINY, "workload": {"batch": {"from": 1, "to": 256, "times": 2},
                                                  "context": {"from": 1000, "to": 1_000_000, "times": 10},
                                                  "seq": {"from": 1, "to": 9, "step": 4}}})
    assert space.batch == tuple(2**i for i in range(9))
    assert space.context == (1000, 10_000, 100_000, 1_000_000)
    assert space.seq == (1, 5, 9)


def test_a_combination_of_valid_values_that_is_invalid_fails_before_evaluation():
    raw = {**TINY, "variants": [{"variant": "gqa", "params": {"n_heads": [6, 4], "n_kv_heads": [1, 3]}}]}
    with pytest.raises(AttnDseError, match=r"variants\[0\].params \(a combination of n_heads, n_kv_heads\).*"
                                           "not divisible"):
        space_from_dict(raw)


# --- fuzzing: mutate the committed example spaces ------------------------------------------

_TMP = tempfile.TemporaryDirectory(prefix="space-fuzz-")  # removed at exit
_DIR = pathlib.Path(_TMP.name)
_COUNT = itertools.count()


@settings(max_examples=500, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_mutated_spaces_raise_only_attn_dse_errors(data):
    source = data.draw(st.sampled_from(EXAMPLES))
    raw = mutate(data, yaml.safe_load(source.read_text()))
    text = yaml.safe_dump(raw, sort_keys=False)
    if data.draw(st.integers(0, 9)) == 0:
        text = text[:data.draw(st.integers(0, len(text)))]  # a file cut short
    path = _DIR / f"{next(_COUNT)}-{source.name}"
    path.write_text(text)
    with contextlib.suppress(AttnDseError), time_limit(20):
        space = load_space(path, max_points=10_000)
        hw = () if space.hardware else ("h100",)
        if space.strategy == "grid" and grid_size(space) <= 500 and data.draw(st.integers(0, 2)) == 0:
            evaluate(space, hw)  # a third of the small spaces that load also evaluate
