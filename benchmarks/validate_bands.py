"""Which bands a multispectral file is read with by default: candidates on EuroSAT-MS validation splits.

    python benchmarks/validate_bands.py [--data EUROSAT_MS] [-o OUT] [--bits 16,32,64] [--splits 5] [--seeds 3]

The 200 shared EuroSAT-MS chips keep the seed-0 split's 40 queries aside; its 160 database chips are split again,
20% of each class as validation queries (split seeds 1..S), and AHCL (frozen EfficientNet-Lite0, 8 views, default
re-ranking) trains on the rest at training seeds 0..K-1. Candidates: one pass of three bands through the RGB
network (true colour 4,3,2; false colour 8,4,3 = near-infrared, red, green; SWIR 8,12,13; 12,8,2), the first
convolution widened to 4 or 13 bands (3/N scaling), and two or three 3-band passes with their features
concatenated. Each band set is scaled by its own 2nd-98th percentiles. Prints the mean validation tie-aware mAP
(± the spread of split means) per candidate and length; writes OUT/validate_bands.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
from pathlib import Path

import numpy as np
from validate_ucmd import validation_splits

from hashidx.data.datasets import load_dataset
from hashidx.data.rasters import fit_radiometry
from hashidx.evaluation.evaluate import evaluate_run
from hashidx.features.cache import FeatureCache
from hashidx.features.extract import compute_features
from hashidx.io.atomic import write_json
from hashidx.io.progress import set_quiet
from hashidx.methods.runs import train_run

ROOT = Path(__file__).resolve().parents[1]
SINGLE = {
    "true colour (4,3,2)": "4,3,2",
    "false colour (8,4,3)": "8,4,3",
    "SWIR (8,12,13)": "8,12,13",
    "12,8,2": "12,8,2",
    "4 bands widened (4,3,2,8)": "4,3,2,8",
    "13 bands widened (4,3,2,1,5-13)": "4,3,2,1,5-13",
}
PASSES = {
    "passes 4,3,2 + 8,4,3": ("4,3,2", "8,4,3"),
    "passes 4,3,2 + 8,12,13": ("4,3,2", "8,12,13"),
    "passes 4,3,2 + 12,8,2": ("4,3,2", "12,8,2"),
    "passes 4,3,2 + 8,4,3 + 8,12,13": ("4,3,2", "8,4,3", "8,12,13"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared/datasets/EuroSAT_MS")
    ap.add_argument("-o", "--out", type=Path, default=Path("validate-bands"))
    ap.add_argument("--bits", default="32")
    ap.add_argument("--splits", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--only", default="", help="comma list of candidate names to run (default: all)")
    args = ap.parse_args()
    set_quiet(True)
    args.out.mkdir(parents=True, exist_ok=True)
    ds = load_dataset(args.data)
    caches: dict[str, Path] = {}
    for name, bands in SINGLE.items():
        path = args.out / f"features-{bands}.h5"
        if not path.exists():
            radiometry, _ = fit_radiometry([ds.absolute(i) for i in range(len(ds))], bands)
            compute_features(ds, "efficientnet-lite0", radiometry=radiometry).save(path)
        caches[name] = path
    by_bands = {bands: caches[name] for name, bands in SINGLE.items()}
    for name, parts in PASSES.items():
        path = args.out / f"features-{'+'.join(parts)}.h5"
        if not path.exists():
            loaded = [FeatureCache.load(by_bands[b]) for b in parts]
            joined = np.concatenate([np.asarray(c.features) for c in loaded], axis=1)
            dataclasses.replace(loaded[0], features=joined).save(path)
        caches[name] = path
    splits = validation_splits(caches["true colour (4,3,2)"], args.out, args.splits)
    only = [x for x in args.only.split(",") if x]
    results: dict[str, dict[int, list[list[float]]]] = {}
    for name, path in caches.items():
        if only and name not in only:
            continue
        for bits in (int(b) for b in args.bits.split(",")):
            per_split = []
            for i, split in enumerate(splits):
                maps = []
                for seed in range(args.seeds):
                    run = args.out / f"run-{path.stem}-{bits}-s{i + 1}-{seed}"
                    if not (run / "train.json").is_file():
                        train_run(path, run, "ahcl", bits, split_path=split, seed=seed)
                    maps.append(evaluate_run(run, with_curve=False)["mAP"])
                per_split.append(maps)
            results.setdefault(name, {})[bits] = per_split
            means = np.asarray(per_split).mean(axis=1)
            print(f"{name}: {bits} bits {means.mean():.4f} ± {means.std(ddof=1):.4f}", flush=True)
    # Runs of other lengths or candidates into the same OUT add to its table.
    table_path = args.out / "validate_bands.json"
    table = json.loads(table_path.read_text())["mAP"] if table_path.exists() else {}
    for name, rows in results.items():
        table.setdefault(name, {}).update({str(b): v for b, v in rows.items()})
    write_json(
        table_path,
        {
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
            "protocol": f"{args.splits} validation splits of the seed-0 database (128 training, 32 validation chips), "
            f"training seeds 0-{args.seeds - 1}, AHCL, 8 views, tie-aware mAP, default re-ranking; per candidate "
            "and length, the mAP of each split's runs (seed order)",
            "mAP": table,
        },
    )


if __name__ == "__main__":
    main()
