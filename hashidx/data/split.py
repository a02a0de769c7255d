"""Stratified query/database split, written once as JSON and reused by every method."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hashidx.data.datasets import Dataset
from hashidx.errors import HashidxError
from hashidx.io.atomic import write_json

SPLIT_FORMAT = 1


@dataclass(frozen=True)
class Split:
    """Query and database image paths (relative to the dataset root)."""

    seed: int
    query_fraction: float
    query: tuple[str, ...]
    database: tuple[str, ...]

    def indices(self, ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
        """Positions of the query and database paths within `ds`."""
        where = {p: i for i, p in enumerate(ds.paths)}
        missing = [p for p in self.query + self.database if p not in where]
        if missing:
            raise HashidxError(
                f"split names {len(missing)} image(s) not in the data, e.g. {missing[0]!r}; "
                "make a new split for this dataset (omit --split)"
            )
        return (
            np.asarray([where[p] for p in self.query], dtype=np.int64),
            np.asarray([where[p] for p in self.database], dtype=np.int64),
        )


def make_split(ds: Dataset, query_fraction: float = 0.2, seed: int = 0) -> Split:
    """Take round(fraction * class size) queries from each class, at random under `seed`."""
    if not 0.0 < query_fraction < 1.0:
        raise HashidxError(f"query fraction must be between 0 and 1, got {query_fraction}")
    rng = np.random.default_rng(seed)
    is_query = np.zeros(len(ds), dtype=bool)
    for k in range(len(ds.classes)):
        members = np.flatnonzero(ds.labels == k)
        n_query = int(round(query_fraction * len(members)))
        if n_query == 0 or n_query == len(members):
            raise HashidxError(
                f"class {ds.classes[k]!r} has {len(members)} image(s): too few to split "
                f"{query_fraction:.0%} off as queries; add images or drop the class"
            )
        is_query[rng.choice(members, n_query, replace=False)] = True
    return Split(
        seed,
        query_fraction,
        tuple(p for p, q in zip(ds.paths, is_query) if q),
        tuple(p for p, q in zip(ds.paths, is_query) if not q),
    )


def save_split(split: Split, path: str | Path) -> None:
    write_json(
        path,
        {
            "format": SPLIT_FORMAT,
            "seed": split.seed,
            "query_fraction": split.query_fraction,
            "query": list(split.query),
            "database": list(split.database),
        },
    )


def load_split(path: str | Path) -> Split:
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
        return Split(int(obj["seed"]), float(obj["query_fraction"]), tuple(obj["query"]), tuple(obj["database"]))
    except FileNotFoundError:
        raise HashidxError(f"{path}: split file not found") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise HashidxError(f"{path}: not a hashidx split file ({exc}); omit --split to make a new one") from None
