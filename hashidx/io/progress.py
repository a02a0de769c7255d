"""Progress bars: tqdm, shown only on a terminal and silenced globally by --quiet."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
_quiet = False


def set_quiet(quiet: bool) -> None:
    """Silence (or re-enable) every progress bar in the process."""
    global _quiet
    _quiet = quiet


# Without a terminal (a pipe, a log file, CI) a loop says where it is in plain lines instead of a bar: one at the
# start, one per LINE_STEP of its length (a second apart at most once), one per LINE_SECONDS whatever its length,
# and one at the end.
LINE_STEP = 0.1
LINE_SECONDS = 60.0


def progress(
    iterable: Iterable[T], desc: str, total: int | None = None, unit: str = "it", initial: int = 0
) -> Iterable[T]:
    """Wrap `iterable` in a bar (starting at `initial` for resumed work) on a terminal, in plain progress lines on
    stderr otherwise; nothing on --quiet."""
    if _quiet:
        return iterable
    if not sys.stderr.isatty():
        return _lines(iterable, desc, _length(iterable, total), unit, initial)
    return tqdm(iterable, desc=desc, total=total, unit=unit, initial=initial, leave=False)


def _length(iterable: Iterable, total: int | None) -> int | None:
    if total is not None:
        return total
    try:
        return len(iterable)  # type: ignore[arg-type]
    except TypeError:
        return None


def _lines(iterable: Iterable[T], desc: str, total: int | None, unit: str, done: int) -> Iterator[T]:
    start = last = time.monotonic()
    of = f"/{total}" if total else ""
    say(f"{desc}: {done}{of} {unit}")
    step = max(1, round(LINE_STEP * total)) if total else 0
    next_line = done + step if total else None
    for item in iterable:
        yield item
        done += 1
        now = time.monotonic()
        due = next_line is not None and done >= next_line and done != total and now - last >= 1.0
        if due or now - last >= LINE_SECONDS:
            pct = f" ({100 * done / total:.0f}%)" if total else ""
            say(f"{desc}: {done}{of} {unit}{pct}, {now - start:.0f}s")
            last = now
            if next_line is not None:
                while next_line <= done:
                    next_line += step
    say(f"{desc}: {done}{of} {unit}, done in {time.monotonic() - start:.1f}s")


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
