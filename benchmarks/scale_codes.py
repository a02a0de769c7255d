"""10⁶ to 10⁸ 64-bit codes with the structure of real ones: FAISS's binary indexes side by side.

Where the codes come from (RUN: a 64-bit AHCL run, FEATURES: its feature cache):
- learned codes: RUN/codes.h5, the solver's database codes, drawn with their own frequencies (labelled items
  clump into about one code per class);
- network-encoded chips: sgn(F(x)) of the run's database images through its own head (the codes `hashidx add`
  gives new imagery), each bit then flipped with probability --flip, so that a drawn chip is a near neighbour of a
  real one rather than its copy;
- the database mixes them (--learned: the learned share; the rest are chips);
- queries: the run's held-back query images through the head, never in the database.
The nearest-neighbour distance histogram of those queries against a generated database and against the real
codes of the same size and mix is written beside the figures.

For each n: flat, IVF (several nlist/nprobe), HNSW, IndexBinaryHash and IndexBinaryMultiHash (where --types keeps
them), built on the same codes; build seconds, resident bytes per code (RSS growth over the build divided by n),
ms per query one at a time and in a batch, and recall@k against flat's exact order under ties:
- distances: the share of the exact top-k's distance multiset the index returns;
- shell: the share of the items within the exact k-th distance that the index's range search reaches (an index
  that returns k items can choose any of a tie shell; this says how much of it it can see).
Peak RSS is the process's high-water mark after each n. Writes OUT/scale_codes.json and prints Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections import Counter
from pathlib import Path

import faiss
import numpy as np

from hashidx.codes.codefile import CodeFile
from hashidx.data.split import load_split
from hashidx.features.cache import FeatureCache
from hashidx.io.atomic import write_json
from hashidx.methods.encoder import load_encoder
from hashidx.version import __version__


def rss(field: str = "VmRSS") -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def real_codes(run: Path, features: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(learned database codes, network codes of the database images, network codes of the held-back queries)."""
    encoder = load_encoder(run / "model.pt")
    cache = FeatureCache.load(features)
    split = load_split(run / "split.json")
    query_idx, db_idx = split.indices(cache.dataset)
    learned = CodeFile.load(run / "codes.h5").codes
    return learned, encoder.encode_features(cache.features[db_idx]), encoder.encode_features(cache.features[query_idx])


