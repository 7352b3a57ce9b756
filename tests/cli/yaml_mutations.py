"""Mutations of committed YAML files for hypothesis fuzzing (spaces, hardware presets), and a
per-example alarm so that a hang fails the test instead of stalling it."""
from __future__ import annotations

import contextlib
import copy
import signal

from hypothesis import strategies as st

HARDWARE_STRINGS = ["hmb", "hbm", "smem", "80 GB", "3.35 TB/s", "989 TFLOP/s", "1.98 GHz", "4 us", "3.9 Top/s",
                    "0 TB/s", "-1 GB", "inf B/s", "1e999 GB", "gpu", "tpu", "cpu", "h100", "h200.yaml", "132"]
BAD_VALUES = st.one_of(
    st.sampled_from(HARDWARE_STRINGS),
    st.none(), st.booleans(), st.integers(-3, 70),
    st.sampled_from([0, -1, 0.5, 1e308, -1e308, float("nan"), float("inf"), 2**60, 1.5]),
    st.sampled_from(["", "x", "x0", "xnan", "x1e999", "node", "fast", "decode", "gqa", "h100", "1e999 TB/s",
                     "4 TB/s", "80 GB", "grid", "random", "latency_s", "fp8", "memory", "70.6e9"]),
    st.text(max_size=6),
    st.lists(st.one_of(st.integers(-2, 9), st.sampled_from(["a", None, 1e308])), max_size=3),
    st.dictionaries(st.sampled_from(["from", "to", "times", "step", "name", "variant", "minimize", "tpot_ms",
                                     "presets", "n_heads"]),
                    st.one_of(st.integers(-2, 9), st.sampled_from([0.5, "x", None, float("nan")])), max_size=3),
)

ADDED_KEYS = ["extra", "from", "step", "label", "params", "phase", "name", "capacity", "bandwidth", "per_core",
              "extends", "matmul", "bf16"]


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


def _get(node, path):
    for p in path:
        node = node[p]
    return node


def mutate(data, raw):
    """Apply 1-3 mutations at random places: replace a value, drop a key or item, add an
    unknown key, wrap a value in a list, or unwrap a list/mapping."""
    raw = copy.deepcopy(raw)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(list(_paths(raw))))
        op = data.draw(st.sampled_from(["replace", "replace", "drop", "add", "wrap", "unwrap"]))
        if not path:
            if op == "replace":
                raw = data.draw(BAD_VALUES)
            if not isinstance(raw, dict):
                return raw
            continue
        parent, key = _get(raw, path[:-1]), path[-1]
        value = parent[key]
        if op == "replace":
            parent[key] = data.draw(BAD_VALUES)
        elif op == "drop":
            del parent[key]
        elif op == "add" and isinstance(value, dict):
            value[data.draw(st.sampled_from(ADDED_KEYS))] = data.draw(BAD_VALUES)
        elif op == "wrap":
            parent[key] = [value]
        elif op == "unwrap" and isinstance(value, list) and value:
            parent[key] = value[0]
        elif op == "unwrap" and isinstance(value, dict):
            parent[key] = list(value.values())
    return raw




class Hang(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: int):
    """Raise Hang in the block after `seconds` (SIGALRM; the main thread only)."""
    def alarm(signum, frame):
        raise Hang(f"one example ran past {seconds} s")
    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
