"""EuroSAT_MS (200 Sentinel-2 chips, 13 bands, 10 classes): true colour (bands 4,3,2) against all 13 bands.

    python benchmarks/eurosat_bands.py [-o OUT] [--splits 5] [--finetune-splits 1] [--iterations 3]

Frozen: EfficientNet-Lite0 features (8 views; the 13-band network's first convolution widened from the RGB
filters), AHCL 32 bits, over `--splits` stratified splits (40 queries, 4 per class; 160 database items).
Fine-tuned: the whole network on the CPU with a short schedule (`--iterations` outer AHCL iterations), on the
first `--finetune-splits` splits. Tie-aware mAP of each; writes OUT/eurosat_bands.json and prints a Markdown
table. 200 images: read the differences against the spread over splits.
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
from hashidx.data.rasters import fit_radiometry
from hashidx.data.split import make_split, save_split
from hashidx.evaluation.evaluate import evaluate_run
from hashidx.features.extract import compute_features
from hashidx.io.atomic import write_json
from hashidx.methods.runs import train_run
from hashidx.methods.training import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
BANDS = {"RGB (4,3,2)": "4,3,2", "all 13 (4,3,2,1,5-13)": "4,3,2,1,5-13"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared/datasets/EuroSAT_MS")
    ap.add_argument("-o", "--out", type=Path, default=Path("eurosat-bands"))
    ap.add_argument("--bits", type=int, default=32)
    ap.add_argument("--splits", type=int, default=5)
    ap.add_argument("--finetune-splits", type=int, default=1)
    ap.add_argument("--iterations", type=int, default=3, help="Outer iterations of the fine-tuned runs.")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(os.cpu_count() or 1)
    ds = load_dataset(args.data)
    rows: dict[str, dict] = {}
    for name, bands in BANDS.items():
        radiometry, _ = fit_radiometry([ds.absolute(i) for i in range(len(ds))], bands)
        t0 = time.perf_counter()
        feats = args.out / f"features-{bands}.h5"
        compute_features(ds, "efficientnet-lite0", radiometry=radiometry).save(feats)
        row: dict = {"bands": bands, "scaling": radiometry.how, "features_s": time.perf_counter() - t0}
        frozen, tuned = [], []
        for seed in range(args.splits):
            split = args.out / f"split-{seed}.json"
            if not split.exists():
                save_split(make_split(ds, 0.2, seed), split)
            run = args.out / f"frozen-{bands}-{seed}"
            train_run(feats, run, "ahcl", args.bits, split_path=split)
            frozen.append(evaluate_run(run, with_curve=False)["mAP"])
            if seed < args.finetune_splits:
                run = args.out / f"finetuned-{bands}-{seed}"
                t1 = time.perf_counter()
                train_run(
                    args.data,
                    run,
                    "ahcl",
                    args.bits,
                    split_path=split,
                    finetune=True,
                    device="cpu",
                    bands=bands,
                    config=TrainConfig(iterations=args.iterations),
                )
                row["finetune_s"] = time.perf_counter() - t1
                tuned.append(evaluate_run(run, with_curve=False)["mAP"])
        row.update(frozen_mAP=frozen, finetuned_mAP=tuned)
        rows[name] = row
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
        "protocol": f"{args.splits} stratified splits (20% queries: 40 queries, 160 database), AHCL {args.bits} bits, "
        f"tie-aware mAP; fine-tuned: {args.iterations} outer iterations on the CPU, first "
        f"{args.finetune_splits} split(s)",
        "rows": rows,
    }
    write_json(args.out / "eurosat_bands.json", report)
    print(f"{report['machine']}\n{report['protocol']}\n")
    print("| bands | scaling | frozen mAP (mean ± sd over splits) | fine-tuned mAP |")
    print("|---|---|---:|---:|")
    for name, r in rows.items():
        f = np.asarray(r["frozen_mAP"])
        t = ", ".join(f"{x:.3f}" for x in r["finetuned_mAP"]) or "-"
        print(f"| {name} | {r['scaling']} | {f.mean():.3f} ± {f.std(ddof=1) if len(f) > 1 else 0:.3f} | {t} |")


if __name__ == "__main__":
    main()
