"""Backbone runtimes side by side on this machine, and the warm query path.

1. Backbone ms/pass, torch eager against ONNX Runtime, batch 1 and 8, 1 and 8 views, on real UC Merced
   images: interleaved rounds, best of 5 (hashidx.evaluation.bench.backbone_timings, which `hashidx bench`
   reports too), with the largest feature difference.
2. ONNX Runtime: all views of a batch in one call against one call per view.
3. Decoding ahead: extracting IMAGES x 8 views with 0, 1 and 2 decode threads (ONNX Runtime).
4. Codes: the same model's codes for images encoded through either runtime, bits flipped.
5. One query image, 8 views, in a warm process (hashidx.results.query.Searcher): decode, backbone, head,
   search + re-rank, write, end to end; and what a cold process pays first (import, model and index load).

Writes OUT/runtimes.json and prints Markdown tables. --run is a trained run folder (model.pt, codes.h5).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from hashidx.codes.binary import pack, sign
from hashidx.data.images import load_image
from hashidx.evaluation.bench import backbone_timings
from hashidx.features.backbones import FeatureExtractor, backbone_spec
from hashidx.features.cache import FeatureCache
from hashidx.features.extract import extract
from hashidx.index import indexes as idx
from hashidx.io.atomic import write_json
from hashidx.methods.checkpoints import load_checkpoint
from hashidx.methods.encoder import Encoder
from hashidx.results.query import QuerySet, Searcher, write_results
from hashidx.version import __version__

ROOT = Path(__file__).resolve().parents[1]
UCMD = ROOT.parent / "shared/datasets/UCMerced_LandUse/Images"


def best_of(fn, repeats: int, *args, **kwargs) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args, **kwargs)
        best = min(best, time.perf_counter() - t0)
    return best


def views_in_one_call(images: np.ndarray, repeats: int) -> list[dict]:
    """ONNX Runtime over 8 views: one call of 8B images against 8 calls of B, interleaved."""
    fx = FeatureExtractor(backbone_spec("efficientnet-lite0"), runtime="onnx")
    twin = fx.twin(224, 224)
    rows = []
    for b in (1, 8):
        x = (images[:b] - fx.mean) / fx.std
        stacked = np.concatenate([x] * 8)
        twin(stacked)
        one, per = float("inf"), float("inf")
        for _ in range(repeats):
            one = min(one, best_of(twin, 1, stacked))
            per = min(per, best_of(lambda v: [twin(v) for _ in range(8)], 1, x))
        rows.append(
            {"batch": b, "one_call_ms_per_pass": 1000 * one / (8 * b), "per_view_ms_per_pass": 1000 * per / (8 * b)}
        )
    return rows


def decode_threads(paths: list[Path], repeats: int) -> list[dict]:
    fx = FeatureExtractor(backbone_spec("efficientnet-lite0"), runtime="onnx")
    extract(paths[:8], fx, 224, 8, workers=0)  # warm
    t_decode = best_of(lambda: [load_image(p, 224) for p in paths], 1)
    times = {w: float("inf") for w in (0, 1, 2)}
    for _ in range(repeats):
        for w in times:
            times[w] = min(times[w], best_of(extract, 1, paths, fx, 224, 8, workers=w))
    return [
        {"workers": w, "images": len(paths), "s": t, "ms_per_image": 1000 * t / len(paths), "decode_alone_s": t_decode}
        for w, t in times.items()
    ]


def flipped_bits(paths: list[Path], run: Path, caches: list[Path] | None) -> dict:
    """The run's model over the same images' features from each runtime: `caches` (torch's, then ONNX Runtime's,
    e.g. from two benchmarks/ucmd_pipeline.py runs) or, without them, `paths` encoded both ways."""
    head, config = load_checkpoint(run / "model.pt")
    if caches:
        feats = [FeatureCache.load(c) for c in caches]
        assert feats[0].dataset.paths == feats[1].dataset.paths and [f.runtime for f in feats] == ["torch", "onnx"]
        encoder = Encoder(head, config)
        u = {f.runtime: encoder.embed_features(f.features) for f in feats}
        paths = [Path(p) for p in feats[0].dataset.paths]
        feature_diff = float(np.abs(feats[0].features - feats[1].features).max())
    else:
        u = {rt: Encoder(head, config, rt).embed_images(paths)[0] for rt in ("torch", "onnx")}
        feature_diff = float("nan")
    codes = {rt: sign(v) for rt, v in u.items()}
    flips = int((codes["torch"] != codes["onnx"]).sum())
    return {
        "images": len(paths),
        "bits": int(config["bits"]),
        "flipped_bits": flips,
        "images_with_a_flip": int((codes["torch"] != codes["onnx"]).any(axis=1).sum()),
        "max_abs_feature_diff": feature_diff,
        "max_abs_u_diff": float(np.abs(u["torch"] - u["onnx"]).max()),
        "min_abs_u": float(np.abs(u["torch"]).min()),
    }


def query_latency(run: Path, image: Path, repeats: int, runtime: str) -> dict:
    """One image, the model's views, in a warm process: each stage alone, then end to end (median and best)."""
    out = Path(tempfile.mkdtemp(prefix="hashidx-latency-"))
    idx.build_file(run / "codes.h5", out / "db.faiss", "flat")
    t0 = time.perf_counter()
    searcher = Searcher(out / "db.faiss", run / "model.pt", runtime=runtime)
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    searcher.warm()
    t_warm = time.perf_counter() - t0
    enc = searcher.encoder
    fx = enc.prepare()
    views, size = int(enc.config["views"]), int(enc.config["image_size"])
    items = [(image.name, image)]

    def end_to_end():
        write_results(searcher.search(searcher.encode_images(items), 20), out / "r.tsv")

    for _ in range(3):
        end_to_end()
    pixels = load_image(image, size)
    batch = pixels[None].transpose(0, 3, 1, 2)
    feats = fx(batch, views)
    u = enc.embed_features(feats)
    qs = QuerySet([image.name], pack(sign(u)), [], [image], [None], u)
    res = searcher.search(qs, 20)
    stages = {
        "decode": lambda: load_image(image, size),
        "backbone": lambda: fx(batch, views),
        "head": lambda: enc.embed_features(feats),
        "search + re-rank": lambda: searcher.search(qs, 20),
        "write": lambda: write_results(res, out / "r.tsv"),
    }
    row: dict = {"runtime": fx.runtime, "views": views, "database": int(searcher.index.ntotal)}
    for name, fn in stages.items():
        row[f"{name}_ms"] = 1000 * statistics.median(best_of(fn, 1) for _ in range(repeats))
    whole = [best_of(end_to_end, 1) for _ in range(repeats)]
    row["end_to_end_ms_median"] = 1000 * statistics.median(whole)
    row["end_to_end_ms_best"] = 1000 * min(whole)
    row["model_and_index_load_ms"] = 1000 * t_load
    row["network_build_ms"] = 1000 * t_warm
    return row


