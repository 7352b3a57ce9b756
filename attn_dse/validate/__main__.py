"""python -m attn_dse.validate --measure --out DIR: check and time every kernel on this GPU."""
import argparse
import sys
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--measure", action="store_true", help="run checks, ceilings and the timed grid")
    ap.add_argument("--out", default="validate-out", type=Path)
    ap.add_argument("--families", default="prefill,decode,mla_decode,block_sparse",
                    help="comma list of kernel families to time (checks and ceilings always run)")
    args = ap.parse_args()
    if not args.measure:
        ap.error("nothing to do: pass --measure (and --out DIR)")
    from attn_dse.validate.measure import main as measure
    return measure(args.out, tuple(f for f in args.families.split(",") if f))


if __name__ == "__main__":
    sys.exit(main())
