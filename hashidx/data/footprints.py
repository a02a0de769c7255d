"""Where and when items are on Earth: each item's CRS, bounds, true outline and centre in longitude/latitude, and
its acquisition time and catalog identity where its source says them."""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import h5py
import numpy as np

from hashidx.data.rasters import PIL_SUFFIXES, open_raster, split_chip
from hashidx.io.h5 import STR, strings


class Catalogued(Protocol):
    """What a catalog says of an item's file (hashidx.data.stac.StacRecord): its time, id and collection."""

    @property
    def datetime(self) -> str: ...
    @property
    def item(self) -> str: ...
    @property
    def collection(self) -> str: ...


# JPEG/PNG are georeferenced only through a sidecar GDAL reads: world files or .aux.xml.
WORLD_FILES = (".wld", ".jgw", ".jpgw", ".pgw", ".pngw", ".aux.xml")


@dataclass
class Footprints:
    """Per item: CRS ("" where unknown), bounds (left, bottom, right, top in that CRS), centre (lon, lat) and the
    outline's four corners (lon, lat of the top-left, top-right, bottom-right and bottom-left pixel corners: a
    rotated, sheared or GCP-georeferenced raster is not an axis-aligned box) in EPSG:4326, NaN where unknown;
    and its acquisition time (ISO 8601, "" where unknown), STAC item id and collection ("" outside a catalog)."""

    crs: tuple[str, ...]
    bounds: np.ndarray  # float64 (n x 4)
    lonlat: np.ndarray  # float64 (n x 2)
    corners: np.ndarray | None = None  # float64 (n x 8); None: the bounds' corners reprojected
    when: tuple[str, ...] | None = None
    item: tuple[str, ...] | None = None
    collection: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        n = len(self.crs)
        if self.corners is None:
            self.corners = box_corners(self.crs, self.bounds)
        self.when = self.when or ("",) * n
        self.item = self.item or ("",) * n
        self.collection = self.collection or ("",) * n

    def __len__(self) -> int:
        return len(self.crs)

    @classmethod
    def unknown(cls, n: int) -> Footprints:
        return cls(("",) * n, np.full((n, 4), np.nan), np.full((n, 2), np.nan), np.full((n, 8), np.nan))

    def subset(self, rows: np.ndarray | Sequence[int]) -> Footprints:
        rows = np.asarray(rows, dtype=np.int64)

        def pick(values: tuple[str, ...] | None) -> tuple[str, ...]:
            return tuple(values[i] for i in rows) if values else ("",) * len(rows)

        corners = self.corners[rows] if self.corners is not None else None
        return Footprints(
            pick(self.crs),
            self.bounds[rows],
            self.lonlat[rows],
            corners,
            pick(self.when),
            pick(self.item),
            pick(self.collection),
        )

    @classmethod
    def concat(cls, parts: Sequence[Footprints]) -> Footprints:
        def join(name: str) -> tuple[str, ...]:
            return tuple(c for p in parts for c in getattr(p, name))

        return cls(
            join("crs"),
            np.concatenate([p.bounds for p in parts]) if parts else np.empty((0, 4)),
            np.concatenate([p.lonlat for p in parts]) if parts else np.empty((0, 2)),
            np.concatenate([p.corners for p in parts if p.corners is not None]) if parts else np.empty((0, 8)),
            join("when"),
            join("item"),
            join("collection"),
        )

    def save(self, f: h5py.File) -> None:
        """As the group `footprints` of an open HDF5 file."""
        g = f.create_group("footprints")
        g.create_dataset("crs", data=list(self.crs), dtype=STR, compression="gzip")
        g.create_dataset("bounds", data=self.bounds.astype(np.float64))
        g.create_dataset("lonlat", data=self.lonlat.astype(np.float64))
        assert self.corners is not None
        g.create_dataset("corners", data=self.corners.astype(np.float64))
        for name in ("when", "item", "collection"):
            values = getattr(self, name)
            if any(values):  # written only where some item has one: most archives have no catalog
                g.create_dataset("datetime" if name == "when" else name, data=list(values), dtype=STR)
        g.attrs["lonlat_crs"] = "EPSG:4326"

    @classmethod
    def load(cls, f: h5py.File, rows: Any = slice(None)) -> Footprints | None:
        """The file's footprints (its `rows`: a slice or increasing indices), or None where it has none."""
        if "footprints" not in f:
            return None
        g = f["footprints"]

        def text(name: str) -> tuple[str, ...] | None:
            if name not in g:
                return None
            return strings(g[name], rows) if isinstance(rows, slice) else tuple(c.decode() for c in g[name][rows])

        crs = text("crs") or ()
        bounds, lonlat = g["bounds"][rows], g["lonlat"][rows]
        corners = g["corners"][rows] if "corners" in g else None  # files from before outlines were recorded
        if bounds.shape != (len(crs), 4) or lonlat.shape != (len(crs), 2):
            raise ValueError(f"'footprints' datasets disagree ({len(crs)}, {bounds.shape}, {lonlat.shape})")
        if corners is not None and corners.shape != (len(crs), 8):
            raise ValueError(f"'footprints/corners' is {corners.shape}, expected {len(crs)} x 8")
        return cls(crs, bounds, lonlat, corners, text("datetime"), text("item"), text("collection"))

    def ring(self, i: int) -> list[list[float]] | None:
        """Item i's outline as a closed counter-clockwise ring of (lon, lat), or None where it has none."""
        assert self.corners is not None
        return ring_of(self.corners[i])