def cold_import_s() -> float:
    code = (
        "import time; t = time.perf_counter(); import hashidx.cli, hashidx.results.query, hashidx.methods.encoder, "
        "onnxruntime; print(time.perf_counter() - t)"
    )
    return min(float(subprocess.check_output([sys.executable, "-c", code], text=True)) for _ in range(3))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=UCMD)
    ap.add_argument("--run", type=Path, required=True, help="a trained frozen-backbone run folder")
    ap.add_argument("--images", type=int, default=160, help="images for the decode-thread and codes comparisons")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument(
        "--features", type=Path, nargs=2, metavar=("TORCH_H5", "ONNX_H5"), help="caches for the codes comparison"
    )
    ap.add_argument("-o", "--output", type=Path, default=Path("out/runtimes"))
    args = ap.parse_args()
    paths = sorted(args.data.glob("*/*"))
    sample = [paths[i] for i in np.linspace(0, len(paths) - 1, args.images).round().astype(int)]
    images = np.stack([load_image(p, 224) for p in sample[:8]]).transpose(0, 3, 1, 2)
    report = {
        "backbone": backbone_timings(images, backbone_spec("efficientnet-lite0"), repeats=args.repeats),
        "views_in_one_call": views_in_one_call(images, args.repeats),
        "decode_threads": decode_threads(sample, max(1, args.repeats // 2)),
        "codes": flipped_bits(sample, args.run, args.features),
        "query_latency": [query_latency(args.run, sample[0], 20, rt) for rt in ("onnx", "torch")],
        "cold_import_s": cold_import_s(),
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "torch_threads": torch.get_num_threads(),
        },
        "versions": {"hashidx": __version__, "torch": torch.__version__, "python": platform.python_version()},
    }
    import onnxruntime

    report["versions"]["onnxruntime"] = onnxruntime.__version__
    write_json(args.output / "runtimes.json", report)
    print("| batch | views | torch (ms/pass) | ONNX Runtime (ms/pass) | speed-up | max abs diff |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in report["backbone"]:
        print(
            f"| {r['batch']} | {r['views']} | {r['torch_ms_per_pass']:.1f} | {r['onnx_ms_per_pass']:.1f} | "
            f"{r['speedup']:.2f}x | {r['max_abs_diff']:.1e} |"
        )
    print("\n| batch | 8 views in one call (ms/pass) | one call per view (ms/pass) |\n|---:|---:|---:|")
    for r in report["views_in_one_call"]:
        print(f"| {r['batch']} | {r['one_call_ms_per_pass']:.2f} | {r['per_view_ms_per_pass']:.2f} |")
    print("\n| decode threads | images | s | ms/image |\n|---:|---:|---:|---:|")
    for r in report["decode_threads"]:
        print(f"| {r['workers']} | {r['images']} | {r['s']:.2f} | {r['ms_per_image']:.1f} |")
    print(f"(decoding alone: {report['decode_threads'][0]['decode_alone_s']:.2f} s)")
    print(f"\ncodes: {report['codes']}")
    print("\n| runtime | decode | backbone | head | search + re-rank | write | end to end (median / best) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in report["query_latency"]:
        print(
            f"| {r['runtime']} | {r['decode_ms']:.1f} | {r['backbone_ms']:.1f} | {r['head_ms']:.2f} | "
            f"{r['search + re-rank_ms']:.2f} | {r['write_ms']:.2f} | "
            f"{r['end_to_end_ms_median']:.1f} / {r['end_to_end_ms_best']:.1f} |"
        )
    print(
        "cold: import {:.2f} s, model+index load {:.0f} ms, network build {:.0f} ms (onnx)".format(
            report["cold_import_s"],
            report["query_latency"][0]["model_and_index_load_ms"],
            report["query_latency"][0]["network_build_ms"],
        )
    )


if __name__ == "__main__":
    main()
