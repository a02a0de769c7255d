"""Fuzz every kind of file hashidx reads, through the real command line.

From a real small run (a feature cache you pass: model.pt, codes.h5, split.json, train.json, an index
with its sidecar and added codes, a labels file, a resume.pt), each case damages one file and runs the
commands that read it in a fresh process under a memory limit:
- bytes: random flips, truncation, a zeroed range;
- HDF5: a dataset replaced by one of another dtype or shape, a huge declared (empty, chunked) dataset,
  a dataset removed, an attribute set to a wrong value;
- JSON: a value replaced by another type or a huge number, a key removed;
- the index: its bytes damaged and the sidecar's sha256 rewritten to match, so FAISS's reader sees it.

A case passes when every command exits 0, or exits 1 with one line `error: ...` and no traceback.
`unexpected` counts the one-line errors that came from the last-resort handler (an unforeseen
exception type); they pass, but are listed. Anything else (a signal, a traceback, a timeout, another
exit code) fails. Writes OUT/fuzz.json and prints a summary; exits 1 if any case failed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import h5py
import numpy as np

MEMORY_LIMIT = 6 << 30  # address space per command: an unbounded allocation fails instead of swapping
TIMEOUT_S = 120


def build_corpus(features: Path, work: Path) -> dict[str, Path]:
    """A real run, index, added codes, labels file and training state to damage."""
    from hashidx.data.labels import LabelFile
    from hashidx.features.cache import FeatureCache
    from hashidx.index.add import add_images, added_path
    from hashidx.index.indexes import build_file, sidecar_path
    from hashidx.methods.runs import train_run

    run = work / "run"
    train_run(features, run, bits=16, seed=0, train_pool=40, checkpoint_every=1)
    build_file(run / "codes.h5", work / "db.faiss")
    cache = FeatureCache.load(features)
    images = work / "add.txt"
    images.write_text("".join(f"{cache.dataset.absolute(i)}\n" for i in range(2)))
    add_images(work / "db.faiss", run / "model.pt", images)
    ds = cache.dataset
    LabelFile(tuple(f"extra/{p}" for p in ds.paths), ds.labels, ds.classes).save(work / "labels.h5")
    # A training state as an interrupted run leaves it: a real `train` killed once its first resume.pt lands.
    state = work / "state"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hashidx",
            "--quiet",
            "train",
            features,
            "--bits",
            "16",
            "--train-pool",
            "40",
            "-o",
            state,
        ]
    )
    while proc.poll() is None and not (state / "resume.pt").exists():
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert (state / "resume.pt").exists(), "the training finished before its state could be caught"
    return {
        "features": Path(features),
        "codes": run / "codes.h5",
        "model": run / "model.pt",
        "split": run / "split.json",
        "train": run / "train.json",
        "index": work / "db.faiss",
        "sidecar": sidecar_path(work / "db.faiss"),
        "added": added_path(work / "db.faiss"),
        "labels": work / "labels.h5",
        "resume": state / "resume.pt",
    }


def commands(kind: str, f: Path, c: dict[str, Path], out: Path) -> list[list]:
    """The commands that read a file of this kind (f: the damaged copy, c: the intact corpus)."""
    info = [["info", f]]
    q = ["-k", "5", "-o", out / "r.tsv"]
    if kind == "features":
        return [*info, ["query", c["index"], f, "--model", c["model"], *q]]
    if kind == "codes":
        return [*info, ["query", c["index"], f, *q], ["build-index", f, "-o", out / "i.faiss"]]
    if kind == "model":
        return [*info, ["query", c["index"], c["features"], "--model", f, *q]]
    if kind in ("split", "train"):
        return [*info, ["evaluate", f.parent]]
    if kind in ("index", "sidecar", "added"):
        index = f if kind == "index" else f.parent / c["index"].name
        return [["info", index], ["query", index, c["codes"], *q]]
    if kind == "labels":
        return [
            *info,
            ["train", c["features"], "--labels-only", f, "--bits", "16", "--iterations", "1", "-o", out / "t"],
        ]
    if kind == "resume":
        return [*info, ["train", c["features"], "--bits", "16", "--train-pool", "40", "--resume", "-o", f.parent]]
    raise ValueError(kind)


def _bytes(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    b = bytearray(data)
    how = rng.choice(["flip", "truncate", "zero"])
    if how == "flip":
        for _ in range(rng.choice([1, 4, 64])):
            b[rng.randrange(len(b))] ^= rng.randrange(1, 256)
    elif how == "truncate":
        b = b[: rng.randrange(len(b))]
    else:
        lo = rng.randrange(len(b))
        b[lo : lo + rng.choice([8, 512, 4096])] = bytes(len(b[lo : lo + 4096][: rng.choice([8, 512, 4096])]))
    return bytes(b), how


def _h5(path: Path, rng: random.Random) -> str:
    with h5py.File(path, "a") as f:
        names = list(f.keys())
        name = rng.choice(names)
        how = rng.choice(["dtype", "shape", "huge", "remove", "attr"])
        if how == "attr":
            key = rng.choice(list(f.attrs.keys()))
            f.attrs[key] = rng.choice([-1, 0, 7, 10**12, "x", np.float64(np.nan)])
            return f"h5 attr {key}"
        data = f[name][()]
        del f[name]
        if how == "dtype":
            f[name] = np.asarray(data).astype(np.float64) if np.asarray(data).dtype != object else np.zeros(3)
        elif how == "shape":
            arr = np.asarray(data)
            f[name] = arr.reshape(-1)[: max(len(arr.reshape(-1)) // 2, 1)] if arr.ndim != 1 else arr.reshape(-1, 1)
        elif how == "huge":
            f.create_dataset(name, shape=(10**12,), dtype=np.uint8, chunks=(1 << 16,))
        return f"h5 {how} {name}"


def _json(path: Path, rng: random.Random) -> str:
    obj = json.loads(path.read_text())
    key = rng.choice(list(obj))
    if rng.random() < 0.3:
        del obj[key]
        path.write_text(json.dumps(obj))
        return f"json remove {key}"
    obj[key] = rng.choice([None, -1, 10**18, "x", [], {}, [1, 2], 1.5])
    path.write_text(json.dumps(obj))
    return f"json {key}"


def damage(kind: str, corpus: dict[str, Path], case_dir: Path, rng: random.Random) -> tuple[dict[str, Path], str]:
    """A copy of the corpus files that `kind` needs, with that one damaged."""
    c = dict(corpus)
    if kind in ("index", "sidecar", "added"):
        for k in ("index", "sidecar", "added"):
            shutil.copy(corpus[k], case_dir / corpus[k].name)
            c[k] = case_dir / corpus[k].name
    elif kind in ("split", "train", "resume"):
        folder = case_dir / "run"
        shutil.copytree(corpus[kind].parent, folder)
        c[kind] = folder / corpus[kind].name
    else:
        c[kind] = case_dir / corpus[kind].name
        shutil.copy(corpus[kind], c[kind])
    target = c[kind]
    if kind in ("split", "train", "sidecar") and rng.random() < 0.6:
        how = _json(target, rng)
    elif target.suffix == ".h5" and rng.random() < 0.5:
        how = _h5(target, rng)
    else:
        data, how = _bytes(target.read_bytes(), rng)
        target.write_bytes(data)
        if kind == "index" and rng.random() < 0.5:  # consistent sidecar: FAISS's own reader gets the bytes
            import hashlib

            side = json.loads(c["sidecar"].read_text())
            side["index_sha256"] = hashlib.sha256(data).hexdigest()
            c["sidecar"].write_text(json.dumps(side))
            how += " + sidecar sha rewritten"
    return c, how


def run_case(argv: list, env: dict) -> tuple[str, str]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    try:
        p = subprocess.run(
            [sys.executable, "-m", "hashidx", "--quiet", *map(str, argv)],
            capture_output=True,
            text=True,
            errors="replace",  # a damaged file's bytes may reach stdout (`info` prints its fields)
            timeout=TIMEOUT_S,
            preexec_fn=limit,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return "fail", "timeout"
    err = p.stderr.strip()
    if p.returncode == 0:
        return "ok", ""
    lines = err.splitlines()
    if p.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err:
        return ("unexpected" if lines[0].startswith("error: unexpected") else "clean"), lines[0]
    return "fail", f"exit {p.returncode}: {err[-400:]}"


KINDS = ("features", "codes", "model", "split", "train", "index", "sidecar", "added", "labels", "resume")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", type=Path, required=True, help="a small real feature cache (e.g. 100 images)")
    ap.add_argument("--cases", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--output", type=Path, default=Path("out/fuzz"))
    args = ap.parse_args()
    if args.output.exists():
        shutil.rmtree(args.output)
    args.output.mkdir(parents=True)
    corpus = build_corpus(args.features, args.output / "corpus")
    rng = random.Random(args.seed)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    tally: Counter = Counter()
    findings = []
    t0 = time.perf_counter()
    for case in range(args.cases):
        kind = KINDS[case % len(KINDS)]
        case_dir = args.output / f"case{case}"
        case_dir.mkdir()
        c, how = damage(kind, corpus, case_dir, rng)
        for argv in commands(kind, c[kind], c, case_dir):
            verdict, message = run_case(argv, env)
            tally[verdict] += 1
            if verdict in ("fail", "unexpected"):
                findings.append(
                    {
                        "case": case,
                        "kind": kind,
                        "damage": how,
                        "command": argv[0],
                        "verdict": verdict,
                        "message": message,
                    }
                )
                print(f"case {case} {kind} ({how}) {argv[0]}: {verdict}: {message[:300]}", flush=True)
        shutil.rmtree(case_dir)
    report = {
        "cases": args.cases,
        "commands": sum(tally.values()),
        "verdicts": dict(tally),
        "seed": args.seed,
        "seconds": time.perf_counter() - t0,
        "findings": [{k: str(v) for k, v in f.items()} for f in findings],
    }
    (args.output / "fuzz.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "findings"}))
    sys.exit(1 if tally["fail"] else 0)


if __name__ == "__main__":
    main()
