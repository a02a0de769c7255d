"""`hashidx serve` under load, side by side with the same searches in process.

An index of 10⁵ codes: an AHCL run (16 bits... 64 bits, --bits) on a UC Merced slice's features, plus label-only
items coded by the solver from their labels alone, up to --items. The server runs as `hashidx serve` on 127.0.0.1;
a bounded asyncio/httpx client sends queries by item id and by uploaded image (1 view, and 8 views with a second
model) at each concurrency level, for a fixed number of requests. The in-process figures are the same Archive calls
made one after another in this process. Client and server share the machine's cores.

    python benchmarks/serve_load.py -o out/serve-load     # ~6 min on 2 cores; writes out/serve-load/load.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from hashidx.service.server import spawn

ROOT = Path(__file__).resolve().parents[1]
UCMD = ROOT.parent / "shared" / "datasets" / "UCMerced_LandUse" / "Images"


def hashidx(*args: object) -> None:
    subprocess.run([sys.executable, "-m", "hashidx", "--quiet", *map(str, args)], check=True)


def build(out: Path, items: int, bits: int, per_class: int) -> list[Path]:
    """Features of per_class images of each UC Merced class (1 and 8 views), the two runs, and a flat index of the
    1-view run's database plus label-only items up to `items`. Returns the query images."""
    data = out / "data"
    images = []
    for cls in sorted(p.name for p in UCMD.iterdir()):
        (data / cls).mkdir(parents=True, exist_ok=True)
        for img in sorted((UCMD / cls).iterdir())[:per_class]:
            link = data / cls / img.name
            if not link.exists():
                link.symlink_to(img)
            images.append(link)
    for views in (1, 8):
        if not (out / f"f{views}.h5").exists():
            hashidx("features", data, "--views", views, "-o", out / f"f{views}.h5")
    classes = sorted(p.name for p in UCMD.iterdir())
    extra = items - int(len(images) * 0.8)
    rng = np.random.default_rng(0)
    (out / "archive.txt").write_text(
        "".join(f"archive/{i:07d}.tif\t{classes[c]}\n" for i, c in enumerate(rng.integers(0, len(classes), extra)))
    )
    for views in (1, 8):
        run = out / f"run{views}"
        if not (run / "codes.h5").exists():
            hashidx("train", out / f"f{views}.h5", "--bits", bits, "--labels-only", out / "archive.txt", "-o", run)
    for views in (1, 8):
        if not (out / f"db{views}.faiss").exists():
            hashidx("build-index", out / f"run{views}" / "codes.h5", "-o", out / f"db{views}.faiss")
    return images


def serve(index: Path, model: Path) -> tuple[subprocess.Popen, str]:
    return spawn(index, model, "--max-concurrency", "4", "--max-queue", "64", wait_s=600)


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """The server's resident memory now (VmRSS) or at its peak (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def stats(latencies: list[float], wall: float, errors: int, busy: int) -> dict:
    ms = np.asarray(latencies) * 1000
    return {
        "requests": len(latencies),
        "p50_ms": float(np.percentile(ms, 50)) if len(ms) else None,
        "p95_ms": float(np.percentile(ms, 95)) if len(ms) else None,
        "p99_ms": float(np.percentile(ms, 99)) if len(ms) else None,
        "requests_per_s": len(latencies) / wall,
        "errors": errors,
        "busy_503": busy,
    }


async def load(url: str, make, clients: int, total: int) -> dict:
    """`total` requests from `clients` concurrent clients; latency of the 200s, counts of 503s and other errors."""
    latencies: list[float] = []
    errors = busy = 0
    sent = 0

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors, busy, sent
        while sent < total:
            n = sent
            sent += 1
            method, path, kwargs = make(n)
            t0 = time.perf_counter()
            try:
                r = await http.request(method, url + path, **kwargs)
            except httpx.HTTPError:
                errors += 1
                continue
            if r.status_code == 200:
                latencies.append(time.perf_counter() - t0)
            elif r.status_code == 503:
                busy += 1
            else:
                errors += 1

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - t0
    return stats(latencies, wall, errors, busy)


def in_process(archive, queries: list, call) -> dict:
    latencies = []
    t0 = time.perf_counter()
    for q in queries:
        t = time.perf_counter()
        call(archive, q)
        latencies.append(time.perf_counter() - t)
    return stats(latencies, time.perf_counter() - t0, 0, 0)


def queries(views: int, ids: list[int], uploads: list[bytes], args: argparse.Namespace) -> dict:
    """Per kind of query: the HTTP request for query n, how many to send, and the same search in process."""
    kinds = {
        "image": (
            lambda n: ("POST", "/search/image?k=20", {"content": uploads[n % len(uploads)]}),
            args.image_requests,
            lambda a, n: a.search_upload(uploads[n % len(uploads)], 20),
        )
    }
    if views == 1:
        kinds["id"] = (
            lambda n: ("POST", "/search/items", {"json": {"positive": [ids[n % len(ids)]], "k": 20}}),
            args.requests,
            lambda a, n: a.search_items([ids[n % len(ids)]], [], 20),
        )
    return kinds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=Path("out/serve-load"))
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--clients", default="1,4,16,64")
    parser.add_argument("--kinds", default="id,image", help="Which queries: id, image (both views), or both.")
    parser.add_argument("--requests", type=int, default=400, help="Requests per level for queries by id.")
    parser.add_argument("--image-requests", type=int, default=64, help="Requests per level for image queries.")
    args = parser.parse_args()
    out = args.output
    out.mkdir(parents=True, exist_ok=True)
    images = build(out, args.items, args.bits, args.per_class)
    uploads = [p.read_bytes() for p in images[:: max(1, len(images) // 32)]]
    levels = [int(c) for c in args.clients.split(",")]
    rng = np.random.default_rng(1)

    from hashidx.service.archive import Archive

    report: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "items": args.items,
        "bits": args.bits,
        "runs": [],
    }
    for views in (1, 8) if "image" in args.kinds else (1,):
        index, model = out / f"db{views}.faiss", out / f"run{views}" / "model.pt"
        archive = Archive(index, model)
        ids = rng.integers(0, len(archive.ids), 2000).tolist()
        kinds = queries(views, ids, uploads, args)
        for kind, (make, total, call) in kinds.items():
            if kind not in args.kinds.split(","):
                continue
            local = in_process(archive, list(range(min(total, 200))), call)
            proc, url = serve(index, model)
            try:
                asyncio.run(load(url, make, 1, 8))  # warm: the first requests load thumbnails' code paths
                for clients in levels:
                    row = asyncio.run(load(url, make, clients, total))
                    ratio = row["p50_ms"] / local["p50_ms"] if row["p50_ms"] else None
                    report["runs"].append(
                        {
                            "kind": kind,
                            "views": views,
                            "clients": clients,
                            **row,
                            "in_process_p50_ms": local["p50_ms"],
                            "p50_ratio": ratio,
                            "server_rss_mb": rss_mb(proc.pid),
                        }
                    )
                    print(json.dumps(report["runs"][-1]), flush=True)
                report["runs"][-1]["server_peak_rss_mb"] = rss_mb(proc.pid, "VmHWM")
            finally:
                proc.terminate()
                proc.wait(60)
    (out / "load.json").write_text(json.dumps(report, indent=2))
    print(f"{out / 'load.json'}")


if __name__ == "__main__":
    main()
