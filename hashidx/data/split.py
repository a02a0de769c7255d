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
    # The images' folder when the split was saved in a run: what lets `hashidx query INDEX RUN/split.json` find
    # the query images. Not part of the protocol: the same split serves the dataset wherever it lies.
    image_root: str | None = None

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
    """Take round(fraction * class size) queries from each class, at random under `seed`; multi-label data
    are split by iterative stratification. An unlabelled archive has nothing to evaluate: all of it is database."""
    if not ds.labelled:
        return Split(seed, 0.0, (), ds.paths)
    if not 0.0 < query_fraction < 1.0:
        raise HashidxError(f"query fraction must be between 0 and 1, got {query_fraction}")
    rng = np.random.default_rng(seed)
    if ds.labels.ndim == 2:
        is_query = iterative_stratification(ds.labels, query_fraction, rng)
        if not 0 < is_query.sum() < len(ds):
            raise HashidxError(f"{len(ds)} image(s) are too few to split {query_fraction:.0%} off as queries")
    else:
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


def iterative_stratification(labels: np.ndarray, query_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Query mask of a two-way split of multi-hot rows that keeps each label's query share near the fraction.

    Sechidis, Tsoumakas and Vlahavas (ECML PKDD 2011): the rarest label still unplaced goes first; each of
    its items joins the side that wants that label most (then the side that wants items most, then at random).
    """
    y = labels.astype(bool)
    share = np.array([query_fraction, 1.0 - query_fraction])
    want_label = share[:, None] * y.sum(axis=0)[None, :]  # 2 x C
    want_items = share * len(y)
    side = np.full(len(y), -1)
    unplaced = np.ones(len(y), dtype=bool)
    while unplaced.any():
        remaining = y[unplaced].sum(axis=0)
        if not remaining.any():  # items with no label left: fill whichever side wants items
            for i in rng.permutation(np.flatnonzero(unplaced)):
                side[i] = int(np.lexsort((rng.random(2), want_items))[-1])
                want_items[side[i]] -= 1
            break
        rarest = np.flatnonzero(remaining == remaining[remaining > 0].min())
        label = int(rng.choice(rarest))
        for i in rng.permutation(np.flatnonzero(unplaced & y[:, label])):
            # the side wanting the label most, then items most, then a coin (lexsort: last key first)
            j = int(np.lexsort((rng.random(2), want_items, want_label[:, label]))[-1])
            side[i] = j
            unplaced[i] = False
            want_label[j, y[i]] -= 1
            want_items[j] -= 1
    return side == 0


def save_split(split: Split, path: str | Path) -> None:
    root = {} if split.image_root is None else {"image_root": split.image_root}
    write_json(
        path,
        {
            "format": SPLIT_FORMAT,
            "seed": split.seed,
            "query_fraction": split.query_fraction,
            **root,
            "query": list(split.query),
            "database": list(split.database),
        },
    )


def is_split(obj: object) -> bool:
    return isinstance(obj, dict) and {"query", "database", "seed"} <= obj.keys()


def load_split(path: str | Path) -> Split:
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
        root = obj.get("image_root")
        return Split(
            int(obj["seed"]),
            float(obj["query_fraction"]),
            tuple(obj["query"]),
            tuple(obj["database"]),
            None if root is None else str(root),
        )
    except FileNotFoundError:
        raise HashidxError(f"{path}: split file not found") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise HashidxError(f"{path}: not a hashidx split file ({exc}); omit --split to make a new one") from None
