"""Commands on a busy machine: each stage alone and as 2 or 4 copies started together, under three thread policies.

Stages (each a whole `hashidx` command, in its own process):
- train: `train FEATURES --bits 32` (AHCL: head training and the solver; torch and numpy threads);
- features: `features` on IMAGES UC Merced images, 1 view (ONNX Runtime backbone, decoding threads);
- query: `query INDEX split.json --model` (the run's 420 query images through the ONNX backbone and head, search).

Policies (C = this machine's cores):
- spin, C threads: OMP_WAIT_POLICY=ACTIVE and OMP_NUM_THREADS=C, what hashidx did before idle threads slept (the
  OpenMP default: idle threads spin, and ONNX Runtime's sessions spin too);
- sleep, C threads: OMP_WAIT_POLICY=PASSIVE (idle OpenMP and ONNX Runtime threads sleep), OMP_NUM_THREADS=C;
- default: nothing set, hashidx's own choice (idle threads sleep; torch gets half the cores, hashidx.io.threads).

For each (stage, policy, copies) the wall time and the CPU time (user + system, from wait4) of every copy, and
whether every copy wrote the same codes as the lone run. Writes OUT/contention.json and prints Markdown.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py

from hashidx.io.atomic import write_json
from hashidx.version import __version__

ROOT = Path(__file__).resolve().parents[1]
UCMD = ROOT.parent / "shared/datasets/UCMerced_LandUse/Images"
HASHIDX = [str(Path(sys.executable).parent / "hashidx")]
CORES = str(os.cpu_count() or 1)
POLICIES = {
    "spin, C threads": {"OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": CORES},
    "sleep, C threads": {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": CORES},
    "default": {},
}


def run_copies(args_of, copies: int, env: dict) -> list[dict]:
    """`copies` processes started together; each one's wall and CPU seconds and exit status."""
    started = []
    for c in range(copies):
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [*HASHIDX, "--quiet", *map(str, args_of(c))], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        started.append((proc, t0))
    out = []
    pending = {p.pid: (p, t0) for p, t0 in started}
    while pending:
        pid, status, usage = os.wait4(-1, 0)
        if pid not in pending:
            continue
        proc, t0 = pending.pop(pid)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read().decode()[-400:] if proc.stderr else ""
        if proc.returncode != 0:
            raise SystemExit(f"copy failed ({proc.returncode}): {err}")
        out.append({"wall_s": time.perf_counter() - t0, "cpu_s": usage.ru_utime + usage.ru_stime})
    return out


def codes_digest(path: Path) -> str:
    with h5py.File(path, "r") as f:
        return hashlib.sha256(f["codes"][:].tobytes()).hexdigest()[:16]


def features_digest(path: Path) -> str:
    with h5py.File(path, "r") as f:
        return hashlib.sha256(f["features"][:].round(4).tobytes()).hexdigest()[:16]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", type=Path, required=True, help="1-view UC Merced feature cache (the train input)")
    ap.add_argument("--images", type=int, default=420, help="UC Merced images for the features stage")
    ap.add_argument("--copies", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--stages", nargs="+", default=["train", "features", "query"])
    ap.add_argument("--policies", nargs="+", default=list(POLICIES))
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "contention")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hashidx-contention-"))
    base_env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    # The query stage's index and model: one run, trained once.
    subprocess.run([*HASHIDX, "--quiet", "train", a.features, "--bits", "32", "-o", work / "run"], check=True)
    subprocess.run([*HASHIDX, "--quiet", "build-index", work / "run" / "codes.h5", "-o", work / "db.faiss"], check=True)
    listing = work / "images.txt"
    every = sorted(p for p in UCMD.rglob("*") if p.suffix.lower() in (".jpg", ".png", ".tif"))
    images = every[:: max(1, len(every) // a.images)][: a.images]
    listing.write_text("".join(f"{p}\t{p.parent.name}\n" for p in images))
    model = work / "run" / "model.pt"
    stages = {
        "train": (
            lambda d, c: ["train", a.features, "--bits", "32", "-o", d / f"run{c}"],
            lambda d, c: codes_digest(d / f"run{c}" / "codes.h5"),
        ),
        "features": (
            lambda d, c: ["features", listing, "--views", "1", "-o", d / f"f{c}.h5"],
            lambda d, c: features_digest(d / f"f{c}.h5"),
        ),
        "query": (
            lambda d, c: [
                "query",
                work / "db.faiss",
                work / "run" / "split.json",
                "--model",
                model,
                "-o",
                d / f"r{c}.tsv",
            ],
            lambda d, c: hashlib.sha256((d / f"r{c}.tsv").read_bytes()).hexdigest()[:16],
        ),
    }
    rows = []
    for stage in a.stages:
        args, digest = stages[stage]
        for policy in a.policies:
            env = {**base_env, **POLICIES[policy]}
            alone = None
            for copies in a.copies:
                d = work / f"{stage}-{policy}-{copies}".replace(" ", "").replace(",", "")
                d.mkdir()
                each = run_copies(lambda c, d=d, args=args: args(d, c), copies, env)
                digests = {digest(d, c) for c in range(copies)}
                alone = alone or each[0]
                row = {
                    "stage": stage,
                    "policy": policy,
                    "copies": copies,
                    "wall_s": round(sum(e["wall_s"] for e in each) / copies, 2),
                    "cpu_s": round(sum(e["cpu_s"] for e in each) / copies, 2),
                    "wall_vs_alone": round(sum(e["wall_s"] for e in each) / copies / alone["wall_s"], 2),
                    "cpu_vs_alone": round(sum(e["cpu_s"] for e in each) / copies / alone["cpu_s"], 2),
                    "outputs": sorted(digests),
                }
                rows.append(row)
                print(row, flush=True)
                shutil.rmtree(d)
    reference = {(r["stage"], r["policy"]): r["outputs"] for r in rows if r["copies"] == 1}
    for r in rows:
        r["same_as_lone_run"] = r["outputs"] == reference[(r["stage"], r["policy"])]
    a.out.mkdir(parents=True, exist_ok=True)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    write_json(a.out / "contention.json", {"hashidx": __version__, "machine": machine, "rows": rows})
    print("\n| stage | policy | copies | wall s (each) | CPU s (each) | wall vs alone | CPU vs alone | same output |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(
            f"| {r['stage']} | {r['policy']} | {r['copies']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
            f"{r['wall_vs_alone']:.2f}× | {r['cpu_vs_alone']:.2f}× | {'yes' if r['same_as_lone_run'] else 'NO'} |"
        )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
