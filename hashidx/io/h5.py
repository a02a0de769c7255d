"""Reading hashidx HDF5 files: one place that checks the kind and turns failures into one-line errors."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import h5py

from hashidx.errors import HashidxError

STR = h5py.string_dtype("utf-8")


KINDS = {"hashidx-features": "feature cache", "hashidx-codes": "codes file", "hashidx-labels": "labels file"}


@contextlib.contextmanager
def read_h5(path: str | Path, kind: str, what: str, remedy: str) -> Iterator[h5py.File]:
    """Open `path` for reading; a missing, unreadable, truncated or foreign file raises HashidxError."""
    try:
        with h5py.File(path, "r") as f:
            found = f.attrs.get("kind")
            if found != kind:
                other = KINDS.get(str(found))
                raise HashidxError(f"{path}: not a hashidx {what}{f' but a {other}' if other else ''}; {remedy}")
            check_sizes(f, path)
            yield f
    except FileNotFoundError:
        raise HashidxError(f"{path}: {what} not found") from None
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:  # damaged, truncated or malformed
        raise HashidxError(f"{path}: unreadable {what} ({str(exc)[:200]}); {remedy}") from None


def check_sizes(f: h5py.File, path: str | Path) -> None:
    """Refuse datasets that declare far more data than the file holds (hashidx never compresses): a damaged or
    hostile header would otherwise have numpy allocate the declared size."""
    room = 64 * Path(path).stat().st_size + (1 << 20)
    for name, ds in f.items():
        if isinstance(ds, h5py.Dataset) and ds.size * max(ds.dtype.itemsize, 1) > room:
            raise HashidxError(
                f"{path}: dataset '{name}' declares {ds.shape} {ds.dtype}, far more than the file's "
                f"{Path(path).stat().st_size:,} bytes; the file is damaged, replace it"
            )


def strings(dataset: h5py.Dataset, rows: slice = slice(None)) -> tuple[str, ...]:
    """A 1-d dataset of UTF-8 strings as str; another dtype or shape raises ValueError (read_h5 reports it)."""
    if dataset.ndim != 1 or h5py.check_string_dtype(dataset.dtype) is None:
        raise ValueError(f"'{dataset.name.lstrip('/')}' is {dataset.dtype} {dataset.shape}, not a list of strings")
    return tuple(s.decode() if isinstance(s, bytes) else str(s) for s in dataset[rows])
