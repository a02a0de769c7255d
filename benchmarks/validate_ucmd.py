"""Choose settings without touching the queries: AHCL on validation splits carved from the database.

The protocol behind README "Choices measured": the UC Merced split (seed 0) keeps its 420 queries aside;
its 1,680 database images are split again, 20% of each class as validation queries (split seeds 1..S),
and AHCL trains on the rest at training seeds 0..K-1 for each code length. Prints the mean validation
tie-aware mAP, mAP@100 and P@100 per length and re-ranking (--rerank none,ties,200: the default re-ranking
and K′ are chosen here); with --compare, the same runs on a second feature cache, paired run by run.

    python benchmarks/validate_ucmd.py --features out/ucmd-pipeline/features.h5
    python benchmarks/validate_ucmd.py --features A.h5 --compare B.h5 --splits 3 --seeds 3
    python benchmarks/validate_ucmd.py --features A.h5 --rerank none,ties,50,100,200,400,1344
    python benchmarks/validate_ucmd.py --features ML.h5 --method symmetric --lr 0.001,0.0003,0.0001

--method and --lr (a comma list: one set of runs per learning rate) choose a method's settings the same way.
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
from hashidx.methods.training import TrainConfig


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


def rerank_mode(text: str) -> str | int:
    return text if text in ("none", "ties") else int(text)


def validate(
    features: Path,
    splits: list[Path],
    bits: list[int],
    seeds: list[int],
    out: Path,
    reranks: list[str | int],
    method: str = "ahcl",
    config: TrainConfig | None = None,
) -> dict:
    """Validation metrics of every (split, bits, seed) run of `method` (with `config`) under each re-ranking."""
    res = {}
    for i, split in enumerate(splits):
        for b in bits:
            for seed in seeds:
                run = out / f"{features.stem}-s{i + 1}-{b}-{seed}"
                if not (run / "train.json").is_file():
                    train_run(features, run, method, b, split_path=split, seed=seed, config=config)
                for mode in reranks:
                    m = evaluate_run(run, rerank=mode)
                    res[(i, b, seed, mode)] = m
                    print(
                        f"{features.name} split {i + 1} bits {b} seed {seed} rerank {mode}: mAP {m['mAP']:.4f} "
                        f"mAP@100 {m['mAP@100']:.4f} P@100 {m['P@100']:.4f}",
                        flush=True,
                    )
    return res


def table(res: dict, bits: list[int], reranks: list[str | int], metric: str) -> None:
    print(f"\n{metric}, mean over validation splits and seeds")
    print("| rerank | " + " | ".join(f"{b} bits" for b in bits) + " |")
    print("|---|" + "---:|" * len(bits))
    for mode in reranks:
        cells = [np.mean([m[metric] for k, m in res.items() if k[1] == b and k[3] == mode]) for b in bits]
        print(f"| {mode} | " + " | ".join(f"{c:.4f}" for c in cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", type=Path, required=True, help="feature cache of the whole dataset")
    ap.add_argument("--compare", type=Path, help="a second feature cache, run on the same splits and seeds")
    ap.add_argument("--bits", default="16,32,64")
    ap.add_argument("--splits", type=int, default=3, help="validation splits (split seeds 1..N)")
    ap.add_argument("--seeds", type=int, default=3, help="training seeds 0..K-1")
    ap.add_argument("--rerank", default="none", help="comma list of re-rankings: none, ties, or K′ values")
    ap.add_argument("--method", default="ahcl")
    ap.add_argument("--lr", default=None, help="comma list of learning rates, one set of runs each")
    ap.add_argument("-o", "--output", type=Path, default=Path("out/validate-ucmd"))
    args = ap.parse_args()
    set_quiet(True)
    args.output.mkdir(parents=True, exist_ok=True)
    bits, seeds = [int(b) for b in args.bits.split(",")], list(range(args.seeds))
    splits = validation_splits(args.features, args.output, args.splits)
    caches = [args.features] + ([args.compare] if args.compare else [])
    reranks = [rerank_mode(x) for x in args.rerank.split(",")]
    if args.lr:
        for lr in args.lr.split(","):
            res = validate(
                args.features,
                splits,
                bits,
                seeds,
                args.output / f"{args.method}-lr{lr}",
                reranks,
                args.method,
                TrainConfig(lr=float(lr)),
            )
            print(f"\n## {args.method}, lr {lr}")
            for metric in ("mAP", "mAP@100"):
                table(res, bits, reranks, metric)
        return
    results = [
        validate(f, splits, bits, seeds, args.output / f"features-{i}", reranks, args.method)
        for i, f in enumerate(caches)
    ]
    for f, res in zip(caches, results):
        print(f"\n## {f}")
        for metric in ("mAP", "mAP@100", "P@100", "rank_s"):
            table(res, bits, reranks, metric)
    if args.compare:
        base, other = results
        for b in bits:
            keys = [k for k in base if k[1] == b and k[3] == reranks[0]]
            wins = sum(other[k]["mAP"] > base[k]["mAP"] for k in keys)
            diff = np.mean([other[k]["mAP"] - base[k]["mAP"] for k in keys])
            print(
                f"{b} bits: {args.compare} minus {args.features} {diff:+.4f}, ahead in {wins}/{len(keys)} paired runs"
            )


if __name__ == "__main__":
    main()
