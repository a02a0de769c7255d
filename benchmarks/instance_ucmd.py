"""Order inside a class: perturbed copies of UC Merced database images as queries, and the rank of each source.

    python benchmarks/instance_ucmd.py --features UCMD_FEATURES.h5 [-o OUT] [--bits 32] [--dims 16,32,64]

At 32 bits a UC Merced class is mostly one code, so "more like this image" returns the class in id order. Each
of 210 database images (a seeded draw) is cropped to 75-90% of its side, rotated by up to ±20°, resized
back and brightened or darkened by up to 20%, then queried as an image (the real pipeline: decode, 8 views,
backbone, head). Reported: the rank of its source in the 400 results the default re-ranking orders (K′ 400 by
uᵀv; ties by id; 401 where it is not among them), the tie-aware expected rank of that ordering, and
`--rerank features` for each content length (`train --content-dims`), beside the frozen features' own cosine
ranking; and the tie-aware mAP of the run's query split under both re-rankings. Writes OUT/instance_ucmd.json
and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from hashidx.codes.codefile import CodeFile
from hashidx.evaluation.evaluate import evaluate_run
from hashidx.features.backbones import FeatureExtractor, backbone_spec
from hashidx.features.cache import FeatureCache
from hashidx.features.extract import extract
from hashidx.index import indexes as idx
from hashidx.io.atomic import write_json
from hashidx.io.progress import set_quiet
from hashidx.methods.runs import train_run
from hashidx.methods.training import TrainConfig
from hashidx.results.query import Searcher


def perturb(database: list[str], root: Path, out: Path, n: int, seed: int = 0) -> list[tuple[str, Path, int]]:
    """n perturbed copies of database images as PNGs: (name, file, the source's id)."""
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(len(database), n, replace=False))
    items = []
    for j in picked.tolist():
        im = Image.open(root / database[j]).convert("RGB")
        w, h = im.size
        s = rng.uniform(0.75, 0.9)
        cw, ch = int(w * s), int(h * s)
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        im = im.crop((x0, y0, x0 + cw, y0 + ch)).resize((w, h), Image.BILINEAR)
        im = im.rotate(float(rng.uniform(-20, 20)), resample=Image.BILINEAR)
        im = ImageEnhance.Brightness(im).enhance(float(rng.uniform(0.8, 1.2)))
        path = out / f"{Path(database[j]).stem}.png"
        im.save(path)
        items.append((path.name, path, j))
    return items


