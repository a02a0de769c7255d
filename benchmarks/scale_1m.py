"""A million labelled items: AHCL database codes from labels alone, then flat / IVF / HNSW indexes and queries.

Synthetic, seeded data (no images): C classes, a pool of features whose images would train the
network (class centre + noise, 1280-d like EfficientNet-Lite0's head), N label-only archive items, and
held-out queries drawn like the pool. Every step runs through the `hashidx` command line in its own
process, so wall time and peak RSS are the whole command's:

    hashidx train pool.h5 --split split.json --labels-only archive.h5 --bits 64 -o run
    hashidx build-index run/codes.h5 --type flat|ivf|hnsw -o index-TYPE.faiss
    hashidx query index-TYPE.faiss queries.h5 -k 10 -o results-TYPE.tsv      (queries.h5: codes)

Then, in this process and side by side: search time and recall@k of IVF / HNSW against flat, and
`query.run_query` + writing results against a bare FAISS read + search of the same codes.
Writes OUT/scale.json and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import faiss
import numpy as np

from hashidx.codes.binary import hamming
from hashidx.codes.codefile import CodeFile
from hashidx.data.datasets import Dataset
from hashidx.data.labels import LabelFile
from hashidx.data.split import Split, save_split
from hashidx.features.cache import FeatureCache
from hashidx.index import indexes as idx
from hashidx.io.atomic import write_json
from hashidx.results.query import run_query, write_results
from hashidx.version import __version__


def make_data(out: Path, n_items: int, n_pool: int, n_query: int, classes: int, dim: int, seed: int) -> None:
    """pool.h5 (pool + query features), split.json, archive.h5 (label-only items)."""
    rng = np.random.default_rng(seed)
    names = tuple(f"class{k:02d}" for k in range(classes))
    centres = rng.normal(size=(classes, dim)).astype(np.float32)
    labels = np.arange(n_pool + n_query) % classes
    rng.shuffle(labels)
    feats = np.maximum(centres[labels] + 2.0 * rng.normal(size=(len(labels), dim)).astype(np.float32), 0)
    paths = tuple(f"pool/{names[c]}/{i:06d}.jpg" for i, c in enumerate(labels))
    FeatureCache(feats, Dataset(out, paths, labels.astype(np.int64), names), "efficientnet-lite0", 224, 1).save(
        out / "pool.h5"
    )
    save_split(Split(seed, n_query / (n_pool + n_query), paths[n_pool:], paths[:n_pool]), out / "split.json")
    LabelFile(tuple(f"archive/{i:07d}" for i in range(n_items)), rng.integers(0, classes, n_items), names).save(
        out / "archive.h5"
    )


def timed_command(args: list[str]) -> dict:
    """Run `python -m hashidx ARGS`; wall seconds and the child's own peak RSS (wait4, not all children)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hashidx", "--quiet", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    out, err = proc.stdout.read(), proc.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"hashidx {' '.join(args)} failed:\n{err}")
    return {"wall_s": wall, "peak_rss_gb": usage.ru_maxrss / 2**20, "stdout": out.strip()}


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def recall_at_k(approx: tuple[np.ndarray, np.ndarray], exact: tuple[np.ndarray, np.ndarray], k: int) -> dict:
    """Two recalls of an approximate top-k against flat's.

    `ids`: the share of flat's ids found (meaningless under heavy ties: any of thousands of
    distance-0 items is as good). `distance`: the share of returned items at or within flat's
    k-th distance, i.e. results as near as the exact ones; the one to read for binary codes.
    """
    (d_a, i_a), (d_e, i_e) = approx, exact
    id_hits = np.mean([len(set(a[a >= 0]) & set(e)) / k for a, e in zip(i_a[:, :k], i_e[:, :k])])
    kth = d_e[:, k - 1 : k]
    dist_hits = ((d_a[:, :k] <= kth) & (i_a[:, :k] >= 0)).sum(axis=1) / k
    return {"ids": float(id_hits), "distance": float(dist_hits.mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=1_000_000, help="label-only archive items")
    ap.add_argument("--pool", type=int, default=2000, help="items with features that train the network")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--classes", type=int, default=45)
    ap.add_argument("--bits", type=int, default=64)
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats per search (best taken)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--output", type=Path, default=Path("out/scale-1m"))
    args = ap.parse_args()
    out = args.output
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    make_data(out, args.items, args.pool, args.queries, args.classes, args.dim, args.seed)
    t_data = time.perf_counter() - t0

    run = out / "run"
    train = timed_command(
        [
            "train",
            str(out / "pool.h5"),
            "--split",
            str(out / "split.json"),
            "--labels-only",
            str(out / "archive.h5"),
            "--bits",
            str(args.bits),
            "--seed",
            str(args.seed),
            "-o",
            str(run),
        ]
    )
    record = json.loads((run / "train.json").read_text())
    log = record["log"]
    db = CodeFile.load(run / "codes.h5")

    # Query codes: the held-out features through the trained head, saved as a codes file.
    from hashidx.methods.checkpoints import load_checkpoint
    from hashidx.methods.encoder import Encoder

    cache = FeatureCache.load(out / "pool.h5")
    query_rows = np.arange(args.pool, args.pool + args.queries)
    head, config = load_checkpoint(run / "model.pt")
    qcodes = Encoder(head, config).encode_features(cache.features[query_rows])
    qlabels = cache.dataset.labels[query_rows]
    CodeFile(
        qcodes,
        np.arange(len(qcodes)),
        tuple(cache.dataset.paths[i] for i in query_rows),
        qlabels,
        args.bits,
        "ahcl",
        {"model_sha256": db.attrs["model_sha256"]},
    ).save(out / "queries.h5")

    builds, searches, loaded = {}, {}, {}
    for kind in ("flat", "ivf", "hnsw"):
        builds[kind] = timed_command(
            ["build-index", str(run / "codes.h5"), "--type", kind, "-o", str(out / f"index-{kind}.faiss")]
        )
        loaded[kind] = idx.load(out / f"index-{kind}.faiss")
    exact = idx.search(loaded["flat"][0], qcodes, args.k)
    # The numpy reference on a few queries: flat is exact.
    ref = hamming(qcodes[:20], db.codes)
    assert np.array_equal(np.sort(ref, axis=1)[:, : args.k], exact[0][:20])
    precision = float((db.labels[exact[1]] == qlabels[:, None]).mean())
    ivf_inner = faiss.downcast_IndexBinary(loaded["ivf"][0].index)
    hnsw_inner = faiss.downcast_IndexBinary(loaded["hnsw"][0].index)
    settings = [("flat", None, None)]
    settings += [("ivf", "nprobe", p) for p in sorted({1, 4, 16, loaded["ivf"][1]["nprobe"], ivf_inner.nlist // 4})]
    settings += [("hnsw", "efSearch", e) for e in (16, 64, 256)]
    for kind, knob, value in settings:
        index = loaded[kind][0]
        if knob == "nprobe":
            ivf_inner.nprobe = value
        elif knob == "efSearch":
            hnsw_inner.hnsw.efSearch = value
        res = idx.search(index, qcodes, args.k)
        secs = best_of(lambda index=index: index.search(qcodes, args.k), args.repeats)
        searches[f"{kind}" + (f" {knob}={value}" if knob else "")] = {
            "search_s": secs,
            "recall": recall_at_k(res, exact, args.k),
        }
    ivf_inner.nprobe = loaded["ivf"][1]["nprobe"]
    flat_s = searches["flat"]["search_s"]
    for rec in searches.values():
        rec["speedup_vs_flat"] = flat_s / rec["search_s"]

    # hashidx's query path vs bare FAISS on the same index file and query codes, alternated.
    overhead = {}
    for kind in ("flat", "ivf"):
        path = out / f"index-{kind}.faiss"

        def bare(path: Path = path) -> None:
            import h5py

            index = faiss.read_index_binary(str(path))
            with h5py.File(out / "queries.h5", "r") as f:
                codes = f["codes"][:]
            index.search(codes, args.k)

        def ours(path: Path = path, kind: str = kind) -> None:
            write_results(run_query(path, out / "queries.h5", k=args.k), out / f"results-{kind}.tsv")

        t_bare, t_ours = [], []
        for _ in range(args.repeats):
            t_bare.append(best_of(bare, 1))
            t_ours.append(best_of(ours, 1))
        cli = timed_command(
            ["query", str(path), str(out / "queries.h5"), "-k", str(args.k), "-o", str(out / f"results-{kind}-cli.tsv")]
        )
        overhead[kind] = {
            "bare_faiss_s": min(t_bare),
            "hashidx_query_s": min(t_ours),
            "ratio": min(t_ours) / min(t_bare),
            "cli_wall_s": cli["wall_s"],
        }

    report = {
        "items": args.items,
        "pool": args.pool,
        "queries": args.queries,
        "classes": args.classes,
        "bits": args.bits,
        "k": args.k,
        "data_s": t_data,
        "train": {
            "wall_s": train["wall_s"],
            "peak_rss_gb": train["peak_rss_gb"],
            "train_s": record["times_s"]["train"],
            "network_s": sum(r["network_s"] for r in log),
            "codes_s": sum(r["codes_s"] for r in log),
            "iterations": len(log),
            "code_groups": [r["code_groups"] for r in log],
            "codes_s_per_iteration": [r["codes_s"] for r in log],
        },
        "precision_at_k_flat": precision,
        "builds": {
            k: {
                "wall_s": v["wall_s"],
                "peak_rss_gb": v["peak_rss_gb"],
                **{p: loaded[k][1][p] for p in ("nlist", "nprobe", "M") if p in loaded[k][1]},
            }
            for k, v in builds.items()
        },
        "searches": searches,
        "query_overhead": overhead,
        "hashidx_version": __version__,
        "faiss": faiss.__version__,
        "cpus": os.cpu_count(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "command": sys.argv,
    }
    write_json(out / "scale.json", report)
    tr = report["train"]
    print(
        f"{args.items:,} label-only items + {args.pool} pool, {args.bits} bits, {args.classes} classes, "
        f"{os.cpu_count()} CPUs"
    )
    print(
        f"train (whole command): {tr['wall_s']:.1f}s wall, peak RSS {tr['peak_rss_gb']:.2f} GB; "
        f"network {tr['network_s']:.1f}s + V step {tr['codes_s']:.1f}s over {tr['iterations']} iterations"
    )
    print(f"flat precision@{args.k} of the {args.queries} queries: {precision:.3f}")
    print("| index | build (s) | search (s) | speed-up vs flat | recall@k ids | recall@k distance |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, rec in searches.items():
        print(
            f"| {name} | {builds[name.split()[0]]['wall_s']:.1f} | {rec['search_s']:.3f} | "
            f"{rec['speedup_vs_flat']:.1f}x | "
            f"{rec['recall']['ids']:.3f} | {rec['recall']['distance']:.3f} |"
        )
    for kind, o in overhead.items():
        print(
            f"query on codes ({kind}): hashidx {o['hashidx_query_s']:.3f}s vs bare FAISS {o['bare_faiss_s']:.3f}s "
            f"= {o['ratio']:.2f}x (CLI process wall {o['cli_wall_s']:.1f}s)"
        )


if __name__ == "__main__":
    main()
