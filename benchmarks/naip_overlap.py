"""Across the years: how often a NAIP 2009 chip's top-1 match among the 2014 and 2019 chips covers its own ground.

    python benchmarks/naip_overlap.py --features UCMD_FEATURES.h5 [-o OUT] [--tile 64:32] [--bits 32]

The same NAIP tile (North Dakota prairie, 5 m) in three years. A UC Merced model (AHCL, trained on 0.3 m RGB
aerial photos from the feature cache) reads bands 1,2,3 (R, G, B) of the 4-band files. The 2014 and 2019 scenes
are cut into chips and added to an index (`hashidx add --tile`), and an index of those chips alone is built from
INDEX.added.h5; every 2009 chip then queries it, with the default re-ranking and with `--rerank features`
(items of one code ordered by their content vectors). Reported: the share of queries whose top-1 footprint
overlaps the query's (any overlap, and IoU >= 0.5), beside the share a uniformly random chip would reach.
Writes OUT/naip_overlap.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from hashidx.codes.codefile import CodeFile
from hashidx.data.chips import Tiling
from hashidx.data.footprints import footprints
from hashidx.data.rasters import Radiometry
from hashidx.features.backbones import FeatureExtractor, backbone_spec
from hashidx.features.extract import extract
from hashidx.index import indexes as idx
from hashidx.index.add import add_images, added_path
from hashidx.io.atomic import write_json
from hashidx.methods.runs import train_run
from hashidx.results.query import Searcher

SCENES = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "scenes"


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of boxes (left, bottom, right, top) in one CRS, row by row (b may broadcast)."""
    w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = w * h
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", type=Path, required=True, help="UC Merced feature cache (hashidx features).")
    ap.add_argument("-o", "--out", type=Path, default=Path("naip-overlap"))
    ap.add_argument("--tile", default="64:32")
    ap.add_argument("--bits", type=int, default=32)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    run = args.out / "run"
    if not (run / "model.pt").exists():
        train_run(args.features, run, "ahcl", args.bits)
    model = run / "model.pt"
    tiling = Tiling.parse(args.tile)
    base = args.out / "ucmd.faiss"
    t0 = time.perf_counter()
    if not added_path(base).exists():
        idx.build_file(run / "codes.h5", base)
        for year in (2014, 2019):
            add_images(base, model, SCENES / f"naip_{year}.tif", tiling=tiling, bands="1,2,3")
    t_add = time.perf_counter() - t0
    scene_index = args.out / "naip.faiss"
    idx.build_file(added_path(base), scene_index)

    searcher = Searcher(scene_index, model, tiling=tiling, bands="1,2,3")
    t0 = time.perf_counter()
    queries = searcher.encode(SCENES / "naip_2009.tif")
    res = searcher.search(queries, k=1)
    t_query = time.perf_counter() - t0
    by_content = searcher.search(queries, k=1, rerank="features")
    q_fp = footprints([Path(str(SCENES / "naip_2009.tif") + "#" + n.split("#")[1]) for n in queries.names])
    assert q_fp is not None
    top = np.asarray([res.places[int(i)].bounds for i in res.ids[:, 0]])
    scores = iou(q_fp.bounds, top)
    content_scores = iou(q_fp.bounds, np.asarray([by_content.places[int(i)].bounds for i in by_content.ids[:, 0]]))
    # Chance: a top-1 drawn uniformly from the indexed chips.
    added = CodeFile.load(added_path(base))
    assert added.geo is not None
    db = added.geo.bounds
    chance = iou(q_fp.bounds[:, None, :], db[None, :, :])
    years = [res.paths[int(i)].split("_")[1][:4] for i in res.ids[:, 0]]
    # Reference without hashing: the frozen backbone's features (1 view), cosine top-1 among the same chips.
    look = Radiometry((1, 2, 3), ((0.0, 255.0),) * 3, "8-bit /255")
    extractor = FeatureExtractor(backbone_spec("efficientnet-lite0"), "imagenet", "onnx")
    q_paths = [Path(str(SCENES / "naip_2009.tif") + "#" + n.split("#")[1]) for n in queries.names]
    db_paths = [Path(f) for f in added.files or ()]
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    qf = unit(extract(q_paths, extractor, 224, radiometry=look, desc="2009 chips").features)
    dbf = unit(extract(db_paths, extractor, 224, radiometry=look, desc="2014/2019 chips").features)
    nearest = np.argmax(qf @ dbf.T, axis=1)
    feature_scores = iou(q_fp.bounds, db[nearest])
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "protocol": f"UC Merced AHCL {args.bits} bits reading NAIP bands 1,2,3; chips {args.tile} px "
        f"(5 m pixels); {len(queries.names)} queries (2009) against {len(db)} chips (2014 + 2019)",
        "top1_overlaps": float((scores > 0).mean()),
        "top1_iou_ge_0.5": float((scores >= 0.5).mean()),
        "content_top1_overlaps": float((content_scores > 0).mean()),
        "content_top1_iou_ge_0.5": float((content_scores >= 0.5).mean()),
        "features_top1_overlaps": float((feature_scores > 0).mean()),
        "features_top1_iou_ge_0.5": float((feature_scores >= 0.5).mean()),
        "chance_overlaps": float((chance > 0).mean()),
        "chance_iou_ge_0.5": float((chance >= 0.5).mean()),
        "top1_year": {y: years.count(y) for y in sorted(set(years))},
        "add_s": t_add,
        "query_s": t_query,
    }
    write_json(args.out / "naip_overlap.json", report)
    print(f"{report['machine']}\n{report['protocol']}\n")
    print(
        "| | AHCL codes, top-1 | codes, --rerank features | frozen features (cosine), top-1 | a random chip |\n"
        "|---|---:|---:|---:|---:|"
    )
    for label, key in (("footprint overlaps the query's", "overlaps"), ("IoU >= 0.5", "iou_ge_0.5")):
        print(
            f"| {label} | {report['top1_' + key]:.1%} | {report['content_top1_' + key]:.1%} "
            f"| {report['features_top1_' + key]:.1%} | {report['chance_' + key]:.1%} |"
        )
    print(f"\ntop-1 year: {report['top1_year']}; add {t_add:.0f} s, query {t_query:.0f} s")


if __name__ == "__main__":
    main()