def ring_of(corners: Sequence[float] | np.ndarray) -> list[list[float]] | None:
    """Four corners (top-left, top-right, bottom-right, bottom-left: lon, lat pairs) as a closed ring,
    counter-clockwise as RFC 7946 asks, or None where they are unknown."""
    c = np.asarray(corners, np.float64).reshape(4, 2)
    if not np.isfinite(c).all():
        return None
    pts = [c[3], c[2], c[1], c[0]]  # bottom-left, bottom-right, top-right, top-left: counter-clockwise, north up
    x, y = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
    if 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y)) < 0:  # a flipped grid (south-up, mirrored)
        pts = pts[::-1]
    return [[round(float(a), 8), round(float(b), 8)] for a, b in [*pts, pts[0]]]


def box_corners(crs: Sequence[str], bounds: np.ndarray) -> np.ndarray:
    """The corners (n x 8, lon/lat) of axis-aligned bounds: what files from before outlines were recorded have."""
    out = np.full((len(crs), 8), np.nan)
    names = np.asarray(crs, dtype=object)
    for c in set(crs) - {""}:
        rows = np.flatnonzero(names == c)
        b = bounds[rows]
        xs = np.stack([b[:, 0], b[:, 2], b[:, 2], b[:, 0]], axis=1)
        ys = np.stack([b[:, 3], b[:, 3], b[:, 1], b[:, 1]], axis=1)
        lon, lat = to_lonlat(c, xs.ravel(), ys.ravel())
        out[rows] = np.stack([lon.reshape(-1, 4), lat.reshape(-1, 4)], axis=2).reshape(-1, 8)
    return out


def _georeferenced_candidate(file: Path) -> bool:
    if file.suffix.lower() not in PIL_SUFFIXES:
        return True
    return any(Path(str(file) + s).exists() or file.with_suffix(s).exists() for s in WORLD_FILES)


# GDAL's acquisition-time metadata, most specific first: the IMAGERY domain, then the TIFF tag.
_TIME_TAGS = (("IMAGERY", "ACQUISITIONDATETIME"), (None, "ACQUISITION_DATETIME"), (None, "TIFFTAG_DATETIME"))


def iso_time(text: str) -> str:
    """A timestamp as ISO 8601 (TIFF's `YYYY:MM:DD HH:MM:SS` included), or "" where it is not one."""
    import datetime as dt

    text = text.strip()
    m = re.fullmatch(r"(\d{4}):(\d{2}):(\d{2})[ T](\d{2}:\d{2}:\d{2})", text)
    if m:
        text = f"{m[1]}-{m[2]}-{m[3]}T{m[4]}"
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return ""
    if when.tzinfo is None:  # STAC and GeoParquet readers expect UTC; file metadata without a zone is taken as UTC
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _file_time(src: Any) -> str:
    for ns, key in _TIME_TAGS:
        value = src.tags(ns=ns).get(key) if ns else src.tags().get(key)
        if value and iso_time(value):
            return iso_time(value)
    return ""


