"""On-GPU checks and microbenchmarks of every kernel family: one run measures everything.

    python -m attn_dse.gpu.measure --out DIR      (on a machine with a CUDA GPU)

Every module of this package that names a `FAMILY` contributes its `check(rec, generator)`
(outputs poisoned with NaN, compared with the float32 reference) and `bench(rec)` (tuning of
its headline shapes, then its timed grid). Writes DIR/measurements.csv (one row per shape, with
device, driver, torch/triton versions, date, implementation, config, median and spread),
DIR/checks.csv and DIR/ceilings.csv (copy bandwidth, matmul rates).
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import platform
import sys
import time
from pathlib import Path

import torch

import attn_dse.gpu as gpu_package
from attn_dse.gpu.harness import Recorder, ceilings, provenance


def family_modules() -> dict:
    """FAMILY name -> module, for every module of the package that benches a family."""
    out = {}
    for info in pkgutil.iter_modules(gpu_package.__path__):
        module = importlib.import_module(f"attn_dse.gpu.{info.name}")
        if hasattr(module, "FAMILY") and hasattr(module, "bench"):
            out[module.FAMILY] = module
    return out


def main(out: Path, families: tuple[str, ...] | None = None) -> int:
    start = time.time()
    out.mkdir(parents=True, exist_ok=True)
    print(f"{platform.node()}: {provenance()}", flush=True)
    modules = family_modules()
    unknown = set(families or ()) - set(modules)
    if unknown:
        raise SystemExit(f"unknown families {sorted(unknown)}; known: {', '.join(sorted(modules))}")
    rec = Recorder(out)
    g = torch.Generator(device="cpu").manual_seed(0)
    for module in modules.values():
        module.check(rec, g)
    ceilings(out)
    for name in families or tuple(modules):
        modules[name].bench(rec)
        rec.write()
        torch.cuda.empty_cache()
    print(f"{len(rec.rows)} shapes measured, {sum(c['ok'] for c in rec.checks)}/{len(rec.checks)} checks ok, "
          f"{time.time() - start:.0f} s", flush=True)
    return 0 if all(c["ok"] for c in rec.checks) else 1


def cli() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="validate-out", type=Path, help="directory for the CSVs")
    ap.add_argument("--families", default="", help="comma list of families to time (default: all; checks "
                                                   "and ceilings always run)")
    args = ap.parse_args()
    return main(args.out, tuple(f for f in args.families.split(",") if f) or None)


if __name__ == "__main__":
    sys.exit(cli())
