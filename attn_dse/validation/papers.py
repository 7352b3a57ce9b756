"""Published results against the cost model: each claim of `papers.yaml` (source, setup, quantity,
published value, tolerance, and the named reason where the model misses it) evaluated through
the public `predict`, giving the predicted value and predicted/published."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attn_dse.errors import AttnDseError

PAPERS = Path(__file__).with_name("papers.yaml")
QUANTITIES = ("speedup", "latency_s", "intensity", "flop_rate", "hbm_rate")
KEYS = {"id", "title", "source", "quantity", "published", "tolerance", "hardware", "predict", "baseline",
        "candidate", "setup_sources", "reason", "up_to"}


@dataclass(frozen=True, slots=True)
class ClaimResult:
    id: str
    title: str
    source: dict
    quantity: str
    published: float
    predicted: float
    tolerance: float
    hardware: str
    setup: dict  # predict arguments and the workloads compared
    setup_sources: dict = field(default_factory=dict)
    reason: str = ""  # why the model misses it, where it does
    knobs: str = ""  # where the time model's knobs came from (a stored file, or the family defaults)

    @property
    def ratio(self) -> float:
        return self.predicted / self.published

    @property
    def within(self) -> bool:
        return abs(self.ratio - 1.0) <= self.tolerance

    def to_dict(self) -> dict:
        return {"id": self.id, "title": self.title, "source": self.source, "quantity": self.quantity,
                "hardware": self.hardware, "setup": self.setup, "setup_sources": self.setup_sources,
                "published": self.published, "predicted": self.predicted, "ratio": self.ratio,
                "tolerance": self.tolerance, "within": self.within, "reason": self.reason or None,
                "knobs": self.knobs}


def load_claims(path: str | Path = PAPERS) -> list[dict]:
    from attn_dse.strict_yaml import loads
    path = Path(path)
    data = loads(path.read_text(), str(path))
    claims = (data or {}).get("claims")
    if not isinstance(claims, list) or not claims:
        raise AttnDseError(f"{path}: no 'claims' list", fix="write claims: [- id: ..., ...]")
    seen = set()
    for i, c in enumerate(claims):
        where = f"{path}: claims[{i}]"
        unknown = set(c) - KEYS
        if unknown:
            raise AttnDseError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}", fix="keys: " + ", ".join(sorted(KEYS)))
        for key in ("id", "source", "quantity", "published", "tolerance", "hardware", "candidate"):
            if key not in c:
                raise AttnDseError(f"{where}: missing '{key}'", fix=f"add {key}: ...")
        if c["quantity"] not in QUANTITIES:
            raise AttnDseError(f"{where}: quantity '{c['quantity']}' is unknown", fix="use one of " + ", ".join(QUANTITIES))
        if c["quantity"] == "speedup" and "baseline" not in c:
            raise AttnDseError(f"{where}: a speedup needs a baseline", fix="add baseline: {variant: ..., params: {...}}")
        grid = c.get("up_to")
        if grid is not None and not (isinstance(grid, dict) and grid
                                     and all(isinstance(v, list) and v for v in grid.values())):
            raise AttnDseError(f"{where}: up_to must map axes to lists of values",
                               fix="e.g. up_to: {context: [4096, 8192], n_heads: [16, 128]}")
        if c["id"] in seen:
            raise AttnDseError(f"{where}: id '{c['id']}' appears twice", fix="give each claim its own id")
        seen.add(c["id"])
    return claims


def knobs_origin(hw: str) -> str:
    """Which stored knob file the predictions of `hw` use (its own, or a same-silicon relative's:
    `cost/knobs.py: relatives`), or that none is stored and the families' defaults apply."""
    from attn_dse.calibration.knobs import stored
    from attn_dse.cost.knobs import DEFAULT_IMPLEMENTATION, relatives
    from attn_dse.hardware.loader import load_hardware
    found = stored(relatives(load_hardware(hw)), DEFAULT_IMPLEMENTATION)
    return f"{found[1].parent.name}/{found[1].name}" if found else f"family defaults (no knobs stored for {hw})"


def _predict(hw: str, entry: dict, kw: dict):
    from attn_dse import attention, predict
    wl = attention(entry["variant"], **(entry.get("params") or {}))
    return predict(hw, wl, **kw)


def _value(claim: dict, kw: dict, params: dict):
    """The claim's quantity at one point (`params` override both workloads' parameters)."""
    hw, q = claim["hardware"], claim["quantity"]

    def run(entry):
        return _predict(hw, {**entry, "params": {**(entry.get("params") or {}), **params}}, kw)
    cand = run(claim["candidate"])
    if q == "speedup":
        return run(claim["baseline"]).latency_s / cand.latency_s
    if q == "latency_s":
        return cand.latency_s
    if q == "intensity":
        return cand.arithmetic_intensity
    if q == "flop_rate":
        return cand.flops / cand.latency_s
    return cand.min_hbm_bytes / cand.latency_s  # bytes as a benchmark counts them: each tensor once


def evaluate(claim: dict) -> ClaimResult:
    """One claim: the prediction of its quantity under its setup. A claim of the form 'up to X'
    over a benchmark grid (`up_to`: axis -> values; an axis is a predict argument or a workload
    parameter) is the largest value over the grid."""
    import inspect
    import itertools

    from attn_dse import predict
    kw = dict(claim.get("predict") or {})
    hw, q = claim["hardware"], claim["quantity"]
    grid = claim.get("up_to") or {}
    predict_args = set(inspect.signature(predict).parameters)
    values = []
    for point in itertools.product(*grid.values()):
        at = dict(zip(grid, point))
        values.append(float(_value(claim, {**kw, **{k: v for k, v in at.items() if k in predict_args}},
                                   {k: v for k, v in at.items() if k not in predict_args})))
    value = max(values)
    setup = {"predict": kw, "candidate": claim["candidate"], **({"baseline": claim["baseline"]} if "baseline" in claim else {}),
             **({"up_to": grid} if grid else {})}
    return ClaimResult(id=claim["id"], title=claim.get("title", ""), source=dict(claim["source"]), quantity=q,
                       published=float(claim["published"]), predicted=float(value), tolerance=float(claim["tolerance"]),
                       hardware=hw, setup=setup, setup_sources=dict(claim.get("setup_sources") or {}),
                       reason=" ".join(str(claim.get("reason") or "").split()), knobs=knobs_origin(hw))


def evaluate_all(path: str | Path = PAPERS) -> list[ClaimResult]:
    return [evaluate(c) for c in load_claims(path)]


def describe_setup(r: ClaimResult) -> str:
    """One line: hardware, the predict arguments, and the compared workloads."""
    def wl(e: dict) -> str:
        params = ",".join(f"{k}={v}" for k, v in (e.get("params") or {}).items())
        return f"{e['variant']}({params})"
    args = " ".join(f"{k}={v}" for k, v in r.setup["predict"].items())
    pair = f"{wl(r.setup['baseline'])} -> {wl(r.setup['candidate'])}" if "baseline" in r.setup else wl(r.setup["candidate"])
    grid = r.setup.get("up_to")
    over = "; max over " + ", ".join(f"{k} in {v}" for k, v in grid.items()) if grid else ""
    return f"{r.hardware} {args}; {pair}{over}; knobs: {r.knobs}"
