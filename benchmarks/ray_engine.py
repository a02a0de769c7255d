"""The Ray engine against the local engine at equal cores, side by side in one run, on this machine.

1. Encoding: every UC Merced image to backbone features (EfficientNet-Lite0, ONNX Runtime, VIEWS views (default
   8, hashidx's default), batch 8),
   engine local (one process: ONNX Runtime on all cores, 2 decode threads) against engine ray (a local Ray
   runtime of CPUS CPUs, one single-threaded actor per CPU). Rounds alternate the engines; each job is timed end
   to end (network build, every image, the feature cache written), the Ray runtime already up as a cluster
   would be. The features are compared.
2. Search: QUERIES codes drawn with replacement from a run's database codes, top 20 from its flat index, written
   as TSV: local (FAISS on all cores), ray replicas (each actor holds the index) and ray shards (each holds
   1/CPUS of it). The files are compared byte for byte.
3. The driver's ceiling: feature-sized rows through the Ray engine from a stage that computes nothing, collected
   and written as a feature cache: the rate past which more workers cannot help a single driver.

Writes OUT/ray_engine.json and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hashidx.codes.codefile import CodeFile
from hashidx.data.datasets import load_dataset
from hashidx.engines.local import LocalEngine
from hashidx.engines.ray_engine import RayEngine
from hashidx.features.cache import FeatureCache
from hashidx.features.extract import Encoded, extract_to
from hashidx.index import indexes as idx
from hashidx.io.atomic import write_json
from hashidx.results.query import Searcher, query_to_file

UCMD = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "UCMerced_LandUse" / "Images"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Echo:
    """A stage whose workers return zero features: what is left is the engine's and the driver's own cost."""

    dim: int

    def build(self, threads: int | None = None, device: str = "cpu") -> Echo:
        return self

    def load(self, chunk: list) -> list:
        return chunk

    def run(self, chunk: list) -> Encoded:
        return Encoded(np.array([i for i, _ in chunk]), np.zeros((len(chunk), self.dim), np.float32), [], "none")


def encoding(data: Path, out: Path, rounds: int, engines: dict, views: int) -> list[dict]:
    ds = load_dataset(data)
    rows = []
    for r in range(rounds):
        for name, engine in engines.items():
            target = out / f"features-{name}-{r}.h5"
            t0 = time.perf_counter()
            cache = extract_to(ds, target, "efficientnet-lite0", views=views, batch_size=8, engine=engine)
            seconds = time.perf_counter() - t0
            rows.append({"round": r, "engine": name, "images": len(cache.dataset), "seconds": seconds})
            print(f"  round {r} {name}: {len(cache.dataset) / seconds:.1f} images/s", flush=True)
    return rows


def search(run: Path, out: Path, queries: int, cpus: int, engines: dict, rounds: int) -> list[dict]:
    index_path = out / "db.index"
    idx.build_file(run / "codes.h5", index_path)
    db = CodeFile.load(run / "codes.h5")
    pick = np.random.default_rng(0).integers(0, len(db.codes), queries)
    qfile = out / "queries.h5"
    CodeFile(
        db.codes[pick],
        np.arange(queries),
        tuple(f"q{i}" for i in range(queries)),
        db.labels[pick],
        db.bits,
        "queries",
        dict(db.attrs),
    ).save(qfile)
    variants = {"local": (engines["local"], None), "ray replicas": (engines["ray"], None)}
    variants["ray shards"] = (engines["ray"], cpus)
    rows = []
    for r in range(rounds):
        for name, (engine, shards) in variants.items():
            target = out / f"results-{name.replace(' ', '-')}-{r}.tsv"
            t0 = time.perf_counter()
            searcher = Searcher(index_path, engine=engine, shards=shards, allow_model_mismatch=True)
            totals = query_to_file(searcher, qfile, target, k=20)
            seconds = time.perf_counter() - t0
            rows.append(
                {"round": r, "variant": name, "queries": totals.queries, "seconds": seconds, "sha256": sha(target)}
            )
            print(f"  round {r} {name}: {totals.queries / seconds:,.0f} queries/s", flush=True)
    return rows


def driver_ceiling(out: Path, engine: RayEngine, n: int, dim: int) -> dict:
    """Rows through the engine from the Echo stage (steady rate: from the first result on, past the actors'
    start), then the feature cache written: the driver's share of every row."""
    chunks = [[(i, None) for i in range(s, min(s + 8, n))] for s in range(0, n, 8)]
    t0 = time.perf_counter()
    first, blocks = 0.0, []
    for enc in engine.map(Echo(dim), chunks):
        if not blocks:
            first = time.perf_counter() - t0
        blocks.append(enc.rows)
    steady = time.perf_counter() - t0 - first
    features = np.concatenate(blocks)
    from hashidx.data.datasets import Dataset

    ds = Dataset(out, tuple(f"item{i}" for i in range(n)), np.zeros(n, np.int64), ("x",))
    t1 = time.perf_counter()
    FeatureCache(features, ds, "efficientnet-lite0", 224).save(out / "echo.h5")
    written = time.perf_counter() - t1
    rate = (n - len(chunks[0])) / steady
    return {
        "rows": n,
        "dim": dim,
        "first_result_s": first,
        "collect_rows_per_s": rate,
        "write_s": written,
        "rows_per_s": 1 / (1 / rate + written / n),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=UCMD)
    ap.add_argument("--run", type=Path, required=True, help="A trained run folder (codes.h5) for the search part.")
    ap.add_argument("--queries", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--echo-rows", type=int, default=80_000)
    ap.add_argument("--echo-dims", default="1712,32", help="Row widths for the driver's ceiling: features, outputs u.")
    ap.add_argument("--parts", default="encoding,search,driver", help="Which parts to run (comma-separated).")
    ap.add_argument("-o", "--out", type=Path, required=True)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    import ray

    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    ray.init(
        address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1"
    )
    engines = {"local": LocalEngine(), "ray": RayEngine(workers=args.cpus)}
    print(f"{engines['ray'].describe()} against local ({args.cpus} cores)", flush=True)
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "cpus": args.cpus,
        "ray": ray.__version__,
        "engine": engines["ray"].describe(),
    }
    parts = set(args.parts.split(","))
    if "encoding" in parts:
        print("encoding", flush=True)
        report["encoding"] = encoding(args.data, args.out, args.rounds, engines, args.views)
        feats = {name: FeatureCache.load(args.out / f"features-{name}-0.h5") for name in engines}
        report["features_max_abs_diff"] = float(np.abs(feats["local"].features - feats["ray"].features).max())
        report["features_same_paths"] = feats["local"].dataset.paths == feats["ray"].dataset.paths
    if "search" in parts:
        print("search", flush=True)
        report["search"] = search(args.run, args.out, args.queries, args.cpus, engines, args.rounds)
        report["search_files_identical"] = len({row["sha256"] for row in report["search"]}) == 1
    if "driver" in parts:
        print("driver ceiling", flush=True)
        dims = [int(d) for d in args.echo_dims.split(",")]
        report["driver"] = [driver_ceiling(args.out, engines["ray"], args.echo_rows, d) for d in dims]
    ray.shutdown()
    write_json(args.out / f"ray_engine-{'-'.join(sorted(parts))}.json", report)

    def best(rows: list[dict], key: str, name: str, unit: str) -> float:
        return max(r[unit] / r["seconds"] for r in rows if r[key] == name)

    if "encoding" in report:
        enc = {name: best(report["encoding"], "engine", name, "images") for name in engines}
        print("\n| encoding (best round) | images/s | vs local |\n|---|---:|---:|")
        for name, rate in enc.items():
            print(f"| {name} | {rate:.1f} | {rate / enc['local']:.2f} |")
        print(f"features max |ray - local| = {report['features_max_abs_diff']:.1e}")
    if "search" in report:
        srch = {v: best(report["search"], "variant", v, "queries") for v in ("local", "ray replicas", "ray shards")}
        print("\n| search (best round) | queries/s | vs local |\n|---|---:|---:|")
        for name, rate in srch.items():
            print(f"| {name} | {rate:,.0f} | {rate / srch['local']:.2f} |")
        print(f"search files identical: {report['search_files_identical']}")
    for d in report.get("driver", []):
        print(
            f"driver ceiling, {d['dim']}-d float32 rows: {d['collect_rows_per_s']:,.0f}/s collected (first after "
            f"{d['first_result_s']:.1f} s), {d['rows_per_s']:,.0f}/s with the file written"
        )


if __name__ == "__main__":
    main()
