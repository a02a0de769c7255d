"""Two trainings started together on one machine write the codes a lone run writes, whatever their thread count:
the sleeping-thread policy (hashidx.io.threads) changes how fast, never what."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np

HASHIDX = str(Path(sys.executable).parent / "hashidx")


def codes_of(run: Path) -> np.ndarray:
    with h5py.File(run / "codes.h5", "r") as f:
        return f["codes"][:]


def test_concurrent_trainings_write_the_lone_runs_codes(ucmd_features, tmp_path):
    def start(out: Path, **env: str) -> subprocess.Popen:
        args = [HASHIDX, "--quiet", "train", str(ucmd_features), "--bits", "16", "--iterations", "3", "-o", str(out)]
        clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
        return subprocess.Popen(args, env={**clean, **env}, stderr=subprocess.PIPE, text=True)

    def finish(*procs: subprocess.Popen) -> None:
        for p in procs:
            _, err = p.communicate(timeout=600)
            assert p.returncode == 0, err

    finish(start(tmp_path / "alone"))
    pair = [start(tmp_path / "a"), start(tmp_path / "b"), start(tmp_path / "one-thread", OMP_NUM_THREADS="1")]
    finish(*pair)
    lone = codes_of(tmp_path / "alone")
    assert len(np.unique(lone, axis=0)) >= 5  # a real run: the slice's classes apart
    for name in ("a", "b", "one-thread"):
        np.testing.assert_array_equal(codes_of(tmp_path / name), lone)


def test_hashidx_makes_idle_threads_sleep_unless_told_otherwise():
    probe = "import hashidx, os; print(os.environ['OMP_WAIT_POLICY'])"
    clean = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", probe], env=clean, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "PASSIVE"
    kept = subprocess.run(
        [sys.executable, "-c", probe], env={**clean, "OMP_WAIT_POLICY": "ACTIVE"}, capture_output=True, text=True
    )
    assert kept.stdout.strip() == "ACTIVE"