@dataclass
class _Grid:
    """How a file's pixels map to a CRS: an affine geotransform, or GDAL's transformer over its GCPs."""

    crs: str
    transform: Any  # an Affine, or a rasterio GCPTransformer
    width: int
    height: int
    when: str

    def corners(self, col: int, row: int, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
        cols, rows = [col, col + w, col + w, col], [row, row, row + h, row + h]
        if hasattr(self.transform, "xy"):
            xs, ys = self.transform.xy(rows, cols, offset="ul")
        else:
            xs, ys = zip(*(self.transform @ (c, r) for c, r in zip(cols, rows)))
        return np.asarray(xs, np.float64), np.asarray(ys, np.float64)


def _grid(file: Path) -> tuple[_Grid | None, bool]:
    """A file's grid (None where it has no georeferencing), and whether it lacks one; each file is opened once."""
    with open_raster(file) as src:
        when = _file_time(src)
        if src.crs:
            return _Grid(src.crs.to_string(), src.transform, src.width, src.height, when), False
        gcps, gcp_crs = src.gcps
        if gcps and gcp_crs:
            from rasterio.transform import GCPTransformer

            # GDAL's own GCP transformer (a polynomial fit over the points), as gdalwarp uses it.
            return _Grid(gcp_crs.to_string(), GCPTransformer(gcps), src.width, src.height, when), False
        return (_Grid("", None, src.width, src.height, when) if when else None), True


def footprints(
    paths: Sequence[Path], warn: Any = None, catalog: Mapping[Path, Catalogued] | None = None
) -> Footprints | None:
    """Footprints of items (whole images or chips), or None when none is georeferenced or dated; each file is
    opened once. A raster without a CRS or GCPs gets no place, and `warn` (a callable) hears of it once.
    `catalog` (STAC records by file) gives items their time, id and collection."""
    n = len(paths)
    crs_of: list[str] = [""] * n
    bounds = np.full((n, 4), np.nan)
    corner_xy = np.full((n, 8), np.nan)
    when, item, collection = [""] * n, [""] * n, [""] * n
    grids: dict[Path, _Grid | None] = {}
    no_crs: list[Path] = []
    for i, p in enumerate(paths):
        file, window = split_chip(p)
        if file not in grids:
            grids[file] = None
            if _georeferenced_candidate(file):
                grids[file], missing = _grid(file)
                no_crs += [file] if missing else []
        record = catalog.get(file) if catalog else None
        if record is not None:
            when[i], item[i], collection[i] = record.datetime, record.item, record.collection
        grid = grids[file]
        if grid is None:
            continue
        when[i] = when[i] or grid.when
        if not grid.crs:
            continue
        col, row, w, h = (
            (window.col, window.row, window.width, window.height) if window else (0, 0, grid.width, grid.height)
        )
        xs, ys = grid.corners(col, row, w, h)
        crs_of[i] = grid.crs
        bounds[i] = (xs.min(), ys.min(), xs.max(), ys.max())
        corner_xy[i] = np.stack([xs, ys], axis=1).ravel()
    if no_crs and warn is not None:
        warn(
            f"{no_crs[0]}: raster has no CRS or GCPs ({len(no_crs)} file(s) like it); their results get no coordinates"
        )
    if not any(crs_of) and not any(when) and not any(item):
        return None
    crs = tuple(crs_of)
    return Footprints(
        crs, bounds, centres(crs, bounds), _lonlat_corners(crs, corner_xy), tuple(when), tuple(item), tuple(collection)
    )


def _lonlat_corners(crs: tuple[str, ...], corner_xy: np.ndarray) -> np.ndarray:
    out = np.full_like(corner_xy, np.nan)
    names = np.asarray(crs, dtype=object)
    for c in set(crs) - {""}:
        rows = np.flatnonzero(names == c)
        xy = corner_xy[rows].reshape(-1, 2)
        lon, lat = to_lonlat(c, xy[:, 0], xy[:, 1])
        out[rows] = np.stack([lon, lat], axis=1).reshape(-1, 8)
    return out


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
