"""Writers exclude each other: concurrent `hashidx add` on one index all land, concurrent `train -o` on one
folder leaves one whole run, and --no-wait fails at once while another writer holds the lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from filelock import FileLock

from hashidx.codes.codefile import CodeFile
from hashidx.index import indexes as idx
from hashidx.index.add import added_path
from hashidx.index.indexes import build_file
from hashidx.io.atomic import sha256_file
from hashidx.io.locks import lock_path
from hashidx.methods.runs import train_run


def _hashidx(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "hashidx", "--quiet", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


@pytest.fixture(scope="module")
def run(ucmd_features, tmp_path_factory):
    out = tmp_path_factory.mktemp("locks") / "run"
    train_run(ucmd_features, out, bits=16, seed=0, train_pool=40)
    return out


@pytest.mark.parametrize("writers", [2, 4, 8])
def test_concurrent_adds_all_land_once(run, ucmd_slice, tmp_path, writers):
    build_file(run / "codes.h5", tmp_path / "db.faiss")
    base = idx.load(tmp_path / "db.faiss")[0].ntotal
    images = sorted(ucmd_slice.glob("*/*"))
    lists = []
    for w in range(writers):
        lst = tmp_path / f"add{w}.txt"
        lst.write_text("".join(f"{p}\n" for p in images[w * 5 : w * 5 + 5]))
        lists.append(lst)
    procs = [_hashidx("add", tmp_path / "db.faiss", lst, "--model", run / "model.pt") for lst in lists]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0] * writers, outs
    index, sidecar = idx.load(tmp_path / "db.faiss")
    added = CodeFile.load(added_path(tmp_path / "db.faiss"))
    assert index.ntotal == base + 5 * writers == sidecar["count"]
    assert sorted(added.paths) == sorted(str(p) for p in images[: 5 * writers])  # every image, exactly once
    ids = np.concatenate([CodeFile.load(run / "codes.h5").ids, added.ids])
    assert len(np.unique(ids)) == len(ids)
    assert len(np.unique(added.ids)) == 5 * writers
    # the index holds exactly those ids, with their codes
    dist, found = idx.search(index, added.codes, 1)
    assert (dist[:, 0] == 0).all()


def test_concurrent_trains_into_one_folder_leave_one_whole_run(ucmd_features, tmp_path):
    out = tmp_path / "run"
    common = ["train", ucmd_features, "--bits", "16", "--iterations", "3", "--train-pool", "40", "-o", out]
    procs = [_hashidx(*common, "--seed", str(seed)) for seed in (1, 2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert any("waiting for another hashidx writing" in err for _, err in outs)
    record = json.loads((out / "train.json").read_text())
    codes = CodeFile.load(out / "codes.h5")
    assert codes.attrs["model_sha256"] == sha256_file(out / "model.pt")  # model and codes from the same run
    assert codes.attrs["split_sha256"] == sha256_file(out / "split.json")
    from hashidx.methods.checkpoints import load_checkpoint

    assert load_checkpoint(out / "model.pt")[1]["seed"] == record["seed"]
    assert not (out / "resume.pt").exists() and not list(out.glob(".*tmp*"))


def test_no_wait_fails_at_once_and_waiting_says_so(run, ucmd_slice, tmp_path):
    build_file(run / "codes.h5", tmp_path / "db.faiss")
    before = (tmp_path / "db.faiss").read_bytes()
    lst = tmp_path / "add.txt"
    lst.write_text(f"{sorted(ucmd_slice.glob('*/*'))[0]}\n")
    lock = FileLock(lock_path(tmp_path / "db.faiss"))
    with lock:
        p = _hashidx("add", tmp_path / "db.faiss", lst, "--model", run / "model.pt", "--no-wait")
        _, err = p.communicate(timeout=300)
        assert p.returncode == 1
        assert err.strip() == (
            f"error: {tmp_path / 'db.faiss'}: another hashidx is writing it; wait for it to finish, "
            "or run without --no-wait"
        )
        assert (tmp_path / "db.faiss").read_bytes() == before
        p = _hashidx("add", tmp_path / "db.faiss", lst, "--model", run / "model.pt")
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(p.stderr), daemon=True)  # type: ignore[arg-type]
        reader.start()
        deadline = time.monotonic() + 300
        while not any("waiting for another hashidx" in line for line in lines) and time.monotonic() < deadline:
            assert p.poll() is None, lines  # blocked, not finished, while the lock is held
            time.sleep(0.1)
        assert lines and lines[0] == f"waiting for another hashidx writing {tmp_path / 'db.faiss'}…\n"
    assert p.wait(timeout=300) == 0, lines
    assert idx.load(tmp_path / "db.faiss")[1]["added"] == 1


def test_locks_stay_out_of_the_users_folders(run, tmp_path, monkeypatch):
    """Writing an index, a run and a feature cache leaves nothing beside them but what they are; the locks live in
    HASHIDX_LOCK_DIR (one per resolved output path, however it was spelt)."""
    monkeypatch.setenv("HASHIDX_LOCK_DIR", str(tmp_path / "locks"))
    out = tmp_path / "out"
    build_file(run / "codes.h5", out / "db.faiss")
    assert sorted(p.name for p in out.iterdir()) == ["db.faiss", "db.faiss.json"]
    assert lock_path(out / "db.faiss") == lock_path(out / "." / "db.faiss")
    assert lock_path(out / "db.faiss").parent == tmp_path / "locks" and lock_path(out / "db.faiss").exists()
