"""Peak memory of `hashidx query` against the query file's size: codes queries of 10⁴, 10⁵ and 10⁶ rows.

Each size runs the real command in its own process under GNU time (`/usr/bin/time -f %M`, the
command's peak RSS; wait4 from this process would also count the pages the fork copied from it). The
queries are the run's own database codes drawn with replacement, so every query has real neighbours.
With streaming (blocks of QUERY_BATCH rows read, searched and written in turn) the peak stays flat
while the output grows. Writes OUT/stream.json and a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from hashidx.codes.codefile import CodeFile
from hashidx.index.indexes import build_file
from hashidx.io.atomic import write_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="a run folder (its codes.h5 is the database)")
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("-o", "--output", type=Path, default=Path("out/query-stream"))
    args = ap.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    build_file(args.run / "codes.h5", args.output / "db.faiss")
    db = CodeFile.load(args.run / "codes.h5")
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        pick = np.random.default_rng(0).integers(0, len(db.codes), n)
        queries = args.output / f"q{n}.h5"
        CodeFile(
            db.codes[pick],
            np.arange(n),
            tuple(f"q{i}" for i in range(n)),
            db.labels[pick],
            db.bits,
            db.method,
            db.attrs,
        ).save(queries)
        out = args.output / f"r{n}.tsv"
        del pick
        t0 = time.perf_counter()
        command = [sys.executable, "-m", "hashidx", "--quiet", "query", args.output / "db.faiss", queries]
        rss = args.output / "rss.txt"
        subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss, *command, "-k", str(args.k), "-o", out], check=True)
        rows.append(
            {
                "queries": n,
                "k": args.k,
                "wall_s": time.perf_counter() - t0,
                "peak_rss_mb": int(rss.read_text().split()[-1]) / 1024,
                "output_mb": out.stat().st_size / 1e6,
            }
        )
        out.unlink()
        queries.unlink()
    write_json(args.output / "stream.json", {"rows": rows, "cpus": os.cpu_count(), "machine": platform.machine()})
    print("| queries | k | wall (s) | peak RSS (MB) | results file (MB) |\n|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['queries']:,} | {r['k']} | {r['wall_s']:.1f} | {r['peak_rss_mb']:.0f} | {r['output_mb']:.0f} |")


if __name__ == "__main__":
    main()
