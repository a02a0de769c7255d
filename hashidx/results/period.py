"""A period of acquisition time (`--since/--until`): which indexed items a search may return."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from hashidx.data.footprints import iso_time
from hashidx.errors import HashidxError


def _moment(text: str, option: str, end: bool = False) -> dt.datetime:
    """The start of a year (2014), month (2014-06), day or time; with `end`, the last moment of a year, month or
    day given alone, so that --until 2014 includes all of 2014."""
    text = text.strip()
    parts = re.fullmatch(r"(\d{4})(?:-(\d{2}))?", text)
    iso = iso_time(f"{parts[1]}-{parts[2] or '01'}-01" if parts else text)
    if not iso:
        raise HashidxError(f"{option} {text}: give a year, a date or a time in ISO 8601, e.g. {option} 2014-06-01")
    when = dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    if end and parts:
        year, month = (when.year + 1, 1) if parts[2] is None or when.month == 12 else (when.year, when.month + 1)
        when = when.replace(year=year, month=month) - dt.timedelta(microseconds=1)
    elif end and len(text) == 10:
        when += dt.timedelta(days=1) - dt.timedelta(microseconds=1)
    return when


@dataclass(frozen=True)
class Period:
    """From `since` to `until`, both included (None: open); an `until` given as a date includes that whole day."""

    since: dt.datetime | None = None
    until: dt.datetime | None = None

    @classmethod
    def parse(cls, since: str | None, until: str | None) -> Period | None:
        """The period --since/--until name, or None when neither is given."""
        if since is None and until is None:
            return None
        period = cls(
            None if since is None else _moment(since, "--since"),
            None if until is None else _moment(until, "--until", end=True),
        )
        if period.since and period.until and period.since > period.until:
            raise HashidxError(f"--since {since} is after --until {until}; swap them")
        return period

    def contains(self, iso: str) -> bool:
        """Whether an item acquired at `iso` (ISO 8601; "" unknown, never inside) lies in the period."""
        if not iso:
            return False
        when = dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))
        return (self.since is None or when >= self.since) and (self.until is None or when <= self.until)

    def describe(self) -> str:
        def day(t: dt.datetime | None) -> str:
            return "…" if t is None else t.isoformat().replace("+00:00", "Z")

        return f"{day(self.since)} to {day(self.until)}"

    def allowed(self, dated: Iterable[tuple[np.ndarray, tuple[str, ...]]]) -> np.ndarray:
        """The sorted ids, of (ids, times) parts, acquired within the period."""
        keep = []
        for ids, times in dated:
            inside = {t: self.contains(t) for t in set(times)}  # an archive holds few distinct times
            keep.append(ids[np.fromiter((inside[t] for t in times), bool, len(times))])
        return np.sort(np.concatenate(keep)) if keep else np.empty(0, np.int64)
