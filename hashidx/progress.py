"""Progress bars: tqdm, shown only on a terminal and silenced globally by --quiet."""

from __future__ import annotations

from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
_quiet = False


def set_quiet(quiet: bool) -> None:
    """Silence (or re-enable) every progress bar in the process."""
    global _quiet
    _quiet = quiet


def progress(iterable: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterable[T]:
    """Wrap `iterable` in a bar; tqdm's disable=None turns it off when stderr is not a TTY."""
    return tqdm(iterable, desc=desc, total=total, unit=unit, disable=True if _quiet else None, leave=False)
