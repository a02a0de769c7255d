"""Out of space, over a file-size limit, read-only, no permission: one line naming the output and the cause,
exit 1, no temporary files, a previous output untouched, no folder left that was not there before.

A small tmpfs is mounted where the machine allows it (root with CAP_SYS_ADMIN); otherwise the same
commands run under a file-size limit (RLIMIT_FSIZE), which fails writes with EFBIG instead.
"""

from __future__ import annotations

import errno
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from hashidx.io.atomic import output_error


def _mount_tmpfs(where: Path, size: str, readonly: bool = False) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    opts = f"size={size}" + (",ro" if readonly else "")
    return (
        subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True).returncode == 0
    )


@pytest.fixture
def small_disk(tmp_path):
    """(folder, limit): a 300 KB tmpfs, or a plain folder and a 300 KB file-size limit for the command."""
    where = tmp_path / "small"
    if _mount_tmpfs(where, "300k"):
        yield where, None
        subprocess.run(["umount", str(where)], check=True)
    else:
        yield where, 300 * 1024


def _hashidx(args: list, fsize: int | None = None, user: int | None = None) -> subprocess.CompletedProcess:
    def limits() -> None:
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        if user is not None:
            os.setgid(user)
            os.setuid(user)

    return subprocess.run(
        [sys.executable, "-m", "hashidx", "--quiet", *map(str, args)],
        capture_output=True,
        text=True,
        preexec_fn=limits,
        env=os.environ,
    )


def _one_line(result: subprocess.CompletedProcess, *words: str) -> str:
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def test_train_on_a_full_disk_says_so_and_leaves_nothing(ucmd_features, small_disk):
    where, fsize = small_disk
    result = _hashidx(["train", ucmd_features, "--bits", "16", "--iterations", "2", "-o", where / "run"], fsize)
    _one_line(result, str(where / "run"), "the run needs about")  # known before the training
    assert not (where / "run").exists()
    assert [p.name for p in where.iterdir()] in ([], [".run.lock"])  # no temporary file, no folder


def test_a_full_disk_mid_write_keeps_the_previous_output(small_disk, tmp_path):
    """Past any early check: the write itself fails, and the output it would have replaced stays."""
    where, fsize = small_disk
    old = where / "nested" / "codes.h5"
    old.parent.mkdir()
    old.write_bytes(b"previous output")
    code = (
        "from hashidx.io.atomic import atomic_path\n"
        f"with atomic_path({str(old)!r}) as tmp:\n    tmp.write_bytes(bytes(1 << 20))\n"
    )
    limit = (lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))) if fsize else None
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, preexec_fn=limit)
    assert result.returncode == 1 and f"HashidxError: {old}: cannot write it: " in result.stderr
    assert old.read_bytes() == b"previous output"
    assert sorted(p.name for p in old.parent.iterdir()) == ["codes.h5"]


def test_features_into_too_small_a_disk_fail_before_the_backbone_runs(ucmd_slice, small_disk):
    where, fsize = small_disk
    result = _hashidx(["features", ucmd_slice, "--views", "1", "-o", where / "sub" / "f.h5"], fsize)
    _one_line(result, str(where / "sub" / "f.h5"), "the feature cache needs about")
    assert not (where / "sub").exists()


def test_a_read_only_disk(ucmd_features, tmp_path):
    where = tmp_path / "ro"
    if not _mount_tmpfs(where, "1m", readonly=True):
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    try:
        result = _hashidx(["train", ucmd_features, "--bits", "16", "-o", where / "run"])
        _one_line(result, str(where / "run"), "read-only file system")
    finally:
        subprocess.run(["umount", str(where)], check=True)


def test_no_permission(ucmd_features):
    # Under /tmp (world-traversable), since root must drop to an unprivileged user for EACCES.
    base = Path(tempfile.mkdtemp(prefix="hashidx-perm-"))
    try:
        base.chmod(0o755)
        user = None
        if os.geteuid() == 0:
            user = 65534  # nobody: root may write anywhere
            try:
                probe = subprocess.run([sys.executable, "-c", "import hashidx.cli"], preexec_fn=lambda: os.setuid(user))
            except OSError:
                probe = None
            if probe is None or probe.returncode != 0:
                pytest.skip("an unprivileged user cannot run this checkout's Python (EACCES is tested as root-less)")
        locked = base / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        features = base / "f.h5"
        shutil.copy(ucmd_features, features)
        features.chmod(0o644)
        result = _hashidx(["train", features, "--bits", "16", "-o", locked / "run"], user=user)
        _one_line(result, str(locked / "run"), "permission denied")
        assert list(locked.iterdir()) == []
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_every_cause_names_its_fix():
    for code, words in (
        (errno.ENOSPC, "no space left"),
        (errno.EDQUOT, "quota"),
        (errno.EROFS, "read-only"),
        (errno.EACCES, "permission denied"),
        (errno.EFBIG, "file-size limit"),
    ):
        err = output_error(OSError(code, os.strerror(code)), "out.h5")
        assert err is not None and str(err).startswith("out.h5: cannot write it: ") and words in str(err)
    # torch's zip writer and HDF5 lose errno; their text still says it
    assert "no space left" in str(output_error(RuntimeError("write failed: No space left on device"), "m.pt"))
    assert output_error(ValueError("unrelated"), "x") is None
