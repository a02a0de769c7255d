"""Killed mid-way with a real SIGKILL: every output is the previous one, a complete new one, or refused on load.

Then the interrupted work resumes to the same result as an uninterrupted run. Each kill lands at a
random moment of the command (seeded); HASHIDX_KILL_REPEATS sets how many (the README reports a
20-repeat local run; CI runs 2).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from hashidx.codes.codefile import CodeFile
from hashidx.errors import HashidxError
from hashidx.evaluation.evaluate import evaluate_run
from hashidx.features.cache import FeatureCache
from hashidx.features.extract import partial_path
from hashidx.index import indexes as idx
from hashidx.io.atomic import sha256_file

REPEATS = int(os.environ.get("HASHIDX_KILL_REPEATS", "2"))
ROOT = Path(__file__).resolve().parents[2]


def hashidx(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "hashidx", "--quiet", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(*args: str) -> float:
    """Run to completion; returns the wall time."""
    t0 = time.perf_counter()
    proc = hashidx(*args)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    return time.perf_counter() - t0


def kill_after(delay: float, *args: str, when: Path | None = None) -> bool:
    """Start the command, SIGKILL it after `delay` s (counted from `when` existing, if given); True if it was killed."""
    proc = hashidx(*args)
    t0 = time.perf_counter()
    if when is not None:
        while not when.exists() and proc.poll() is None and time.perf_counter() - t0 < 60:
            time.sleep(0.01)
    time.sleep(delay)
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    proc.communicate()
    return killed


def delays(seed: int, longest: float) -> list[float]:
    return list(np.random.default_rng(seed).uniform(0, longest, REPEATS))


def test_killed_features_leave_the_previous_cache_and_resume_to_the_same_features(ucmd_slice, tmp_path):
    out = tmp_path / "f.h5"
    args = ("features", str(ucmd_slice), "--views", "1", "--checkpoint-every", "1", "-o", str(out))
    reference = tmp_path / "ref.h5"
    took = finish("features", str(ucmd_slice), "--views", "1", "-o", str(reference))
    ref = FeatureCache.load(reference)
    for delay in delays(0, took):
        out.unlink(missing_ok=True)
        partial_path(out).unlink(missing_ok=True)
        kill_after(delay, *args)
        # Either no output at all or a complete, loadable one; never a truncated file under the name.
        if out.exists():
            assert FeatureCache.load(out).features.shape == ref.features.shape
            continue
        finish(*args)  # resumes from OUTPUT.partial when the kill left one
        resumed = FeatureCache.load(out)
        assert resumed.dataset.paths == ref.dataset.paths
        np.testing.assert_array_equal(resumed.features, ref.features)
        assert not partial_path(out).exists()


def _same_run(a: Path, b: Path) -> None:
    np.testing.assert_array_equal(CodeFile.load(a / "codes.h5").codes, CodeFile.load(b / "codes.h5").codes)
    sa = torch.load(a / "model.pt", weights_only=True)["state_dict"]
    sb = torch.load(b / "model.pt", weights_only=True)["state_dict"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("method", ["ahcl", "symmetric"])
def test_killed_training_is_refused_or_previous_and_resume_gives_the_same_run(method, ucmd_features, tmp_path):
    common = ("--method", method, "--bits", "16", "--iterations", "12")
    reference = tmp_path / "reference"
    finish("train", str(ucmd_features), *common, "--seed", "2", "-o", str(reference))
    previous = tmp_path / "previous"
    finish("train", str(ucmd_features), *common, "--seed", "1", "-o", str(previous))
    run = tmp_path / "run"
    for delay in delays(1, 0.5):
        if run.exists():
            for f in run.iterdir():
                f.unlink()
        for f in previous.iterdir():  # a complete earlier run in the folder, as a user would have
            (run / f.name).parent.mkdir(exist_ok=True)
            (run / f.name).write_bytes(f.read_bytes())
        args = ("train", str(ucmd_features), *common, "--seed", "2", "-o", str(run))
        killed = kill_after(delay, *args, when=run / "resume.pt")
        # The folder is the previous run, the new run, or a mix that evaluate refuses; never a silent mix.
        try:
            evaluate_run(run)
            model_sha = sha256_file(run / "model.pt")
            assert CodeFile.load(run / "codes.h5").attrs["model_sha256"] == model_sha
        except HashidxError as exc:
            assert "interrupted" in str(exc)
        if killed and (run / "resume.pt").exists():
            finish(*args, "--resume")
        else:
            finish(*args)
        _same_run(run, reference)
        assert not (run / "resume.pt").exists()


def test_resume_refuses_a_state_from_another_command(ucmd_features, tmp_path):
    run = tmp_path / "run"
    args = ("train", str(ucmd_features), "--bits", "16", "--iterations", "40", "--seed", "3", "-o", str(run))
    assert kill_after(0.3, *args, when=run / "resume.pt")
    proc = hashidx(
        "train", str(ucmd_features), "--bits", "16", "--iterations", "40", "--seed", "4", "--resume", "-o", str(run)
    )
    _, err = proc.communicate()
    assert proc.returncode == 1 and "saved by a different command" in err and "Traceback" not in err
    proc = hashidx("train", str(ucmd_features), "--bits", "16", "--resume", "-o", str(tmp_path / "fresh"))
    _, err = proc.communicate()
    assert proc.returncode == 1 and "nothing to resume" in err


def test_killed_build_index_keeps_a_consistent_pair(ucmd_features, tmp_path):
    run = tmp_path / "run"
    finish("train", str(ucmd_features), "--bits", "16", "--iterations", "3", "-o", str(run))
    other = tmp_path / "other"
    finish("train", str(ucmd_features), "--bits", "16", "--iterations", "3", "--seed", "5", "-o", str(other))
    path = tmp_path / "db.index"
    finish("build-index", str(other / "codes.h5"), "--type", "ivf", "-o", str(path))
    took = finish("build-index", str(run / "codes.h5"), "--type", "ivf", "-o", str(tmp_path / "timing.index"))
    for delay in delays(2, took):
        finish("build-index", str(other / "codes.h5"), "--type", "ivf", "-o", str(path))
        kill_after(delay, "build-index", str(run / "codes.h5"), "--type", "ivf", "-o", str(path))
        try:
            index, sidecar = idx.load(path)
        except HashidxError as exc:
            assert "do not match" in str(exc)
            continue
        # Whatever loads is one build: the sidecar names the codes its index holds.
        source = run if sidecar["codes_sha256"] == sha256_file(run / "codes.h5") else other
        assert sidecar["codes_sha256"] == sha256_file(source / "codes.h5")
        codes = CodeFile.load(source / "codes.h5").codes
        idx.set_nprobe(index, sidecar["nlist"])
        assert index.ntotal == len(codes) and (idx.search(index, codes, 1)[0] == 0).all()


def test_killed_add_keeps_a_consistent_index(ucmd_features, ucmd_slice, tmp_path):
    run = tmp_path / "run"
    finish("train", str(ucmd_features), "--bits", "16", "--iterations", "3", "-o", str(run))
    path = tmp_path / "db.index"
    new = tmp_path / "new.txt"
    new.write_text("".join(f"{p}\n" for p in sorted((ucmd_slice / "beach").iterdir())[:4]))
    finish("build-index", str(run / "codes.h5"), "-o", str(tmp_path / "t.index"))
    took = finish("add", str(tmp_path / "t.index"), str(new), "--model", str(run / "model.pt"))
    for delay in delays(3, took):
        for f in tmp_path.glob("db.index*"):
            f.unlink()
        finish("build-index", str(run / "codes.h5"), "-o", str(path))
        kill_after(delay, "add", str(path), str(new), "--model", str(run / "model.pt"))
        try:
            index, sidecar = idx.load(path)
        except HashidxError as exc:
            assert "do not match" in str(exc)
            continue
        assert index.ntotal in (80, 84) and sidecar["count"] == index.ntotal
        if index.ntotal == 84:  # every added id is named in the added file
            assert CodeFile.load(Path(f"{path}.added.h5")).ids.tolist() == [80, 81, 82, 83]


def test_checkpoint_every_n_iterations_resumes_to_the_same_codes(ucmd_features, tmp_path):
    from hashidx.methods.ahcl import train_ahcl
    from hashidx.methods.training import Checkpointing, TrainConfig

    cache = FeatureCache.load(ucmd_features)
    feats, labels = cache.features, cache.dataset.labels
    whole = train_ahcl(feats, labels, 5, TrainConfig(bits=16, iterations=5))[1]
    ck = Checkpointing(tmp_path / "resume.pt", "same", every=2)
    train_ahcl(feats, labels, 5, TrainConfig(bits=16, iterations=3), checkpointing=ck)  # "killed" after iteration 3
    assert torch.load(ck.path, weights_only=True)["iteration"] == 2  # saved at 2, not at 1 or 3
    resumed = train_ahcl(
        feats,
        labels,
        5,
        TrainConfig(bits=16, iterations=5),
        checkpointing=Checkpointing(ck.path, "same", resume=True, every=2),
    )[1]
    assert np.array_equal(whole, resumed)
