"""Hardware YAML, however mangled, gets past `load_hardware` with nothing but an AttnDseError:
hypothesis mutates the committed presets (drops keys, swaps types, inserts bad values and
misspelt level names) and loads each result in-process; one that loads is also predicted."""
from __future__ import annotations

import contextlib
import itertools
import pathlib
import tempfile

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attn_dse.errors import AttnDseError
from attn_dse.hardware.loader import load_hardware, preset_dir
from tests.cli.yaml_mutations import mutate, time_limit

PRESETS = sorted(preset_dir().glob("*.yaml"))
CHILD = {"name": "chip", "description": "a what-if", "extends": "h100",
         "memory": [{"name": "hbm", "capacity": "96 GB", "bandwidth": "4 TB/s"}],
         "compute": {"matmul": {"bf16": "1200 TFLOP/s"}}}
_TMP = tempfile.TemporaryDirectory(prefix="hw-fuzz-")  # removed at exit
_DIR = pathlib.Path(_TMP.name)
_COUNT = itertools.count()  # a fresh file name per example: the loader caches by path and mtime


@settings(max_examples=500, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_mutated_hardware_raises_only_attn_dse_errors(data):
    source = data.draw(st.sampled_from(PRESETS + [None]))
    raw = CHILD if source is None else yaml.safe_load(source.read_text())
    text = yaml.safe_dump(mutate(data, raw), sort_keys=False)
    if data.draw(st.integers(0, 9)) == 0:
        text = text[:data.draw(st.integers(0, len(text)))]  # a file cut short
    path = _DIR / f"{next(_COUNT)}.yaml"
    path.write_text(text)
    with contextlib.suppress(AttnDseError), time_limit(20):
        hw = load_hardware(path)
        if data.draw(st.integers(0, 2)) == 0:
            from attn_dse import attention, predict
            from attn_dse.hardware.summary import summary
            summary(hw)
            predict(hw, attention("gqa", n_heads=32, n_kv_heads=8, head_dim=128), "decode", 4, context=4096)
