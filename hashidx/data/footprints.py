"""Where items are on Earth: each georeferenced item's CRS, bounds and centre longitude/latitude."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from hashidx.data.rasters import PIL_SUFFIXES, open_raster, split_chip
from hashidx.io.h5 import STR, strings

# JPEG/PNG are georeferenced only through a sidecar GDAL reads: world files or .aux.xml.
WORLD_FILES = (".wld", ".jgw", ".jpgw", ".pgw", ".pngw", ".aux.xml")


@dataclass
class Footprints:
    """Per item: CRS ("" where unknown), bounds (left, bottom, right, top in that CRS) and centre (lon, lat)
    in EPSG:4326; NaN where unknown."""

    crs: tuple[str, ...]
    bounds: np.ndarray  # float64 (n x 4)
    lonlat: np.ndarray  # float64 (n x 2)

    def __len__(self) -> int:
        return len(self.crs)

    @classmethod
    def unknown(cls, n: int) -> Footprints:
        return cls(("",) * n, np.full((n, 4), np.nan), np.full((n, 2), np.nan))

    def subset(self, rows: np.ndarray | Sequence[int]) -> Footprints:
        rows = np.asarray(rows, dtype=np.int64)
        return Footprints(tuple(self.crs[i] for i in rows), self.bounds[rows], self.lonlat[rows])

    @classmethod
    def concat(cls, parts: Sequence[Footprints]) -> Footprints:
        return cls(
            tuple(c for p in parts for c in p.crs),
            np.concatenate([p.bounds for p in parts]) if parts else np.empty((0, 4)),
            np.concatenate([p.lonlat for p in parts]) if parts else np.empty((0, 2)),
        )

    def save(self, f: h5py.File) -> None:
        """As the group `footprints` of an open HDF5 file."""
        g = f.create_group("footprints")
        g.create_dataset("crs", data=list(self.crs), dtype=STR, compression="gzip")
        g.create_dataset("bounds", data=self.bounds.astype(np.float64))
        g.create_dataset("lonlat", data=self.lonlat.astype(np.float64))
        g.attrs["lonlat_crs"] = "EPSG:4326"

    @classmethod
    def load(cls, f: h5py.File, rows: Any = slice(None)) -> Footprints | None:
        """The file's footprints (its `rows`: a slice or increasing indices), or None where it has none."""
        if "footprints" not in f:
            return None
        g = f["footprints"]
        crs = strings(g["crs"], rows) if isinstance(rows, slice) else tuple(c.decode() for c in g["crs"][rows])
        bounds, lonlat = g["bounds"][rows], g["lonlat"][rows]
        if bounds.shape != (len(crs), 4) or lonlat.shape != (len(crs), 2):
            raise ValueError(f"'footprints' datasets disagree ({len(crs)}, {bounds.shape}, {lonlat.shape})")
        return cls(crs, bounds, lonlat)


def _georeferenced_candidate(file: Path) -> bool:
    if file.suffix.lower() not in PIL_SUFFIXES:
        return True
    return any(Path(str(file) + s).exists() or file.with_suffix(s).exists() for s in WORLD_FILES)


def footprints(paths: Sequence[Path], warn: Any = None) -> Footprints | None:
    """Footprints of items (whole images or chips), or None when none is georeferenced; each file is opened
    once. A raster without a CRS gets none, and `warn` (a callable) hears of it once."""
    n = len(paths)
    crs_of: list[str] = [""] * n
    bounds = np.full((n, 4), np.nan)
    grids: dict[Path, tuple[str, Any, int, int] | None] = {}
    no_crs: list[Path] = []
    for i, p in enumerate(paths):
        file, window = split_chip(p)
        if file not in grids:
            grids[file] = None
            if _georeferenced_candidate(file):
                with open_raster(file) as src:
                    if src.crs:
                        grids[file] = (src.crs.to_string(), src.transform, src.width, src.height)
                    else:
                        no_crs.append(file)
        grid = grids[file]
        if grid is None:
            continue
        crs, transform, width, height = grid
        col, row, w, h = (window.col, window.row, window.width, window.height) if window else (0, 0, width, height)
        xs, ys = zip(*(transform @ (c, r) for c, r in ((col, row), (col + w, row), (col + w, row + h), (col, row + h))))
        crs_of[i] = crs
        bounds[i] = (min(xs), min(ys), max(xs), max(ys))
    if no_crs and warn is not None:
        warn(f"{no_crs[0]}: raster has no CRS ({len(no_crs)} file(s) like it); their results get no coordinates")
    if not any(crs_of):
        return None
    return Footprints(tuple(crs_of), bounds, centres(tuple(crs_of), bounds))


@functools.lru_cache(maxsize=64)
def _transformer(crs: str) -> Any:
    from pyproj import Transformer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Transformer.from_crs(crs, "EPSG:4326", always_xy=True)


@functools.lru_cache(maxsize=64)
def _from_lonlat(crs: str) -> Any:
    from pyproj import Transformer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Transformer.from_crs("EPSG:4326", crs, always_xy=True)


def from_lonlat(crs: str, lon: float, lat: float) -> tuple[float, float]:
    """A longitude/latitude (EPSG:4326) as x, y of `crs`."""
    x, y = _from_lonlat(crs).transform(lon, lat)
    return float(x), float(y)


def to_lonlat(crs: str, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points of `crs` in EPSG:4326 longitude, latitude (pyproj, axis order x/y whatever the CRS says)."""
    lon, lat = _transformer(crs).transform(x, y)
    return np.asarray(lon, np.float64), np.asarray(lat, np.float64)


def centres(crs: tuple[str, ...], bounds: np.ndarray) -> np.ndarray:
    """Centre lon/lat of each footprint, one transformer per CRS."""
    out = np.full((len(crs), 2), np.nan)
    names = np.asarray(crs, dtype=object)
    for c in set(crs) - {""}:
        rows = np.flatnonzero(names == c)
        b = bounds[rows]
        out[rows, 0], out[rows, 1] = to_lonlat(c, (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2)
    return out


def polygon(crs: str, bounds: Sequence[float]) -> list[list[float]]:
    """A footprint's ring in EPSG:4326 (lon, lat): its four corners reprojected, closed, counter-clockwise."""
    left, bottom, right, top = bounds
    xs = np.asarray([left, right, right, left, left])
    ys = np.asarray([bottom, bottom, top, top, bottom])
    lon, lat = to_lonlat(crs, xs, ys)
    return [[round(float(a), 8), round(float(b), 8)] for a, b in zip(lon, lat)]
