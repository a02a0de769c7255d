"""Cold starts: whole `hashidx` commands in fresh processes, side by side in one run.

1. A one-image `query` (a UC Merced image against the run's flat index, k=20), each a new process:
   - ONNX Runtime, cache warm: the backbone graph is trusted by its digest and the head's arrays are remembered
     (hashidx.features.runtime, hashidx.methods.portable), so torch is never imported;
   - ONNX Runtime, cache empty (HASHIDX_CACHE_DIR fresh each round): the first use of a model on a machine, which
     exports the graph and checks it against torch;
   - torch (--runtime torch).
   Rounds are interleaved; the median counts. Each row says whether the process imported torch.
2. `features` over IMAGES UC Merced images at 1 view, ONNX Runtime (warm cache) against torch, interleaved.
3. Where the ONNX Runtime features command spends its time, measured in this process: decoding and resizing on
   one thread, the backbone on stacked batches, the HDF5 write, and Python's start with hashidx's imports.

Writes OUT/cold_start.json and prints Markdown.
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

from hashidx.io.atomic import write_json
from hashidx.version import __version__

ROOT = Path(__file__).resolve().parents[1]
UCMD = ROOT.parent / "shared/datasets/UCMerced_LandUse/Images"
# Runs the CLI and reports on stderr whether torch was imported by the time the process ends.
PROBE = (
    "import atexit, sys; "
    "atexit.register(lambda: sys.stderr.write(f\"\\nTORCH={'torch' in sys.modules}\\n\")); "
    "from hashidx.cli import main; main()"
)


def timed(args: list[str], env: dict | None = None) -> tuple[float, bool]:
    """Wall seconds of one `hashidx` process, and whether it imported torch."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, "--quiet", *args], env=env, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"hashidx {' '.join(args)} failed: {proc.stderr.strip()[-400:]}")
    return wall, "TORCH=True" in proc.stderr


