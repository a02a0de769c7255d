"""The asymmetric saving at 10⁵ database items: real chips cut from the shared scenes, AHCL against symmetric.

    python benchmarks/efficiency_chips.py [-o OUT] [--tile 32:6] [--pool 2000] [--queries 500] [--sizes 10000]

The six scenes (drone orthophoto, NAIP 2009/2014/2019, Sentinel-2, Landsat) are cut into chips of `--tile` at a
small stride and labelled by scene (the three NAIP years, one ground, are one label: 4 labels). `--queries` chips
(stratified, seeded) are the queries; the rest is the database. Bands 1,2,3 of every file, 8-bit /255.
`hashidx.evaluation.bench.scaling_run` (the loop `hashidx bench` reports from) then times database codes at each
size n, both methods' backbone passes run for real on ONNX Runtime at 1 view: AHCL's over a pool of `--pool`
chips plus its solver's code steps for all n items; the symmetric method's over all n chips plus its head. It also
gives both methods' tie-aware mAP on the same queries. Writes OUT/efficiency_chips.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

from hashidx.data.chips import Tiling
from hashidx.data.datasets import load_dataset
from hashidx.data.rasters import Radiometry
from hashidx.data.split import make_split
from hashidx.evaluation.bench import scaling_run
from hashidx.features.backbones import DEFAULT_BACKBONE, FeatureExtractor, backbone_spec
from hashidx.features.extract import extract
from hashidx.io.atomic import write_json

SCENES = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "scenes"
LABELS = {
    "drone": ["drone_orthophoto.tif"],
    "naip": ["naip_2009.tif", "naip_2014.tif", "naip_2019.tif"],
    "sentinel2": ["sentinel2_tci.tif"],
    "landsat": ["landsat_rgb.tif"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--out", type=Path, default=Path("efficiency-chips"))
    ap.add_argument("--tile", default="32:6")
    ap.add_argument("--pool", type=int, default=2000)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--sizes", default="10000", help="database sizes below the whole database to time as well")
    ap.add_argument("--bits", type=int, default=32)
    args = ap.parse_args()
    folders = args.out / "scenes"
    for label, files in LABELS.items():
        (folders / label).mkdir(parents=True, exist_ok=True)
        for name in files:
            link = folders / label / name
            if not link.exists():
                link.symlink_to(SCENES / name)
    ds, tiled = load_dataset(folders).tiled(Tiling.parse(args.tile))
    split = make_split(ds, args.queries / len(ds), 0)
    query_idx, db_idx = split.indices(ds)
    look = Radiometry((1, 2, 3), ((0.0, 255.0),) * 3, "8-bit /255")
    spec = backbone_spec(DEFAULT_BACKBONE)
    extractor = FeatureExtractor(spec, "imagenet", "onnx")
    queries = extract([ds.absolute(i) for i in query_idx], extractor, spec.image_size, radiometry=look, desc="queries")
    sizes = sorted({*(int(s) for s in args.sizes.split(",") if s), len(db_idx)})
    t0 = time.perf_counter()
    rows = scaling_run(
        ds,
        db_idx,
        args.pool,
        sizes,
        extractor,
        spec.image_size,
        args.bits,
        queries=(queries.features, ds.labels[query_idx]),
        radiometry=look,
    )
    counts = {c: int((ds.labels == i).sum()) for i, c in enumerate(ds.classes)}
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "protocol": f"{len(ds)} chips ({args.tile} px) of the six shared scenes, labelled by scene ({counts}); "
        f"{len(query_idx)} query chips, {len(db_idx)} database chips; AHCL and symmetric {args.bits} bits, pool "
        f"{args.pool}, 1 view, EfficientNet-Lite0 on ONNX Runtime, bands 1,2,3 /255, seed 0",
        "skipped_chips": tiled.skipped,
        "rows": rows,
        "wall_s": time.perf_counter() - t0,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "efficiency_chips.json", report)
    print(f"{report['machine']}\n{report['protocol']}\n")
    print(
        "| database n | AHCL: chips through the network | AHCL (s) | symmetric: chips | symmetric (s) | ratio | "
        "mAP AHCL | mAP symmetric | mAP AHCL, re-ranked | mAP symmetric, re-ranked |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['n']:,} | {r['ahcl_images']:,} | {r['ahcl_s']:.1f} | {r['symmetric_images']:,} | "
            f"{r['symmetric_s']:.1f} | {r['ratio']:.1f} | {r['ahcl_mAP']:.4f} | {r['symmetric_mAP']:.4f} | "
            f"{r['ahcl_mAP_reranked']:.4f} | {r['symmetric_mAP_reranked']:.4f} |"
        )


if __name__ == "__main__":
    main()
