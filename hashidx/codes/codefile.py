"""The codes HDF5: packed database codes with their ids, paths, labels and provenance."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np

from hashidx.data.datasets import labels_of
from hashidx.data.footprints import Footprints
from hashidx.data.labels import label_names
from hashidx.errors import HashidxError
from hashidx.io.atomic import atomic_path
from hashidx.io.h5 import STR, read_h5, strings
from hashidx.version import __version__

CODES_FORMAT = 1


@dataclass
class CodeFile:
    """Packed database codes with their ids, image paths, labels and provenance attributes."""

    codes: np.ndarray  # uint8 (n x bits/8)
    ids: np.ndarray  # int64 (n,)
    paths: tuple[str, ...]
    labels: np.ndarray  # int64 (n,), -1 where unknown; or uint8 (n x C) multi-hot rows
    bits: int
    method: str
    attrs: dict = field(default_factory=dict)
    files: tuple[str, ...] | None = None  # each item's image file, absolute ("" if unknown): for added images
    geo: Footprints | None = None  # each item's footprint, where its source is georeferenced
    # Each item's content vector (n x dims float16, features.content), where its model has a projection.
    content: np.ndarray | None = None

    def save(self, path: str | Path) -> None:
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            f.create_dataset("codes", data=self.codes)
            f.create_dataset("ids", data=self.ids.astype(np.int64))
            f.create_dataset("paths", data=list(self.paths), dtype=STR)
            f.create_dataset("labels", data=labels_of(self.labels))
            if self.files is not None:
                f.create_dataset("files", data=list(self.files), dtype=STR)
            if self.geo is not None:
                self.geo.save(f)
            if self.content is not None:
                f.create_dataset("content", data=self.content.astype(np.float16))
            f.attrs.update(
                {
                    **self.attrs,
                    "kind": "hashidx-codes",
                    "format": CODES_FORMAT,
                    "bits": self.bits,
                    "method": self.method,
                    "hashidx_version": __version__,
                }
            )

    @classmethod
    def load(cls, path: str | Path, rows: slice = slice(None)) -> CodeFile:
        """The file, or only its `rows` (a slice): what reads a big query file block by block."""
        with read_h5(
            path, "hashidx-codes", "codes file", "'hashidx train ... -o RUN_DIR' writes RUN_DIR/codes.h5"
        ) as f:
            bits = int(f.attrs["bits"])
            codes = f["codes"][rows]
            if codes.dtype != np.uint8 or codes.ndim != 2 or codes.shape[1] * 8 != bits:
                raise HashidxError(
                    f"{path}: 'codes' is {codes.dtype} {codes.shape}, expected uint8 n x {bits // 8}; retrain"
                )
            attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
            ids, paths, labels = f["ids"][rows], strings(f["paths"], rows), labels_of(f["labels"][rows])
            if not len(ids) == len(paths) == len(labels) == len(codes) or ids.ndim != 1 or ids.dtype.kind not in "iu":
                raise ValueError(
                    f"'ids', 'paths', 'labels' and 'codes' disagree ({ids.dtype} {ids.shape}, {len(paths)}, "
                    f"{len(labels)}, {len(codes)})"
                )
            return cls(
                codes,
                ids,
                paths,
                labels,
                bits,
                str(f.attrs["method"]),
                attrs,
                strings(f["files"], rows) if "files" in f else None,
                Footprints.load(f, rows),
                f["content"][rows] if "content" in f else None,
            )


def count_rows(path: str | Path, kind: str, what: str) -> int:
    """How many rows a hashidx HDF5 file (codes, features) holds, reading none of them."""
    with read_h5(path, kind, what, "pass a file hashidx wrote") as f:
        return int(f["paths"].shape[0])


def read_ids_codes(path: str | Path, rows: slice = slice(None)) -> tuple[np.ndarray, np.ndarray]:
    """Only the ids and packed codes of a codes file (or of its `rows`), not its paths or labels."""
    with read_h5(path, "hashidx-codes", "codes file", "rebuild the index from a codes.h5") as f:
        ids, codes = f["ids"][rows], f["codes"][rows]
    if len(ids) != len(codes) or codes.ndim != 2:
        raise HashidxError(f"{path}: 'ids' and 'codes' disagree ({len(ids)} vs {codes.shape}); retrain the run")
    return ids.astype(np.int64), codes


def read_ids_content(path: str | Path) -> tuple[np.ndarray, np.ndarray] | None:
    """The ids and content vectors of a codes file, or None when it holds none."""
    with read_h5(path, "hashidx-codes", "codes file", "rebuild the index from a codes.h5") as f:
        if "content" not in f:
            return None
        ids, content = f["ids"][:], f["content"][:]
    if len(ids) != len(content) or content.ndim != 2:
        raise HashidxError(f"{path}: 'ids' and 'content' disagree ({len(ids)} vs {content.shape}); retrain the run")
    return ids.astype(np.int64), content


def positions(sorted_ids: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each of `ids` sits in the ascending `sorted_ids` (clipped to its rows), and whether it is there at all."""
    ids = np.asarray(ids, dtype=np.int64)
    if len(sorted_ids) == 0:
        return np.zeros(len(ids), np.int64), np.zeros(len(ids), bool)
    where = np.searchsorted(sorted_ids, ids).clip(0, len(sorted_ids) - 1)
    return where, sorted_ids[where] == ids


