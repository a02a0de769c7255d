"""Datasets: a folder of class folders, or a list file of `path<TAB>label` lines; unlabelled, a folder of images
or scenes, one raster, or a list of paths."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hashidx.data.chips import Tiled, Tiling, tile_items
from hashidx.data.footprints import Catalogued, Footprints
from hashidx.data.rasters import scene_of
from hashidx.errors import HashidxError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".jp2")


@dataclass(frozen=True)
class Dataset:
    """Images named relative to `root`, with integer labels into `classes`."""

    root: Path
    paths: tuple[str, ...]
    labels: np.ndarray  # int64 (n,) index into classes, or uint8 (n x C) multi-hot rows over them
    classes: tuple[str, ...]
    geo: Footprints | None = None  # each item's place on Earth, where its source is georeferenced
    catalog: Mapping[Path, Catalogued] | None = None  # STAC records by file, for an archive read from a catalog

    @property
    def labelled(self) -> bool:
        """False for an archive read without labels (no classes; every label -1)."""
        return bool(self.classes)

    def __len__(self) -> int:
        return len(self.paths)

    def absolute(self, i: int) -> Path:
        return self.root / self.paths[i]

    def subset(self, indices: np.ndarray) -> Dataset:
        """The items at `indices`, same classes."""
        geo = None if self.geo is None else self.geo.subset(indices)
        paths = tuple(self.paths[i] for i in indices)
        return Dataset(self.root, paths, self.labels[indices], self.classes, geo, self.catalog)

    def tiled(self, tiling: Tiling) -> tuple[Dataset, Tiled]:
        """Each scene cut into chips that keep its label (`scene.tif#COL,ROW,WIDTH,HEIGHT`), and what was skipped."""
        tiled = tile_items([(p, self.root / p) for p in self.paths], tiling)
        owner = {name: i for i, name in enumerate(self.paths)}
        rows = [owner[scene_of(name)] for name, _ in tiled.items]
        paths = tuple(name for name, _ in tiled.items)
        labels = self.labels[np.asarray(rows, dtype=np.int64)]
        return Dataset(self.root, paths, labels, self.classes, catalog=self.catalog), tiled


def labels_of(stored: np.ndarray) -> np.ndarray:
    """Labels as a file stores them: class indices (int64) or multi-hot rows (uint8)."""
    return stored.astype(np.uint8) if stored.ndim == 2 else stored.astype(np.int64)


def first_duplicate(names: Sequence[str]) -> str | None:
    """The first name that occurs a second time, or None."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")


def unlabelled(root: Path, paths: Sequence[str]) -> Dataset:
    """Items with no class: what an archive is before anyone has marked it."""
    return Dataset(root, tuple(paths), np.full(len(paths), -1, dtype=np.int64), ())


def _from_folders(root: Path, labels_required: bool) -> Dataset:
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    loose = sorted(p for p in root.iterdir() if _is_image(p))
    if not labels_required and loose and not class_dirs:
        return unlabelled(root, [p.name for p in loose])
    if not class_dirs:
        raise HashidxError(
            f"{root}: no class folders found; expected DATA/<class>/<image> or a list file of 'path<TAB>label' lines"
        )
    paths, labels = [], []
    for k, d in enumerate(class_dirs):
        images = sorted(p for p in d.rglob("*") if _is_image(p))
        if not images:
            raise HashidxError(f"{d}: class folder has no JPEG/PNG/TIFF images; add images or remove the folder")
        paths += [p.relative_to(root).as_posix() for p in images]
        labels += [k] * len(images)
    return Dataset(root, tuple(paths), np.asarray(labels, dtype=np.int64), tuple(d.name for d in class_dirs))


def parse_list_text(text: str, source: str | Path) -> list[tuple[str, str]]:
    """(path, label) rows of a list file's text; blank lines and '#' comments are skipped."""
    rows: list[tuple[str, str]] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = [part.strip() for part in line.split("\t")]
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise HashidxError(f"{source}:{lineno}: expected 'path<TAB>label', got {raw!r}")
        rows.append((parts[0], parts[1]))
    if not rows:
        raise HashidxError(f"{source}: list file has no 'path<TAB>label' lines")
    return rows


def binary_kind(head: bytes) -> str | None:
    """What a file that cannot be a text list is, from its first bytes: the binary files hashidx reads and writes."""
    if head.startswith(b"PK\x03\x04"):
        return "a torch checkpoint (model.pt) or another zip archive"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "an HDF5 file of another kind than a feature cache (codes or labels?)"
    if head.startswith(b"PAR1"):
        return "a Parquet file"
    if head[:4] in (b"IBMp", b"IBM2", b"IBxF", b"IBwF", b"IBHf"):
        return "a FAISS index"
    return None


def read_list(list_file: Path, labels_required: bool = True) -> Dataset:
    """A `path<TAB>label` list file; paths are relative to its folder and are not opened here."""
    raw = list_file.read_bytes()
    kind = binary_kind(raw[:8])
    if kind is not None:
        raise HashidxError(
            f"{list_file}: {kind}, not a dataset; pass a folder of class folders, a path<TAB>label list or a "
            "feature cache from 'hashidx features'"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise HashidxError(f"{list_file}: not UTF-8 text (byte {exc.start}); save the list as UTF-8") from None
    paths = [] if labels_required else _plain_paths(text)
    if paths:
        return unlabelled(list_file.parent, paths)
    rows = parse_list_text(text, list_file)
    classes = tuple(sorted({label for _, label in rows}))
    index = {c: k for k, c in enumerate(classes)}
    return Dataset(
        list_file.parent, tuple(p for p, _ in rows), np.asarray([index[l] for _, l in rows], dtype=np.int64), classes
    )


def _plain_paths(text: str) -> list[str]:
    """A list of image paths (or chips) with no labels, one a line, or [] for anything else (a labelled list)."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    images = all(Path(line.split("#", 1)[0]).suffix.lower() in IMAGE_SUFFIXES for line in lines)
    return lines if lines and images else []


def load_dataset(source: str | Path, labels_required: bool = True) -> Dataset:
    """Read a class-folder dataset or a list file; refuse duplicates and single-class sets.

    Without `labels_required`, an archive with no labels is read too: a folder of images or scenes, one image or
    raster file, or a list of paths (one per line); its items have no classes (Dataset.labelled is False).
    """
    source = Path(source)
    if source.is_dir():
        ds = _from_folders(source, labels_required)
    elif source.is_file() and not labels_required and source.suffix.lower() in IMAGE_SUFFIXES:
        ds = unlabelled(source.parent, [source.name])
    elif source.is_file():
        ds = read_list(source, labels_required)
    else:
        raise HashidxError(f"{source}: no such dataset folder or list file")
    dup = first_duplicate(ds.paths)
    if dup is not None:
        raise HashidxError(f"{source}: image {dup!r} is listed twice; remove the duplicate line")
    if ds.labelled and len(ds.classes) < 2:
        raise HashidxError(f"{source}: only one class ({ds.classes[0]!r}); supervised hashing needs at least two")
    return ds
