"""Writer locks: one hashidx at a time writes a given index, codes file, run folder or feature cache.

Advisory locks through filelock, one per output, kept out of the user's folders: in $HASHIDX_LOCK_DIR, else in
the system's temporary folder under `hashidx-locks-UID`, named by a digest of the output's resolved path. They
exclude writers on one machine (a shared filesystem's other clients do not see them). Readers never lock: the
atomic renames already keep them from half-written files.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from hashidx.errors import HashidxError
from hashidx.io.atomic import created_folders
from hashidx.io.progress import say

_wait = True


def set_wait(wait: bool) -> None:
    """Whether a writer blocked by another waits (default) or fails at once (--no-wait), process-wide."""
    global _wait
    _wait = wait


def lock_dir() -> Path:
    if os.environ.get("HASHIDX_LOCK_DIR"):
        return Path(os.environ["HASHIDX_LOCK_DIR"])
    return Path(tempfile.gettempdir()) / f"hashidx-locks-{os.getuid() if hasattr(os, 'getuid') else 'user'}"


def lock_path(target: str | Path) -> Path:
    """The lock file of an output: one name per resolved path, so two spellings of one output share it."""
    digest = hashlib.sha256(str(Path(target).resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return lock_dir() / f"{digest}.lock"


@contextlib.contextmanager
def writing(target: str | Path) -> Iterator[None]:
    """Hold the writer lock of `target` for the block; another writer waits (saying so) or, with --no-wait, fails."""
    target = Path(target)
    with created_folders(target.parent):
        lock = FileLock(lock_path(target))
        try:
            lock_path(target).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            lock.acquire(timeout=0)
        except Timeout:
            if not _wait:
                raise HashidxError(
                    f"{target}: another hashidx is writing it; wait for it to finish, or run without --no-wait"
                ) from None
            say(f"waiting for another hashidx writing {target}…")
            lock.acquire()
        except OSError as exc:
            raise HashidxError(
                f"{lock_dir()}: cannot keep hashidx's writer locks there ({exc.strerror or exc}); set "
                "HASHIDX_LOCK_DIR to a writable folder"
            ) from None
        try:
            yield
        finally:
            lock.release()