@dataclass
class CodeTable:
    """Packed codes (or content vectors) by id, sorted by id once: what a re-ranking reads its candidates' from."""

    ids: np.ndarray
    codes: np.ndarray

    @classmethod
    def of(cls, parts: Iterable[tuple[np.ndarray, np.ndarray]]) -> CodeTable:
        """One table of (ids, codes) parts, e.g. read_ids_codes of several codes files."""
        parts = list(parts)
        ids = np.concatenate([i for i, _ in parts])
        codes = np.concatenate([c for _, c in parts])
        order = np.argsort(ids, kind="stable")
        return cls(ids[order], codes[order])

    def lookup(self, ids: np.ndarray) -> np.ndarray:
        """The codes of `ids` (any shape); an empty slot (id -1) gets the first row's, which scores ignore."""
        return self.codes[np.searchsorted(self.ids, np.where(ids < 0, self.ids[0], ids))]


class Item(NamedTuple):
    """A database item as a codes file knows it: stored path, class name (label names joined by ',' for
    multi-label items), image file (None where unknown)."""

    path: str
    label: str | None
    file: Path | None
    crs: str = ""  # the footprint's CRS, "" where the item has none
    bounds: tuple[float, float, float, float] | None = None  # left, bottom, right, top in `crs`
    lonlat: tuple[float, float] | None = None  # centre, EPSG:4326
    ring: list[list[float]] | None = None  # the true outline, a closed counter-clockwise (lon, lat) ring
    datetime: str = ""  # acquisition time, ISO 8601 ("" where unknown)
    item: str = ""  # STAC item id and collection ("" outside a catalog)
    collection: str = ""


def items_by_id(path: str | Path, ids: np.ndarray) -> dict[int, Item]:
    """{id: Item} for those of `ids` the codes file holds, reading only their rows."""
    with read_h5(path, "hashidx-codes", "codes file", "rebuild the index from a codes.h5") as f:
        all_ids = f["ids"][:]
        ids = np.unique(np.asarray(ids, dtype=np.int64))
        if len(all_ids) == 0:
            return {}
        if np.array_equal(all_ids, np.arange(len(all_ids))):  # the usual layout: id = row
            ids = ids[(ids >= 0) & (ids < len(all_ids))]
            rows = ids
        else:
            order = np.argsort(all_ids, kind="stable")
            pos = np.minimum(np.searchsorted(all_ids, ids, sorter=order), len(all_ids) - 1)
            found = all_ids[order[pos]] == ids
            ids, rows = ids[found], order[pos[found]]
        if len(rows) == 0:
            return {}
        # h5py reads a selection only in increasing order.
        unique, inverse = np.unique(rows, return_inverse=True)
        found_paths, found_labels = f["paths"][unique], f["labels"][unique]
        found_files = f["files"][unique] if "files" in f else None
        geo = Footprints.load(f, unique)
        classes = json.loads(f.attrs.get("classes", "[]"))
        root = f.attrs.get("image_root")
    names = label_names(labels_of(found_labels), classes)
    out = {}
    for i, j in zip(ids.tolist(), inverse.ravel().tolist()):
        name = found_paths[j].decode()
        if found_files is not None:
            file = Path(found_files[j].decode()) if found_files[j] else None
        else:
            file = Path(root) / name if root else (Path(name) if Path(name).is_absolute() else None)
        out[int(i)] = item_of(name, names[j], file, geo, j)
    return out


def item_of(name: str, label: str | None, file: Path | None, geo: Footprints | None, j: int) -> Item:
    """Row j of a codes file's items as an Item (its footprint and time where `geo` has them)."""
    if geo is None:
        return Item(name, label, file)
    assert geo.when is not None and geo.item is not None and geo.collection is not None
    when = (geo.when[j], geo.item[j], geo.collection[j])
    if not geo.crs[j]:
        return Item(name, label, file, "", None, None, None, *when)
    lon, lat = (round(float(x), 7) for x in geo.lonlat[j])
    left, bottom, right, top = (float(x) for x in geo.bounds[j])
    return Item(name, label, file, geo.crs[j], (left, bottom, right, top), (lon, lat), geo.ring(j), *when)


def read_ids_times(path: str | Path) -> tuple[np.ndarray, tuple[str, ...]]:
    """Only the ids of a codes file and each item's acquisition time ("" where unknown)."""
    with read_h5(path, "hashidx-codes", "codes file", "rebuild the index from a codes.h5") as f:
        ids = f["ids"][:].astype(np.int64)
        g = f.get("footprints")
        times = strings(g["datetime"]) if g is not None and "datetime" in g else ("",) * len(ids)
    return ids, times
