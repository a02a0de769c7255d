"""Progress bars: tqdm, shown only on a terminal and silenced globally by --quiet."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
_quiet = False


def set_quiet(quiet: bool) -> None:
    """Silence (or re-enable) every progress bar in the process."""
    global _quiet
    _quiet = quiet


def progress(
    iterable: Iterable[T], desc: str, total: int | None = None, unit: str = "it", initial: int = 0
) -> Iterable[T]:
    """Wrap `iterable` in a bar (starting at `initial` for resumed work); off on --quiet or when stderr is not a TTY."""
    return tqdm(
        iterable, desc=desc, total=total, unit=unit, initial=initial, disable=True if _quiet else None, leave=False
    )


def warn(message: str) -> None:
    """'warning: message' on stderr, above any progress bar; --quiet silences bars, never warnings."""
    say(f"warning: {message}")


def say(message: str) -> None:
    """A line on stderr, above any progress bar (what a long wait is waiting for)."""
    tqdm.write(message, file=sys.stderr)


def inform(message: str) -> None:
    """`say`, unless --quiet: what was done on the way (chips cut, bands read), not what went wrong."""
    if not _quiet:
        say(message)
