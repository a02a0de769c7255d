"""Labels apart from images: label-only database items, and multi-label annotations of a dataset.

Label-only items (no pixels, coded by the AHCL solver alone) come as an HDF5 file (`labels` int64,
`paths`, `classes`; kind hashidx-labels), which is what a million-item archive should use, or a
`path<TAB>label` list file whose images are never opened. Multi-label annotations (`--labels FILE`)
come as a table in the UC Merced multi-label layout or a `path<TAB>label1,label2` list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import h5py
import numpy as np

from hashidx.data.datasets import Dataset, first_duplicate, parse_list_text, read_list
from hashidx.data.rasters import scene_of
from hashidx.errors import HashidxError
from hashidx.io.atomic import atomic_path
from hashidx.io.h5 import STR, read_h5, strings
from hashidx.version import __version__

LABELS_FORMAT = 1


@dataclass(frozen=True)
class LabelFile:
    """Names and integer labels (into `classes`) of items that have no features."""

    paths: tuple[str, ...]
    labels: np.ndarray  # int64 (n,)
    classes: tuple[str, ...]

    def save(self, path: str | Path) -> None:
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            f.create_dataset("labels", data=self.labels.astype(np.int64))
            f.create_dataset("paths", data=list(self.paths), dtype=STR)
            f.create_dataset("classes", data=list(self.classes), dtype=STR)
            f.attrs.update({"kind": "hashidx-labels", "format": LABELS_FORMAT, "hashidx_version": __version__})

    def aligned(self, classes: Sequence[str], source: str | Path) -> np.ndarray:
        """This file's labels as indices into `classes` (the training data's); unknown classes are refused."""
        where = {c: k for k, c in enumerate(classes)}
        unknown = [c for c in self.classes if c not in where]
        if unknown:
            raise HashidxError(
                f"{source}: class {unknown[0]!r} is not among the training data's {len(classes)} classes; "
                "the network can only code classes it was trained on"
            )
        mapping = np.asarray([where[c] for c in self.classes], dtype=np.int64)
        return mapping[self.labels]


def read_labels(path: str | Path) -> LabelFile:
    """A labels HDF5 (.h5/.hdf5) or a `path<TAB>label` list file (images not opened)."""
    path = Path(path)
    if path.suffix.lower() not in (".h5", ".hdf5"):
        if not path.is_file():
            raise HashidxError(f"{path}: labels file not found")
        ds = read_list(path)
        return LabelFile(ds.paths, ds.labels, ds.classes)
    remedy = (
        "write one with hashidx.data.labels.LabelFile(paths, labels, classes).save(PATH) or use a path<TAB>label list"
    )
    with read_h5(path, "hashidx-labels", "labels file", remedy) as f:
        labels = f["labels"][:]
        classes = strings(f["classes"])
        paths = strings(f["paths"])
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(paths) != len(labels):
        raise HashidxError(
            f"{path}: 'labels' must be n integers with n 'paths' (got {labels.dtype} {labels.shape}, "
            f"{len(paths)} paths); {remedy}"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
        raise HashidxError(f"{path}: labels must index 'classes' (0..{len(classes) - 1}); {remedy}")
    return LabelFile(paths, labels.astype(np.int64), classes)


@dataclass(frozen=True)
class LabelTable:
    """Multi-label annotations: a 0/1 row per image name over `classes`."""

    names: tuple[str, ...]
    matrix: np.ndarray  # uint8 (n x C)
    classes: tuple[str, ...]


def _table_rows(text: str, source: Path) -> LabelTable:
    """The UC Merced multi-label layout: a header `IMAGE\\LABEL<TAB>name…`, then `image<TAB>0<TAB>1…` rows."""
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip() and not line.startswith("#")]
    header = [c.strip() for c in lines[0][1].split("\t")]
    classes = tuple(header[1:])
    if len(set(classes)) != len(classes) or not all(classes):
        raise HashidxError(f"{source}:{lines[0][0]}: label names in the header must be distinct and non-empty")
    names, rows = [], []
    for lineno, line in lines[1:]:
        cells = [c.strip() for c in line.split("\t")]
        if len(cells) != len(header) or any(c not in ("0", "1") for c in cells[1:]):
            raise HashidxError(
                f"{source}:{lineno}: expected an image name and {len(classes)} tab-separated 0/1 values "
                f"(one per header label), got {line[:80]!r}"
            )
        names.append(cells[0])
        rows.append([c == "1" for c in cells[1:]])
    return LabelTable(tuple(names), np.asarray(rows, dtype=np.uint8).reshape(-1, len(classes)), classes)


def _list_rows(text: str, source: Path) -> LabelTable:
    """`path<TAB>label1,label2…` lines."""
    rows = [
        (p, [lab.strip() for lab in labels.split(",") if lab.strip()]) for p, labels in parse_list_text(text, source)
    ]
    classes = tuple(sorted({lab for _, labs in rows for lab in labs}))
    where = {c: k for k, c in enumerate(classes)}
    matrix = np.zeros((len(rows), len(classes)), dtype=np.uint8)
    for i, (_, labs) in enumerate(rows):
        matrix[i, [where[lab] for lab in labs]] = 1
    return LabelTable(tuple(p for p, _ in rows), matrix, classes)


def read_label_table(path: str | Path) -> LabelTable:
    """Multi-label annotations from a table (UC Merced layout: header row, 0/1 columns) or a
    `path<TAB>label1,label2` list; an image name may be its path, its path without suffix or its file stem."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise HashidxError(f"{path}: labels file not found") from None
    except IsADirectoryError:
        raise HashidxError(f"{path}: is a folder; pass a label table or a path<TAB>labels list") from None
    except UnicodeDecodeError as exc:
        raise HashidxError(f"{path}: not UTF-8 text (byte {exc.start}); save the labels as UTF-8") from None
    first = next((line for line in text.splitlines() if line.strip() and not line.startswith("#")), None)
    if first is None:
        raise HashidxError(f"{path}: no labels; expect a header row and 0/1 columns, or path<TAB>label1,label2 lines")
    table = _table_rows(text, path) if first.count("\t") >= 2 else _list_rows(text, path)
    dup = first_duplicate(table.names)
    if dup is not None:
        raise HashidxError(f"{path}: image {dup!r} has two rows; keep one")
    if len(table.classes) < 2:
        raise HashidxError(f"{path}: only {len(table.classes)} label(s); supervised hashing needs at least two")
    return table


