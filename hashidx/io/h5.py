"""Reading hashidx HDF5 files: one place that checks the kind and turns failures into one-line errors."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import h5py

from hashidx.errors import HashidxError

STR = h5py.string_dtype("utf-8")


@contextlib.contextmanager
def read_h5(path: str | Path, kind: str, what: str, remedy: str) -> Iterator[h5py.File]:
    """Open `path` for reading; a missing, unreadable, truncated or foreign file raises HashidxError."""
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("kind") != kind:
                raise HashidxError(f"{path}: not a hashidx {what}; {remedy}")
            yield f
    except FileNotFoundError:
        raise HashidxError(f"{path}: {what} not found") from None
    except (OSError, KeyError) as exc:  # h5py raises these for truncated files and missing datasets
        raise HashidxError(f"{path}: unreadable {what} ({exc}); {remedy}") from None


def strings(dataset: h5py.Dataset, rows: slice = slice(None)) -> tuple[str, ...]:
    return tuple(s.decode() for s in dataset[rows])