def source_ranks(ids: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """1-based rank of each query's source in its result list; one past the list where it is not in it."""
    hit = ids == sources[:, None]
    return np.where(hit.any(axis=1), np.argmax(hit, axis=1) + 1, ids.shape[1] + 1)


def summary(r: np.ndarray) -> dict:
    return {
        "median": float(np.median(r)),
        "top1": float((r <= 1).mean()),
        "top10": float((r <= 10).mean()),
        "top100": float((r <= 100).mean()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", type=Path, required=True, help="UC Merced feature cache (hashidx features).")
    ap.add_argument("-o", "--out", type=Path, default=Path("instance-ucmd"))
    ap.add_argument("--bits", type=int, default=32)
    ap.add_argument("--dims", default="16,32,64", help="content lengths to train runs with")
    ap.add_argument("--copies", type=int, default=210)
    args = ap.parse_args()
    set_quiet(True)
    args.out.mkdir(parents=True, exist_ok=True)
    cache = FeatureCache.load(args.features)
    report: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "protocol": f"AHCL {args.bits} bits on {args.features.name} (split seed 0, 1,680 database items); "
        f"{args.copies} perturbed copies of database images (crop 75-90%, rotation ±20°, brightness ±20%) as "
        "image queries; rank of the source among all database items",
        "runs": {},
    }
    copies = args.out / "copies"
    copies.mkdir(exist_ok=True)
    items: list[tuple[str, Path, int]] = []
    database: list[str] = []
    for dims in [int(d) for d in args.dims.split(",")]:
        run = args.out / f"run-{dims}"
        if not (run / "model.pt").exists():
            train_run(args.features, run, "ahcl", args.bits, config=TrainConfig(content_dims=dims))
        db = CodeFile.load(run / "codes.h5")
        if not items:  # every run has the same split, so the same database and copies
            database = list(db.paths)
            items = perturb(database, Path(str(cache.dataset.root)), copies, args.copies)
        index = args.out / f"db-{dims}.faiss"
        idx.build_file(run / "codes.h5", index)
        searcher = Searcher(index, run / "model.pt")
        qs = searcher.encode_images([(name, path) for name, path, _ in items], "copies")
        sources = np.asarray([j for _, _, j in items])
        n = 400  # the default K′: the whole list the default re-ranking orders
        row: dict = {"bytes_per_item": 2 * dims, "code_bytes": args.bits // 8}
        default = searcher.search(qs, k=n)
        at = source_ranks(default.ids, sources)
        row["default"] = summary(at)
        # Tie-aware: the source's expected rank inside its group of equal score (K′ orders by score alone).
        found = at <= n
        own = default.scores[np.arange(len(at)), np.minimum(at, n) - 1][:, None]
        expected = (default.scores > own).sum(1) + ((default.scores == own).sum(1) + 1) / 2
        row["default_tie_aware"] = summary(np.where(found, expected, n + 1))
        row["features"] = summary(source_ranks(searcher.search(qs, k=n, rerank="features").ids, sources))
        row["mAP_default"] = evaluate_run(run)["mAP"]
        row["mAP_features"] = evaluate_run(run, rerank="features")["mAP"]
        report["runs"][str(dims)] = row
        print(dims, row, flush=True)
    # The frozen features' own ranking: cosine of the centred features (no codes), 4 bytes a dimension.
    pos = {p: i for i, p in enumerate(cache.dataset.paths)}
    dbf = np.asarray(cache.features)[[pos[p] for p in database]]
    extractor = FeatureExtractor(backbone_spec(cache.backbone), cache.weights, "onnx")
    qf = extract([path for _, path, _ in items], extractor, cache.image_size, cache.views, desc="copies").features
    mu = dbf.mean(axis=0)
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    order = np.argsort(-(unit(qf - mu) @ unit(dbf - mu).T), axis=1, kind="stable")[:, :400]
    report["frozen_features"] = summary(source_ranks(order, np.asarray([j for _, _, j in items])))
    report["frozen_bytes_per_item"] = 4 * dbf.shape[1]
    write_json(args.out / "instance_ucmd.json", report)
    print(f"{report['machine']}\n{report['protocol']}\n")
    print("| ranking | bytes an item | median rank | source first | in top 10 | in top 100 | query-split mAP |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for dims, row in report["runs"].items():
        if dims == args.dims.split(",")[0]:
            for label, key in (
                ("default (K′ 400, ties by id)", "default"),
                ("default, tie-aware", "default_tie_aware"),
            ):
                s = row[key]
                print(
                    f"| {label} | {row['code_bytes']} | {s['median']:.1f} | {s['top1']:.3f} | "
                    f"{s['top10']:.3f} | {s['top100']:.3f} | {row['mAP_default']:.4f} |"
                )
        s = row["features"]
        print(
            f"| --rerank features, {dims} dims | {row['code_bytes']} + {row['bytes_per_item']} | {s['median']:.1f} | "
            f"{s['top1']:.3f} | {s['top10']:.3f} | {s['top100']:.3f} | {row['mAP_features']:.4f} |"
        )
    s = report["frozen_features"]
    print(
        f"| frozen features, cosine | {report['frozen_bytes_per_item']} | {s['median']:.1f} | "
        f"{s['top1']:.3f} | {s['top10']:.3f} | {s['top100']:.3f} | - |"
    )


if __name__ == "__main__":
    main()
