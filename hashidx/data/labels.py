"""Label-only database items: labels (and names) with no pixels, coded by the AHCL solver alone.

Two forms: an HDF5 file (`labels` int64, `paths`, `classes`; kind hashidx-labels), which is what a
million-item archive should use, or a `path<TAB>label` list file whose images are never opened.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from hashidx.data.datasets import read_list
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