def _keys(relpath: str) -> tuple[str, ...]:
    p = PurePosixPath(relpath)
    return (relpath, str(p.with_suffix("")), p.stem)


def table_labels(table: LabelTable, paths: Sequence[str], source: str | Path) -> np.ndarray:
    """The table's multi-hot rows (n x C) for image `paths`, matched by path, path without suffix, or file stem."""
    where = {name: i for i, name in enumerate(table.names)}
    rows, missing = [], []
    for p in paths:
        row = next((where[key] for key in _keys(p) if key in where), None)
        if row is None:
            missing.append(p)
        rows.append(row)
    if missing:
        raise HashidxError(
            f"{source}: no labels for {len(missing)} of the {len(paths)} images, e.g. {missing[0]!r}; "
            "add a row for each (named by path, path without suffix, or file name without suffix)"
        )
    return table.matrix[np.asarray(rows, dtype=np.int64)]


def relabel(ds: Dataset, table: LabelTable, source: str | Path) -> Dataset:
    """`ds` with the table's multi-hot labels over the table's label names (a chip takes its scene's)."""
    names = tuple(scene_of(p) for p in ds.paths)
    return Dataset(ds.root, ds.paths, table_labels(table, names, source), table.classes, ds.geo)


def label_names(labels: np.ndarray, classes: Sequence[str]) -> list[str | None]:
    """Each item's class name, or its label names joined by ',' for multi-hot rows; None where unknown."""
    if labels.ndim == 2:
        return [",".join(classes[int(k)] for k in np.flatnonzero(row)) for row in labels]
    return [classes[i] if 0 <= i < len(classes) else None for i in np.asarray(labels).tolist()]
