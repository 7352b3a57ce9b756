"""The knobs the time model runs with, for one (hardware, implementation).

Fallback chain: the stored knobs of the hardware (or of the nearest preset it `extends:`) for
this implementation (`calibration/knobs.py`), over each kernel family's physically motivated
defaults (`cost/families/*`) and the hardware preset's launch overhead.
"""
from __future__ import annotations

import functools

from attn_dse.calibration import knobs as store
from attn_dse.calibration.knobs import Knobs
from attn_dse.cost.family import families
from attn_dse.hardware.spec import Hardware

DEFAULT_IMPLEMENTATION = "triton"
UNFUSED = {"eager"}  # implementations that run attention as separate kernels by default


def default_knobs(hw: Hardware, implementation: str = DEFAULT_IMPLEMENTATION) -> Knobs:
    return Knobs(families={name: f.default_knobs(hw) for name, f in families().items()},
                 launch_overhead_s=hw.launch_overhead_s, implementation=implementation,
                 fused=implementation not in UNFUSED)


def relatives(hw: Hardware) -> tuple[str, ...]:
    """Where the knobs of `hw` may come from, nearest first: its own preset, those it extends,
    then the presets that extend the same root (the same silicon: an H100 uses the knobs measured
    on an H200 where it has none of its own). Knobs are shares of the ceilings, so they carry
    over between parts that differ in clocks or memory but not in the core. Only presets with
    stored knobs are relatives worth naming (nothing else is read)."""
    return hw.ancestry + _kin(hw.ancestry, frozenset(name for name, _ in store.index()[0]))


@functools.lru_cache(maxsize=64)
def _kin(ancestry: tuple[str, ...], with_knobs: frozenset) -> tuple[str, ...]:
    from attn_dse.hardware.loader import load_hardware, preset_names
    return tuple(sorted(n for n in preset_names()
                        if n in with_knobs and n not in ancestry and load_hardware(n).ancestry[-1] == ancestry[-1]))


def implementations_for(hw: Hardware) -> dict[str, tuple[str, ...]]:
    """Each implementation with knobs for this hardware -> the kernel families it was measured on
    (an unfused implementation runs every family's attention). Cached until the store changes."""
    _, stamp = store.index()
    key = (hw.ancestry, stamp)
    if key not in _IMPLEMENTATIONS:
        out = {DEFAULT_IMPLEMENTATION: tuple(families())}
        for name in sorted(store.implementations_stored()):
            found = store.stored(relatives(hw), name)
            if found is not None:
                raw = found[0]
                out[name] = tuple(families()) if raw.get("execution") == "unfused" \
                    else tuple(raw.get("families") or ())
        _IMPLEMENTATIONS[key] = out
    return dict(_IMPLEMENTATIONS[key])


def check_kernel(hw: Hardware, name: str) -> None:
    """An implementation the hardware has knobs for, 'auto', or one clear error."""
    from attn_dse.errors import AttnDseError
    known = implementations_for(hw)
    if name != "auto" and name not in known:
        raise AttnDseError(f"--kernel {name}: no calibrated knobs for '{name}' on {hw.name}",
                           fix="use auto or one of: " + ", ".join(known)
                               + " (calibrate your own: attn-dse validate HW --measurements CSV "
                                 "--implementation NAME --calibrate --write)")


def kernel_knobs(hw: Hardware, name: str) -> Knobs:
    """check_kernel, then knobs_for, with one look at the store (what every predict does)."""
    key = (hw.ancestry, name, hw.launch_overhead_s, hw.cores, hw.achievable.hbm_bytes_per_s or hw.hbm.bytes_per_s,
           store.index()[1])
    knobs = _CHECKED.get(key)
    if knobs is None:
        check_kernel(hw, name)
        knobs = _CHECKED[key] = knobs_for(hw, name)
    return knobs


def knobs_for(hw: Hardware, implementation: str = DEFAULT_IMPLEMENTATION) -> Knobs:
    """Stored knobs along the hardware's relatives over the defaults (cached per input; a stored
    file is re-read when the store changes)."""
    _, stamp = store.index()
    hbm = hw.achievable.hbm_bytes_per_s or hw.hbm.bytes_per_s
    key = (hw.ancestry, implementation, hw.launch_overhead_s, hw.cores, hbm, stamp)
    if key not in _CACHE:
        found = store.stored(relatives(hw), implementation)
        base = default_knobs(hw, implementation)
        _CACHE[key] = base if found is None else store.merge(base, found[0], str(found[1]))
    return _CACHE[key]


_CACHE: dict[tuple, Knobs] = {}
_IMPLEMENTATIONS: dict[tuple, dict] = {}
_CHECKED: dict[tuple, Knobs] = {}
