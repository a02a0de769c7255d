"""The full UC Merced run of the pipeline issue: features once, AHCL at each code length, evaluation.

Equivalent to:
    hashidx features DATA -o OUT/features.h5
    hashidx train OUT/features.h5 --method ahcl --bits B -o OUT/ahcl-B      (for each B)
    hashidx evaluate OUT/ahcl-B
Writes OUT/pipeline.json and prints a Markdown table with wall times.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from hashidx import __version__
from hashidx.atomic import write_json
from hashidx.datasets import load_dataset
from hashidx.evaluate import evaluate_run
from hashidx.features import DEFAULT_VIEWS, compute_features
from hashidx.runs import train_run

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared/datasets/UCMerced_LandUse/Images")
    ap.add_argument("--bits", default="16,32,64")
    ap.add_argument("--views", type=int, default=DEFAULT_VIEWS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--output", type=Path, default=Path("out/ucmd-pipeline"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    ds = load_dataset(args.data)
    cache = compute_features(ds, "efficientnet-lite0", views=args.views)
    features_path = args.output / "features.h5"
    cache.save(features_path)
    t_features = time.perf_counter() - t0
    rows = []
    for bits in (int(b) for b in args.bits.split(",")):
        t1 = time.perf_counter()
        rec = train_run(features_path, args.output / f"ahcl-{bits}", "ahcl", bits, seed=args.seed)
        metrics = evaluate_run(args.output / f"ahcl-{bits}")
        rows.append({"bits": bits, "train_s": rec["times_s"]["train"], "train_eval_s": time.perf_counter() - t1,
                     **{k: metrics[k] for k in ("mAP", "mAP@100", "P@10", "P@H<=2", "n_query", "n_database")}})
    total = time.perf_counter() - t0
    report = {"dataset": str(args.data), "n_images": len(ds), "views": args.views, "seed": args.seed,
              "features_s": t_features, "total_s": total, "rows": rows, "hashidx_version": __version__,
              "torch": torch.__version__, "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
              "machine": f"{platform.machine()} {platform.processor() or ''}".strip()}
    write_json(args.output / "pipeline.json", report)
    print(f"features: {len(ds)} images x {args.views} views in {t_features:.0f}s; total {total:.0f}s "
          f"on {os.cpu_count()} CPUs")
    print("| bits | mAP | mAP@100 | P@10 | P@H≤2 | training (s) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['bits']} | {r['mAP']:.4f} | {r['mAP@100']:.4f} | {r['P@10']:.4f} | {r['P@H<=2']:.4f} | {r['train_s']:.1f} |")


if __name__ == "__main__":
    main()
