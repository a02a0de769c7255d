"""The full UC Merced run of the pipeline issue: features once, AHCL at each code length, evaluation.

Equivalent to:
    hashidx features DATA -o OUT/features.h5
    hashidx train OUT/features.h5 --method ahcl --bits B -o OUT/ahcl-B      (for each B)
    hashidx evaluate OUT/ahcl-B
Writes OUT/pipeline.json and prints a Markdown table with wall times. With --seeds 0,1,2 the
trainings repeat per seed (same split) and the table adds mean ± sd; --features reuses a cache;
--runtime torch runs the backbone in eager PyTorch (the "before" of the ONNX Runtime figures).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from hashidx.data.datasets import load_dataset
from hashidx.data.split import make_split, save_split
from hashidx.evaluation.evaluate import evaluate_run
from hashidx.features.cache import FeatureCache
from hashidx.features.extract import DEFAULT_VIEWS, compute_features
from hashidx.features.runtime import DEFAULT_RUNTIME, RUNTIMES
from hashidx.io.atomic import write_json
from hashidx.methods.runs import train_run
from hashidx.version import __version__

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared/datasets/UCMerced_LandUse/Images")
    ap.add_argument("--bits", default="16,32,64")
    ap.add_argument("--views", type=int, default=DEFAULT_VIEWS)
    ap.add_argument("--seeds", default="0", help="training seeds; the split is always seed 0")
    ap.add_argument("--features", type=Path, help="reuse this feature cache instead of extracting")
    ap.add_argument("--runtime", choices=RUNTIMES, default=DEFAULT_RUNTIME, help="backbone runtime for the features")
    ap.add_argument("-o", "--output", type=Path, default=Path("out/ucmd-pipeline"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    if args.features:
        features_path = args.features
        ds = FeatureCache.load(features_path).dataset
    else:
        ds = load_dataset(args.data)
        features_path = args.output / "features.h5"
        compute_features(ds, "efficientnet-lite0", views=args.views, runtime=args.runtime).save(features_path)
    n_images = len(ds)
    t_features = time.perf_counter() - t0
    # One split (seed 0, 20% queries per class) for every code length and training seed.
    split_path = args.output / "split.json"
    save_split(make_split(ds, 0.2, 0), split_path)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for seed in seeds:
        for bits in (int(b) for b in args.bits.split(",")):
            t1 = time.perf_counter()
            run = args.output / f"ahcl-{bits}-seed{seed}"
            rec = train_run(features_path, run, "ahcl", bits, split_path=split_path, seed=seed)
            metrics = evaluate_run(run)
            rows.append(
                {
                    "bits": bits,
                    "seed": seed,
                    "train_s": rec["times_s"]["train"],
                    "train_eval_s": time.perf_counter() - t1,
                    **{k: metrics[k] for k in ("mAP", "mAP@100", "P@10", "P@H<=2", "n_query", "n_database")},
                }
            )
    total = time.perf_counter() - t0
    report = {
        "dataset": str(args.data),
        "n_images": n_images,
        "views": args.views,
        "runtime": FeatureCache.load(features_path).runtime,
        "seeds": seeds,
        "features_s": t_features,
        "total_s": total,
        "rows": rows,
        "hashidx_version": __version__,
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }
    write_json(args.output / "pipeline.json", report)
    print(
        f"features ({report['runtime']}): {n_images} images x {args.views} views in {t_features:.0f}s; "
        f"total {total:.0f}s on {os.cpu_count()} CPUs"
    )
    print("| bits | seed | mAP | mAP@100 | P@10 | P@H≤2 | training (s) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['bits']} | {r['seed']} | {r['mAP']:.4f} | {r['mAP@100']:.4f} | {r['P@10']:.4f} | "
            f"{r['P@H<=2']:.4f} | {r['train_s']:.1f} |"
        )
    if len(seeds) > 1:
        for bits in sorted({r["bits"] for r in rows}):
            maps = np.array([r["mAP"] for r in rows if r["bits"] == bits])
            print(f"{bits} bits: mAP {maps.mean():.4f} ± {maps.std(ddof=1):.4f} over seeds {args.seeds}")


if __name__ == "__main__":
    main()
