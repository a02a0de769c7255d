"""Writer locks: one hashidx at a time writes a given index, codes file, run folder or feature cache.

Advisory locks through filelock on a hidden `.NAME.lock` beside the output. Readers never lock: the
atomic renames already keep them from half-written files.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from hashidx.errors import HashidxError
from hashidx.io.atomic import created_folders, output_error
from hashidx.io.progress import say

_wait = True


def set_wait(wait: bool) -> None:
    """Whether a writer blocked by another waits (default) or fails at once (--no-wait), process-wide."""
    global _wait
    _wait = wait


def lock_path(target: str | Path) -> Path:
    target = Path(target)
    return target.parent / f".{target.name}.lock"


@contextlib.contextmanager
def writing(target: str | Path) -> Iterator[None]:
    """Hold the writer lock of `target` for the block; another writer waits (saying so) or, with --no-wait, fails."""
    target = Path(target)
    fresh_parent = not target.parent.exists()
    with created_folders(target.parent):
        lock = FileLock(lock_path(target))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            if not _wait:
                raise HashidxError(
                    f"{target}: another hashidx is writing it; wait for it to finish, or run without --no-wait"
                ) from None
            say(f"waiting for another hashidx writing {target}…")
            lock.acquire()
        except OSError as exc:  # a read-only or unwritable folder: the output could not be written either
            raise (output_error(exc, target) or exc) from None
        try:
            yield
        except BaseException:
            if fresh_parent:  # so that the folder made for the lock can go again
                lock_path(target).unlink(missing_ok=True)
            raise
        finally:
            lock.release()
