"""Sharded search on a two-node Ray cluster on this machine, against the local engine, side by side.

A two-node `ray.cluster_utils.Cluster` (one CPU a node) is started here; every command is a real `hashidx query`
in its own process: the local engine whole, the local engine in --shards S, and the Ray engine joined with
--ray-address in --shards S (S = 2, 4). The index holds N 64-bit codes (a learned-code-like mix: 64 class codes,
each item with a few bits flipped, seeded); the queries are Q such codes. Throughput is queries a second for
the whole command; every output must be the local file byte for byte. Writes OUT/ray_nodes.json, prints Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hashidx.codes.codefile import CodeFile
from hashidx.version import __version__


def codes(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).integers(0, 256, (64, 8), dtype=np.uint8)
    out = centres[rng.integers(0, 64, n)]
    out ^= np.packbits(rng.random((n, 64)) < 0.03, axis=1)
    return out


def run(args: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "hashidx", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-1000:])
    return time.perf_counter() - t0, done.stderr + done.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("-k", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path("docs/ray-engine"))
    args = ap.parse_args()
    from ray.cluster_utils import Cluster

    with tempfile.TemporaryDirectory(prefix="hashidx-nodes-") as tmp:
        work = Path(tmp)
        db, q = codes(args.items, 1), codes(args.queries, 2)
        names = tuple(f"item{i:08d}" for i in range(len(db)))
        CodeFile(db, np.arange(len(db)), names, np.full(len(db), -1), 64, "ahcl", {}).save(work / "db.h5")
        qnames = tuple(f"q{i:06d}" for i in range(len(q)))
        CodeFile(q, np.arange(len(q)), qnames, np.full(len(q), -1), 64, "ahcl", {}).save(work / "q.h5")
        run(["--quiet", "build-index", str(work / "db.h5"), "--type", "flat", "-o", str(work / "db.faiss")])
        base = ["query", str(work / "db.faiss"), str(work / "q.h5"), "-k", str(args.k)]
        nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
        nodes.add_node(num_cpus=1)
        nodes.wait_for_nodes()
        try:
            variants = {
                "local": [],
                "local, --shards 2": ["--shards", "2"],
                "ray 2 nodes, --shards 2": ["--engine", "ray", "--ray-address", nodes.address, "--shards", "2"],
                "ray 2 nodes, --shards 4": ["--engine", "ray", "--ray-address", nodes.address, "--shards", "4"],
            }
            rows = []
            for name, extra in variants.items():
                out = work / f"{len(rows)}.tsv"
                wall, said = run([*base, *extra, "-o", str(out)])
                placed = next((line for line in said.splitlines() if "shard(s) on" in line), "")
                rows.append(
                    {"variant": name, "s": wall, "queries_per_s": args.queries / wall, "placed": placed.strip()}
                )
            want = (work / "0.tsv").read_bytes()
            for i, row in enumerate(rows):
                row["identical_to_local"] = (work / f"{i}.tsv").read_bytes() == want
        finally:
            nodes.shutdown()
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "hashidx": __version__,
        "items": args.items,
        "queries": args.queries,
        "k": args.k,
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ray_nodes.json").write_text(json.dumps(report, indent=1))
    print("| search | s | queries/s | placed | identical to local |\n|---|---:|---:|---|---|")
    for r in rows:
        print(
            f"| {r['variant']} | {r['s']:.1f} | {r['queries_per_s']:.0f} | {r['placed']} | {r['identical_to_local']} |"
        )


if __name__ == "__main__":
    main()