def slice_of(root: Path, n: int, out: Path) -> Path:
    """The first n images of UC Merced, spread evenly over its classes, as a folder of links."""
    classes = sorted(p for p in root.iterdir() if p.is_dir())
    per = -(-n // len(classes))
    for c in classes:
        (out / c.name).mkdir(parents=True, exist_ok=True)
        for f in sorted(c.iterdir())[:per]:
            (out / c.name / f.name).symlink_to(f)
    return out


def profile(images: Path, work: Path) -> dict:
    """Seconds per part of an ONNX Runtime features pass, in this process."""
    import h5py

    from hashidx.data.images import load_image
    from hashidx.features.backbones import FeatureExtractor, backbone_spec

    paths = sorted(images.glob("*/*"))
    t0 = time.perf_counter()
    pixels = np.stack([load_image(p, 224) for p in paths]).transpose(0, 3, 1, 2)
    decode = time.perf_counter() - t0
    fx = FeatureExtractor(backbone_spec("efficientnet-lite0"), runtime="onnx")
    fx(pixels[:8])  # the session's first call
    t0 = time.perf_counter()
    feats = np.concatenate([fx(pixels[i : i + 8]) for i in range(0, len(pixels), 8)])
    backbone = time.perf_counter() - t0
    t0 = time.perf_counter()
    with h5py.File(work / "profile.h5", "w") as f:
        f.create_dataset("features", data=feats)
    write = time.perf_counter() - t0
    start, _ = timed(["--help"])
    return {
        "images": len(paths),
        "decode_resize_1_thread_s": decode,
        "backbone_s": backbone,
        "hdf5_write_s": write,
        "python_and_imports_s": start,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=2100, help="UC Merced images for the features comparison")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the one-image queries")
    ap.add_argument("--feature-rounds", type=int, default=2, help="interleaved rounds of the features commands")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "cold-start")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="hashidx-cold-") as tmp:
        work = Path(tmp)
        images = slice_of(UCMD, args.images, work / "images")
        env = {**os.environ, "HASHIDX_CACHE_DIR": str(work / "cache")}
        timed(["features", str(images), "--views", "1", "-o", str(work / "f.h5")], env)
        timed(["train", str(work / "f.h5"), "--bits", "32", "-o", str(work / "run")], env)
        timed(["build-index", str(work / "run" / "codes.h5"), "-o", str(work / "db.faiss")], env)
        query = sorted(images.glob("*/*"))[0]
        q = ["query", str(work / "db.faiss"), str(query), "--model", str(work / "run" / "model.pt"), "-k", "20"]
        timed([*q, "-o", str(work / "warm.tsv")], env)  # the first torch load remembers the head, trusts the graph
        variants = {
            "onnx, cache warm": lambda r: timed([*q, "-o", str(work / "a.tsv")], env),
            "onnx, cache empty": lambda r: timed(
                [*q, "-o", str(work / "b.tsv")], {**env, "HASHIDX_CACHE_DIR": str(work / f"fresh{r}")}
            ),
            "torch": lambda r: timed([*q, "--runtime", "torch", "-o", str(work / "c.tsv")], env),
        }
        seen: dict[str, list[tuple[float, bool]]] = {name: [] for name in variants}
        for r in range(args.rounds):
            for name, run in variants.items():
                seen[name].append(run(r))
        # ONNX Runtime's two starts give the same bytes; torch's backbone differs in float error, so its scores
        # may differ in the last digits while the items, their order and distances agree.
        same = (work / "a.tsv").read_bytes() == (work / "b.tsv").read_bytes()
        ranked = [[r.split("\t")[:5] for r in (work / f).read_text().splitlines()] for f in ("a.tsv", "c.tsv")]
        same_as_torch = ranked[0] == ranked[1]
        queries = [
            {
                "variant": name,
                "median_s": statistics.median(w for w, _ in runs),
                "min_s": min(w for w, _ in runs),
                "imported_torch": any(t for _, t in runs),
            }
            for name, runs in seen.items()
        ]
        # torch alone gets half the cores by default (hashidx.io.threads); "torch, all cores" gives it every core.
        feature_runs = {
            "onnx": ("onnx", env),
            "torch": ("torch", env),
            "torch, all cores": ("torch", {**env, "OMP_NUM_THREADS": str(os.cpu_count() or 1)}),
        }
        features: dict[str, list[float]] = {name: [] for name in feature_runs}
        for _ in range(args.feature_rounds):
            for name, (rt, run_env) in feature_runs.items():
                wall, _ = timed(
                    ["features", str(images), "--views", "1", "--runtime", rt, "-o", str(work / f"{rt}.h5")], run_env
                )
                features[name].append(wall)
        parts = profile(images, work)
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "versions": {"hashidx": __version__, "python": platform.python_version()},
        "query": queries,
        "query_results_identical_onnx_warm_and_empty": same,
        "query_ids_order_distances_identical_to_torch": same_as_torch,
        "features": {rt: {"best_s": min(w), "runs_s": w} for rt, w in features.items()},
        "features_speedup": {name: min(w) / min(features["onnx"]) for name, w in features.items() if name != "onnx"},
        "features_images": args.images,
        "onnx_features_profile": parts,
    }
    write_json(args.out / "cold_start.json", result)
    print("| one-image query | median s | min s | imports torch |\n|---|---:|---:|---|")
    for row in queries:
        print(
            f"| {row['variant']} | {row['median_s']:.2f} | {row['min_s']:.2f} | "
            f"{'yes' if row['imported_torch'] else 'no'} |"
        )
    print(
        f"\nONNX Runtime warm and empty: identical files {same}; items, order and distances as torch's: {same_as_torch}"
    )
    print(f"\n| features, {args.images} images x 1 view | best s | ONNX Runtime's speed-up |\n|---|---:|---:|")
    for name, row in result["features"].items():
        print(f"| {name} | {row['best_s']:.1f} | {min(features[name]) / min(features['onnx']):.2f}x |")
    print("\n| part of an ONNX Runtime features pass | s |\n|---|---:|")
    for k, v in parts.items():
        if k != "images":
            print(f"| {k} | {v:.2f} |")


if __name__ == "__main__":
    main()
