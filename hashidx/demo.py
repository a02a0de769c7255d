"""`hashidx demo`: the whole pipeline on a deterministic generated image set, or on a real dataset."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from hashidx.data.datasets import load_dataset
from hashidx.data.split import load_split
from hashidx.evaluation.evaluate import evaluate_run
from hashidx.index import indexes as idx
from hashidx.methods.runs import train_run
from hashidx.results.gallery import write_gallery
from hashidx.results.query import run_query, write_results

DEMO_CLASSES = ("fields", "diagonal-rows", "grid-blocks", "forest", "water", "tanks")


def _pattern(kind: str, rng: np.random.Generator, size: int) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    f = rng.uniform(6, 10)
    phase = rng.uniform(0, 2 * np.pi)
    if kind == "fields":
        g = np.sin(2 * np.pi * f * y + phase)
    elif kind == "diagonal-rows":
        g = np.sin(2 * np.pi * f * (x + y) / 1.4 + phase)
    elif kind == "grid-blocks":
        g = np.sign(np.sin(2 * np.pi * f * x + phase) * np.sin(2 * np.pi * f * y + phase))
    elif kind == "forest":
        g = (
            sum(
                np.sin(2 * np.pi * (rng.uniform(10, 25) * x * np.cos(a) + rng.uniform(10, 25) * y * np.sin(a)))
                for a in rng.uniform(0, np.pi, 6)
            )
            / 3
        )
    elif kind == "water":
        g = 0.3 * np.sin(2 * np.pi * 1.5 * x + phase) + 0.1 * rng.standard_normal((size, size))
    else:  # tanks: bright discs on a dark ground
        g = -np.ones((size, size), np.float32)
        for cx, cy in rng.uniform(0.15, 0.85, (5, 2)):
            g[(x - cx) ** 2 + (y - cy) ** 2 < rng.uniform(0.004, 0.01)] = 1.0
    return np.clip(g, -1, 1)


_PALETTE = {
    "fields": (0.55, 0.6, 0.3),
    "diagonal-rows": (0.5, 0.45, 0.3),
    "grid-blocks": (0.6, 0.55, 0.55),
    "forest": (0.2, 0.4, 0.2),
    "water": (0.15, 0.3, 0.5),
    "tanks": (0.5, 0.5, 0.5),
}


def make_demo_images(root: str | Path, per_class: int = 20, size: int = 96, seed: int = 0) -> Path:
    """Write a small class-folder dataset of textured scenes (same files for the same seed)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for kind in DEMO_CLASSES:
        (root / kind).mkdir(parents=True, exist_ok=True)
        base = np.asarray(_PALETTE[kind], np.float32)
        for i in range(per_class):
            g = _pattern(kind, rng, size)[..., None]
            colour = np.clip(base + rng.normal(0, 0.05, 3), 0, 1)
            img = np.clip(colour * (0.75 + 0.25 * g) + rng.normal(0, 0.03, (size, size, 3)), 0, 1)
            Image.fromarray((img * 255).astype(np.uint8)).save(root / kind / f"{kind}{i:02d}.png")
    return root


def run_demo(
    out: str | Path,
    data: str | Path | None = None,
    bits: int = 32,
    echo: Callable[[str], None] = print,
    n_queries: int = 20,
    k: int = 10,
    views: int = 8,
) -> dict:
    """features → train → build-index → query (+ gallery) → evaluate, every file under `out`."""
    out = Path(out)
    if data is None:
        data = make_demo_images(out / "images")
        echo(f"generated {len(DEMO_CLASSES)} classes x 20 images under {data}")
    run = out / "run"
    rec = train_run(data, run, "ahcl", bits, views=views)
    echo(f"trained AHCL ({bits} bits) in {rec['times_s']['train']:.1f}s; codes in {run / 'codes.h5'}")
    idx.build_file(run / "codes.h5", out / "index.faiss", "flat")
    split = load_split(run / "split.json")
    root = load_dataset(data).root
    query_file = out / "queries.txt"
    query_file.write_text(
        "".join(f"{(root / p).resolve()}\n" for p in split.query[:: max(1, len(split.query) // n_queries)][:n_queries]),
        encoding="utf-8",
    )
    results = run_query(out / "index.faiss", query_file, run / "model.pt", k=k)
    write_results(results, out / "results.tsv")
    # the last two folders name a dataset even where its images sit in a generic one (UCMerced_LandUse/Images)
    where = "/".join(Path(data).resolve().parts[-2:])
    title = f"hashidx demo: {len(results.queries)} of {len(split.query)} query images of {where}, AHCL {bits} bits"
    write_gallery(results, out / "gallery.html", title)
    echo(f"answered {query_file} into {out / 'results.tsv'}; open {out / 'gallery.html'} to see them")
    metrics = evaluate_run(run)
    return {k: metrics[k] for k in ("mAP", "mAP@10", "P@10", "P@H<=2", "bits", "n_query", "n_database")}