def generate(n: int, learned: np.ndarray, chips: np.ndarray, share: float, flip: float, seed: int) -> np.ndarray:
    """n codes: a `share` of learned codes drawn with their frequencies, the rest drawn chips with bits flipped."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, learned.shape[1]), np.uint8)
    is_learned = rng.random(n) < share
    step = 1 << 20  # blocks, so that 10⁸ codes never need more than the output and a block of scratch
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        pick = is_learned[lo:hi]
        block = chips[rng.integers(0, len(chips), hi - lo)]
        block[pick] = learned[rng.integers(0, len(learned), int(pick.sum()))]
        noise = np.packbits(rng.random((hi - lo, learned.shape[1] * 8)) < flip, axis=1)
        block[~pick] ^= noise[~pick]
        out[lo:hi] = block
    return out


def nn_histogram(queries: np.ndarray, db: np.ndarray) -> list[int]:
    index = faiss.IndexBinaryFlat(db.shape[1] * 8)
    index.add(db)
    d, _ = index.search(queries, 1)
    return np.bincount(d[:, 0], minlength=db.shape[1] * 8 + 1).tolist()


def make(kind: str, bits: int, codes: np.ndarray, option: dict) -> faiss.IndexBinary:
    if kind == "flat":
        index = faiss.IndexBinaryFlat(bits)
    elif kind == "ivf":
        quantizer = faiss.IndexBinaryFlat(bits)
        index = faiss.IndexBinaryIVF(quantizer, bits, option["nlist"])
        index.own_fields = True
        quantizer.this.disown()
        sample = codes[np.random.default_rng(0).choice(len(codes), min(len(codes), 64 * option["nlist"]), False)]
        index.train(sample)
    elif kind == "hnsw":
        index = faiss.IndexBinaryHNSW(bits, option["M"])
    elif kind == "hash":
        index = faiss.IndexBinaryHash(bits, option["b"])
    elif kind == "multihash":
        index = faiss.IndexBinaryMultiHash(bits, option["nhash"], option["b"])
    else:
        raise ValueError(kind)
    step = 1 << 22
    for lo in range(0, len(codes), step):
        index.add(codes[lo : lo + step])
    return index


def set_search(index: faiss.IndexBinary, kind: str, option: dict) -> None:
    if kind == "ivf":
        index.nprobe = option["nprobe"]
    elif kind == "hnsw":
        index.hnsw.efSearch = option["efSearch"]
    elif kind in ("hash", "multihash"):
        index.nflip = option["nflip"]


def ms_per_query(index: faiss.IndexBinary, queries: np.ndarray, k: int, single: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    for q in queries[:single]:
        index.search(q[None], k)
    one = (time.perf_counter() - t0) / min(single, len(queries))
    t0 = time.perf_counter()
    index.search(queries, k)
    return 1000 * one, 1000 * (time.perf_counter() - t0) / len(queries)


def recall(index, queries, k, exact_d, shells, kind) -> tuple[float, float | None]:
    d, _ = index.search(queries, k)
    found = []
    for row, ref in zip(d, exact_d):
        have = Counter(int(x) for x in row if x >= 0 and x < 1 << 30)
        want = Counter(int(x) for x in ref)
        found.append(sum((have & want).values()) / k)
    if kind == "hnsw":
        return float(np.mean(found)), None  # FAISS's binary HNSW has no range search
    seen = []
    for q, ref, total in zip(queries, exact_d, shells):
        lims, _, _ = index.range_search(q[None], int(ref[-1]) + 1)
        seen.append(int(lims[1]) / total)
    return float(np.mean(found)), float(np.mean(seen))


OPTIONS = {
    "flat": [{}],
    "ivf": [{"nlist": nl, "nprobe": p} for nl in (1024, 4096) for p in (1, 4, 16)],
    "hnsw": [{"M": 16, "efSearch": ef} for ef in (16, 64)],
    "hash": [{"b": 20, "nflip": f} for f in (0, 1, 2)],
    "multihash": [{"nhash": 4, "b": 16, "nflip": f} for f in (0, 1, 2)],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a 64-bit AHCL run folder")
    ap.add_argument("features", type=Path, help="its feature cache")
    ap.add_argument("--sizes", default="1000000,10000000")
    ap.add_argument("--types", default="flat,ivf,hnsw,hash,multihash")
    ap.add_argument("--nlists", default="1024,4096", help="IVF list counts")
    ap.add_argument("--hnsw-max", type=int, default=1_000_000, help="largest n HNSW is built for (its build is slow)")
    ap.add_argument("--learned", type=float, default=0.5, help="share of learned (label-coded) items")
    ap.add_argument("--flip", type=float, default=1 / 64, help="bit-flip probability of a drawn chip")
    ap.add_argument("--queries", type=int, default=1000, help="batch size (at most the run's held-back queries)")
    ap.add_argument("--single", type=int, default=50, help="queries timed one at a time")
    ap.add_argument("--truth", type=int, default=200, help="queries whose exact shells are counted")
    ap.add_argument("-k", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path("docs/scale-codes"))
    args = ap.parse_args()
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    learned, chips, queries = real_codes(args.run, args.features)
    bits = learned.shape[1] * 8
    queries = np.ascontiguousarray(np.resize(queries, (args.queries, queries.shape[1])))  # repeated past the run's
    real_db = np.concatenate([learned, chips])
    fake_db = generate(len(real_db), learned, chips, args.learned, args.flip, 1)
    report: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "versions": {"hashidx": __version__, "faiss": faiss.__version__},
        "bits": bits,
        "k": args.k,
        "learned_share": args.learned,
        "flip": args.flip,
        "real": {
            "learned_codes": len(learned),
            "distinct_learned": len(np.unique(learned, axis=0)),
            "chips": len(chips),
        },
        "nn_histogram": {
            "real": nn_histogram(queries[: len(queries)], real_db),
            "generated": nn_histogram(queries[: len(queries)], fake_db),
        },
        "rows": [],
    }
    for n in (int(float(x)) for x in args.sizes.split(",")):
        codes = generate(n, learned, chips, args.learned, args.flip, 2)
        truth = queries[: args.truth]
        flat = make("flat", bits, codes, {})
        exact_d, _ = flat.search(truth, args.k)
        shells = [int(flat.range_search(q[None], int(d[-1]) + 1)[0][1]) for q, d in zip(truth, exact_d)]
        report.setdefault("shells", {})[str(n)] = {"median": float(np.median(shells)), "max": int(max(shells))}
        del flat
        for kind in args.types.split(","):
            if kind == "hnsw" and n > args.hnsw_max:
                continue
            built: dict = {}
            nlists = {int(x) for x in args.nlists.split(",")}
            for option in (o for o in OPTIONS[kind] if o.get("nlist", 0) in nlists | {0}):
                shape = {key: v for key, v in option.items() if key not in ("nprobe", "efSearch", "nflip")}
                key = json.dumps(shape, sort_keys=True)
                if key not in built:
                    before = rss()
                    t0 = time.perf_counter()
                    index = make(kind, bits, codes, option)
                    build_s, grew = time.perf_counter() - t0, rss() - before
                    stored = faiss.serialize_index_binary(index).nbytes if n <= 20_000_000 else None
                    built = {key: (index, build_s, grew, stored)}
                index, build_s, grew, stored = built[key]
                set_search(index, kind, option)
                one, batch = ms_per_query(index, queries, args.k, args.single)
                got, shell = recall(index, truth, args.k, exact_d, shells, kind)
                row = {
                    "n": n,
                    "index": kind,
                    **option,
                    "build_s": build_s,
                    "bytes_per_code": grew / n,
                    "stored_bytes_per_code": None if stored is None else stored / n,
                    "ms_single": one,
                    "ms_batch": batch,
                    "recall_distances": got,
                    "recall_shell": shell,
                    "peak_rss_gb": rss("VmHWM") / 2**30,
                }
                report["rows"].append(row)
                print(json.dumps(row), flush=True)
                write_json(args.out / "scale_codes.json", report)
            built.clear()
        del codes
    write_json(args.out / "scale_codes.json", report)
    print(
        "| n | index | options | build s | bytes/code (RSS, stored) | ms/query single | ms/query batch "
        "| recall (distances) | recall (shell) |"
    )
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|")
    for r in report["rows"]:
        opts = ", ".join(
            f"{k}={v}" for k, v in r.items() if k in ("nlist", "nprobe", "M", "efSearch", "b", "nhash", "nflip")
        )
        shell = "n/a" if r["recall_shell"] is None else f"{r['recall_shell']:.3f}"
        stored = "n/a" if r["stored_bytes_per_code"] is None else f"{r['stored_bytes_per_code']:.1f}"
        print(
            f"| {r['n']:,} | {r['index']} | {opts} | {r['build_s']:.1f} | {r['bytes_per_code']:.1f}, {stored} | "
            f"{r['ms_single']:.3f} | {r['ms_batch']:.3f} | {r['recall_distances']:.3f} | {shell} |"
        )


if __name__ == "__main__":
    main()
