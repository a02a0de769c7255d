"""Atomic outputs: write to a temporary name beside the target, fsync, rename into place.

A write that fails for lack of space, quota, permission or a read-only disk becomes one line naming
the output and the cause; the temporary file goes, a previous output stays, and folders created for
the output are removed again.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import resource
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hashidx.errors import HashidxError

# errno → what to tell the user; EFBIG is what a file-size limit (ulimit -f) gives.
_CAUSES = {
    errno.ENOSPC: "no space left on the device; free some, or write elsewhere",
    errno.EDQUOT: "disk quota exceeded; free some of your quota, or write elsewhere",
    errno.EROFS: "read-only file system; write elsewhere",
    errno.EACCES: "permission denied; write to a folder you can write to",
    errno.EPERM: "operation not permitted; write to a folder you can write to",
    errno.EFBIG: "file too large for this process's file-size limit (ulimit -f); raise it, or write elsewhere",
}
# How libraries that swallow errno (torch's zip writer, HDF5, FAISS) still say it.
_WORDS = {
    "no space left": errno.ENOSPC,
    "quota": errno.EDQUOT,
    "read-only file system": errno.EROFS,
    "permission denied": errno.EACCES,
    "file too large": errno.EFBIG,
}


def _write_errno(exc: BaseException, tmp: Path | None) -> int | None:
    """The OS error behind a failed write, where one can be told, else None."""
    if not isinstance(exc, (OSError, RuntimeError)):
        return None
    if isinstance(exc, OSError) and exc.errno in _CAUSES:
        return exc.errno
    text = str(exc).lower()
    for words, code in _WORDS.items():
        if words in text:
            return code
    if tmp is not None:
        with contextlib.suppress(OSError):
            if shutil.disk_usage(tmp.parent).free < (1 << 20):
                return errno.ENOSPC
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        with contextlib.suppress(OSError):
            if limit != resource.RLIM_INFINITY and tmp.exists() and tmp.stat().st_size >= limit - (1 << 16):
                return errno.EFBIG
    return None


def output_error(exc: BaseException, path: str | os.PathLike, tmp: Path | None = None) -> HashidxError | None:
    """A one-line HashidxError for a write to `path` that failed with an OS error it can name, else None."""
    name = getattr(exc, "filename", None)
    if name and Path(name).parent != Path(path).parent and Path(name) != Path(path).parent:
        return None  # an input that failed inside the write block, not the output
    code = _write_errno(exc, tmp)
    if code is None:
        return None
    return HashidxError(f"{path}: cannot write it: {_CAUSES[code]} ({os.strerror(code)})")


def check_room(target: str | os.PathLike, need_bytes: int, what: str) -> None:
    """Fail at once, in one line, if `target` (a file or folder to be) cannot take `what` of about `need_bytes`:
    a folder that cannot be written, too little free space, or a file-size limit below it."""
    target = Path(target)
    existing = next(p for p in [target, *target.parents] if p.exists())
    folder = existing if existing.is_dir() else existing.parent
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise (output_error(exc, target) or HashidxError(f"{target}: cannot write there ({exc})")) from None
    free = shutil.disk_usage(folder).free
    if free < need_bytes:
        raise HashidxError(
            f"{target}: {what} needs about {_mb(need_bytes)} and {folder} has {_mb(free)} free; "
            "free some space, or write elsewhere"
        )
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and limit < need_bytes:
        raise HashidxError(
            f"{target}: {what} needs about {_mb(need_bytes)}, over this process's file-size limit "
            f"of {_mb(limit)} (ulimit -f); raise it"
        )


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


@contextlib.contextmanager
def created_folders(folder: str | os.PathLike) -> Iterator[Path]:
    """mkdir -p `folder`; if the block fails, the folders this made are removed again when empty."""
    folder = Path(folder)
    made = []
    for parent in [folder, *folder.parents]:
        if parent.exists():
            break
        made.append(parent)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(exc, folder) or exc from None
    try:
        yield folder
    except BaseException:
        for made_dir in made:  # innermost first
            with contextlib.suppress(OSError):
                made_dir.rmdir()
        raise


@contextlib.contextmanager
def output_folder(folder: str | os.PathLike, keep: str | None = None) -> Iterator[Path]:
    """mkdir -p `folder` for a command's outputs. If the block fails and the folder was not there before, it
    is removed again: whole unless it holds `keep` (state to resume from), or an interrupt left files in it."""
    folder = Path(folder)
    fresh = not folder.exists()
    with created_folders(folder):
        try:
            yield folder
        except Exception:
            if fresh and not (keep and (folder / keep).exists()):
                shutil.rmtree(folder, ignore_errors=True)
            raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path; on success it replaces `path`, on failure it is removed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with created_folders(path.parent):
        try:
            yield tmp
            # The rename is only atomic for readers if the data reached the disk first.
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except Exception as exc:
            err = output_error(exc, path, tmp)
            if err is not None:
                raise err from None
            raise
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
