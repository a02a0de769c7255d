"""Asymmetric vs symmetric on UC Merced: `hashidx bench` with the issue's settings, from a checkout.

Same library call as `hashidx bench DATA --bits 16,32,64 --methods ahcl,symmetric,itq,lsh -o OUT`:
all four methods at three code lengths on one split, training pool 20% of the database, and the
scaling run over database size. Writes OUT/report.md, OUT/report.json and the PNG plots.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hashidx.bench import run_bench

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared/datasets/UCMerced_LandUse/Images")
    ap.add_argument("--train-pool", type=float, default=0.2)
    ap.add_argument("-o", "--output", type=Path, default=Path("out/bench-ucmd"))
    args = ap.parse_args()
    report = run_bench(args.data, args.output, (16, 32, 64), ("ahcl", "symmetric", "itq", "lsh"),
                       train_pool=args.train_pool)
    print(f"{args.output / 'report.md'} ({report['total_s']:.0f} s)")


if __name__ == "__main__":
    main()
