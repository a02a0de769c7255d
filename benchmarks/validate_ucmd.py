"""Choose settings without touching the queries: AHCL on validation splits carved from the database.

The protocol behind README "Choices measured": the UC Merced split (seed 0) keeps its 420 queries aside;
its 1,680 database images are split again, 20% of each class as validation queries (split seeds 1..S),
and AHCL trains on the rest at training seeds 0..K-1 for each code length. Prints the mean validation
mAP per length; with --compare, the same runs on a second feature cache, paired run by run.

    python benchmarks/validate_ucmd.py --features out/ucmd-pipeline/features.h5
    python benchmarks/validate_ucmd.py --features A.h5 --compare B.h5 --splits 3 --seeds 3
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from hashidx.data.split import make_split, save_split
from hashidx.evaluation.evaluate import evaluate_run
from hashidx.features.cache import FeatureCache
from hashidx.io.progress import set_quiet
from hashidx.methods.runs import train_run


def validation_splits(features: Path, out: Path, n_splits: int) -> list[Path]:
    """Split files whose queries and database both come from the seed-0 split's database."""
    ds = FeatureCache.load(features).dataset
    _, database = make_split(ds, 0.2, 0).indices(ds)
    paths = []
    for seed in range(1, n_splits + 1):
        path = out / f"val-split-{seed}.json"
        save_split(make_split(ds.subset(database), 0.2, seed), path)
        paths.append(path)
    return paths


def validate(features: Path, splits: list[Path], bits: list[int], seeds: list[int], out: Path) -> dict:
    """Validation mAP of every (split, bits, seed) run."""
    res = {}
    for i, split in enumerate(splits):
        for b in bits:
            for seed in seeds:
                run = out / f"{features.stem}-s{i + 1}-{b}-{seed}"
                train_run(features, run, "ahcl", b, split_path=split, seed=seed)
                res[(i, b, seed)] = evaluate_run(run)["mAP"]
                print(f"{features.name} split {i + 1} bits {b} seed {seed}: {res[(i, b, seed)]:.4f}", flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", type=Path, required=True, help="feature cache of the whole dataset")
    ap.add_argument("--compare", type=Path, help="a second feature cache, run on the same splits and seeds")
    ap.add_argument("--bits", default="16,32,64")
    ap.add_argument("--splits", type=int, default=3, help="validation splits (split seeds 1..N)")
    ap.add_argument("--seeds", type=int, default=3, help="training seeds 0..K-1")
    ap.add_argument("-o", "--output", type=Path, default=Path("out/validate-ucmd"))
    args = ap.parse_args()
    set_quiet(True)
    args.output.mkdir(parents=True, exist_ok=True)
    bits, seeds = [int(b) for b in args.bits.split(",")], list(range(args.seeds))
    splits = validation_splits(args.features, args.output, args.splits)
    caches = [args.features] + ([args.compare] if args.compare else [])
    results = [validate(f, splits, bits, seeds, args.output / f"features-{i}") for i, f in enumerate(caches)]
    print("| features | " + " | ".join(f"mAP {b}" for b in bits) + " |")
    print("|---|" + "---:|" * len(bits))
    for f, res in zip(caches, results):
        print(f"| {f} | " + " | ".join(f"{np.mean([m for k, m in res.items() if k[1] == b]):.4f}" for b in bits) + " |")
    if args.compare:
        base, other = results
        for b in bits:
            keys = [k for k in base if k[1] == b]
            wins = sum(other[k] > base[k] for k in keys)
            diff = np.mean([other[k] - base[k] for k in keys])
            print(
                f"{b} bits: {args.compare} minus {args.features} {diff:+.4f}, ahead in {wins}/{len(keys)} paired runs"
            )


if __name__ == "__main__":
    main()
