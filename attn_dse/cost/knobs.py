"""The knobs the time model runs with, for one (hardware, implementation).

Fallback chain: the stored knobs of the hardware (or of the nearest preset it `extends:`) for
this implementation (`calibration/knobs.py`), over each kernel family's physically motivated
defaults (`cost/families/*`) and the hardware preset's launch overhead.
"""
from __future__ import annotations

from attn_dse.calibration import knobs as store
from attn_dse.calibration.knobs import Knobs
from attn_dse.cost.family import families
from attn_dse.hardware.spec import Hardware

DEFAULT_IMPLEMENTATION = "triton"


def default_knobs(hw: Hardware, implementation: str = DEFAULT_IMPLEMENTATION) -> Knobs:
    return Knobs(families={name: f.default_knobs(hw) for name, f in families().items()},
                 launch_overhead_s=hw.launch_overhead_s, implementation=implementation)


def knobs_for(hw: Hardware, implementation: str = DEFAULT_IMPLEMENTATION) -> Knobs:
    """Stored knobs along the hardware's lineage over the defaults (cached per input; a stored
    file is re-read when it changes)."""
    found = store.stored(hw.ancestry, implementation)
    hbm = hw.achievable.hbm_bytes_per_s or hw.hbm.bytes_per_s
    key = (hw.ancestry, implementation, hw.launch_overhead_s, hw.cores, hbm,
           found and (str(found[1]), found[1].stat().st_mtime_ns))
    if key not in _CACHE:
        base = default_knobs(hw, implementation)
        _CACHE[key] = base if found is None else store.merge(base, found[0], str(found[1]))
    return _CACHE[key]


_CACHE: dict[tuple, Knobs] = {}
