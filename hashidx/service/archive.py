"""The archive a search service answers over: an index and its model loaded once, every item's name, label and
footprint, the scenes its chips come from, and searches by item, by point and by image.

Nothing here speaks HTTP: the app only parses requests into these calls and serialises what they return. Items
and scenes are addressed by id; no call takes a path from outside.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hashidx.codes.codefile import Item, positions
from hashidx.data.chips import Tiling
from hashidx.data.footprints import from_lonlat
from hashidx.data.rasters import default_bands, open_raster, split_chip
from hashidx.errors import HashidxError
from hashidx.features.runtime import DEFAULT_RUNTIME
from hashidx.feedback.marks import Mark, Marks
from hashidx.feedback.workspace import Workspace
from hashidx.results.examples import Examples, indexed_content, indexed_examples, search_examples
from hashidx.results.gallery import thumbnail_bytes
from hashidx.results.period import Period
from hashidx.results.query import Results, Searcher


class NotFound(HashidxError):
    """An id the archive does not hold (the app answers 404)."""


class ReadOnly(HashidxError):
    """A write to a service started without a place to write (the app answers 403)."""


class Conflict(HashidxError):
    """A request the service's state does not allow now: a second learn, an undo past the base (409)."""


class Unacceptable(HashidxError):
    """An upload of a type, size or pixel count the service does not take (the app answers 413 or 415)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Scene:
    """A raster whose chips or pixels the archive indexes: its id, name, CRS and extent (lon/lat)."""

    id: str
    name: str
    file: Path
    crs: str
    lonlat_bounds: tuple[float, float, float, float]  # west, south, east, north
    items: int


UPLOAD_TYPES = {"JPEG": ".jpg", "PNG": ".png", "TIFF": ".tif", "GTiff": ".tif"}


class Archive:
    """An index and model, warm: what `hashidx serve` answers from."""

    def __init__(
        self,
        index: str | Path,
        model: str | Path | None,
        runtime: str = DEFAULT_RUNTIME,
        workspace: Workspace | None = None,
        scale: str | None = None,
    ):
        self.runtime, self.scale = runtime, scale
        self.base = Searcher(index, model, runtime=runtime).warm()
        # (name, searcher): the base, then the learned version answering now. A learn or an undo swaps the pair in
        # one assignment, so a search that took the old one finishes on it.
        self._current: tuple[str, Searcher] = ("base", self.base)
        self.workspace = workspace
        if workspace is not None and workspace.versions():
            latest = workspace.versions()[-1]
            self._current = (latest.name, self._load_version(latest))
        table = self.base.code_table()
        self.ids = table.ids
        self.items: dict[int, Item] = self.base.hold_items()  # in memory: no codes-file read per search
        self._scene_ids: dict[str, list[int]] = {}  # each scene's chips, in id order
        self.scenes = self._scenes()
        self._scene_of_item = {i: sid for sid, ids in self._scene_ids.items() for i in ids}
        self._by_crs = self._footprint_arrays()
        self._lock = threading.Lock()  # the encoder's radiometry is set per upload; one upload is read at a time

    @property
    def searcher(self) -> Searcher:
        """The index and model answering now: the base, or the latest learned version not undone."""
        return self._current[1]

    @property
    def version(self) -> str:
        return self._current[0]

    def _load_version(self, folder: Path) -> Searcher:
        searcher = Searcher(folder / "index.faiss", folder / "model.pt", runtime=self.runtime).warm()
        searcher.hold_items()
        return searcher

    # --- what the archive holds -------------------------------------------------------------------------------

    def _scene_key(self, i: int) -> Path | None:
        item = self.items[i]
        if item.file is None or not item.crs:
            return None
        return split_chip(item.file)[0]

    def _scenes(self) -> dict[str, Scene]:
        by_file: dict[Path, list[int]] = {}
        for i in self.items:
            key = self._scene_key(i)
            if key is not None:
                by_file.setdefault(key, []).append(i)
        scenes = {}
        for file, ids in sorted(by_file.items()):
            rings = np.asarray([self.items[i].ring for i in ids])
            west, south = rings[..., 0].min(), rings[..., 1].min()
            east, north = rings[..., 0].max(), rings[..., 1].max()
            sid = hashlib.sha256(str(file).encode()).hexdigest()[:12]
            self._scene_ids[sid] = sorted(ids)
            scenes[sid] = Scene(sid, file.name, file, self.items[ids[0]].crs, (west, south, east, north), len(ids))
        return scenes

    def item(self, item_id: int) -> Item:
        try:
            return self.items[int(item_id)]
        except (KeyError, ValueError):
            raise NotFound(f"item {item_id}: not in the index (ids are integers from /items)") from None

    def scene(self, scene_id: str) -> Scene:
        try:
            return self.scenes[scene_id]
        except KeyError:
            raise NotFound(f"scene {scene_id!r}: not in the archive (ids are listed at /scenes)") from None

    def scene_items(self, scene_id: str) -> list[int]:
        """The ids of a scene's indexed chips, in id order."""
        self.scene(scene_id)
        return self._scene_ids[scene_id]

    def describe(self) -> dict:
        sidecar = self.searcher.sidecar
        encoder = self.searcher.encoder
        return {
            "index": {k: sidecar.get(k) for k in ("index_type", "bits", "count", "method", "nlist", "nprobe", "M")},
            "model": None
            if encoder is None
            else {
                "method": encoder.config.get("method"),
                "bits": encoder.bits,
                "backbone": encoder.config.get("backbone"),
                "classes": list(encoder.config.get("classes", [])),
                "read_as": encoder.radiometry.describe(),
            },
            "items": len(self.items),
            "learning": None
            if self.workspace is None
            else {
                "version": self.version,
                "versions": [p.name for p in self.workspace.versions()],
                "marks": len(self.workspace.marks),
                "concepts": list(self.workspace.marks.concepts),
            },
            "with_footprints": int(sum(len(ids) for ids, _ in self._by_crs.values())),
            "order_within_code": "content" if self.order_within_code(self.searcher) else "id",
            "scenes": len(self.scenes),
        }

    def item_record(self, i: int) -> dict:
        """An item as the API shows it: id, name, label, scene, window, lon/lat and footprint (EPSG:4326)."""
        item = self.items[i]
        _, window = split_chip(item.path)
        return {
            "id": i,
            "path": item.path,
            "label": item.label,
            "scene": self._scene_of_item.get(i),
            "window": None if window is None else [window.col, window.row, window.width, window.height],
            "lon": None if item.lonlat is None else item.lonlat[0],
            "lat": None if item.lonlat is None else item.lonlat[1],
            "footprint": None if item.ring is None else {"type": "Polygon", "coordinates": [item.ring]},
            "datetime": item.datetime or None,
        }

    # --- searches ---------------------------------------------------------------------------------------------

    def search_items(
        self, positive: list[int], negative: list[int] | None = None, k: int = 20, period: Period | None = None
    ) -> Results:
        """Items like the `positive` examples and unlike the `negative` ones (hashidx.results.examples, its default
        rule): each example's u through the current model from the archive's cached features where the service
        keeps them, else its ±1 code. Marked negatives, and items with exactly their features, never come back."""
        negative = negative or []
        if not positive:
            raise HashidxError("give at least one positive example (an item id)")
        for i in (*positive, *negative):
            self.item(i)
        searcher = self.searcher  # one version for the whole search, whatever a learn swaps in meanwhile
        exclude = set(negative)
        if self.workspace is not None:
            known = np.intersect1d(np.asarray(negative, np.int64), self.workspace.archive.ids)
            exclude |= set(self.workspace.archive.duplicates(known).tolist())
        name = ",".join(map(str, positive)) + ("" if not negative else " -" + ",-".join(map(str, negative)))
        examples = Examples(
            name,
            self._example_vectors(searcher, positive),
            self._example_vectors(searcher, negative),
            exclude,
            self.items[positive[0]].file,
            indexed_content(searcher, [*positive, *negative]),
        )
        order = self.order_within_code(searcher, examples.content is not None)
        return search_examples(searcher, examples, min(k, len(self.ids)), rerank=order, period=period)

    def _example_vectors(self, searcher: Searcher, ids: list[int]) -> np.ndarray:
        rows = indexed_examples(searcher, ids)
        encoder = searcher.encoder
        if self.workspace is None or encoder is None or encoder.finetuned or not ids:
            return rows
        archive = self.workspace.archive
        where, held = positions(archive.ids, np.asarray(ids, np.int64))
        if held.any():
            rows[held] = encoder.embed_features(archive.features[where[held]])
        return rows

    # --- learning from marks ----------------------------------------------------------------------------------

    def _writable(self) -> Workspace:
        if self.workspace is None:
            raise ReadOnly("this service is read-only: start it with --learn-dir DIR to keep marks and learn")
        return self.workspace

    def mark(self, rows: list[Mark]) -> Marks:
        for m in rows:
            self.item(m.item)
        return self._writable().mark(rows)

    def items_in_box(self, west: float, south: float, east: float, north: float) -> list[int]:
        """The items whose footprint's centre lies in a lon/lat box: a drawn box's chips as examples."""
        if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
            raise HashidxError(f"box {west},{south},{east},{north}: give west < east and south < north in lon/lat")
        return sorted(
            i
            for i, item in self.items.items()
            if item.lonlat is not None and west <= item.lonlat[0] <= east and south <= item.lonlat[1] <= north
        )

    def learn(self) -> dict:
        """A model and index learned from the marks so far, swapped in; the one before stays for undo."""
        folder, record = self._writable().learn()
        self._current = (folder.name, self._load_version(folder))
        return {"version": folder.name, **{k: record[k] for k in ("concepts", "marks", "items", "times_s")}}

    def undo(self) -> str:
        """Back to the version before the one answering now (the learned folders stay on disk)."""
        workspace = self._writable()
        names = ["base"] + [p.name for p in workspace.versions()]
        at = names.index(self.version)
        if at == 0:
            raise Conflict("nothing to undo: the base index is answering")
        before = names[at - 1]
        self._current = (
            (before, self.base)
            if before == "base"
            else (before, self._load_version(workspace.folder / "learned" / before))
        )
        return before

    def _footprint_arrays(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per CRS, the ids and bounds of the items with a footprint in it: what a point is looked up in."""
        groups: dict[str, list[int]] = {}
        for i, item in self.items.items():
            if item.crs and item.bounds is not None:
                groups.setdefault(item.crs, []).append(i)
        return {
            crs: (np.asarray(ids, np.int64), np.asarray([self.items[i].bounds for i in ids], np.float64))
            for crs, ids in groups.items()
        }

    def item_at(self, lon: float, lat: float) -> int:
        """The indexed chip or image whose footprint holds the point; of several, the one whose centre is nearest."""
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            raise HashidxError(f"lon {lon}, lat {lat}: not a longitude/latitude")
        best, best_d = None, np.inf
        for crs, (ids, b) in self._by_crs.items():
            x, y = from_lonlat(crs, lon, lat)
            inside = (b[:, 0] <= x) & (x <= b[:, 2]) & (b[:, 1] <= y) & (y <= b[:, 3])
            if not inside.any():
                continue
            d = ((b[:, 0] + b[:, 2]) / 2 - x) ** 2 + ((b[:, 1] + b[:, 3]) / 2 - y) ** 2
            d[~inside] = np.inf
            j = int(np.argmin(d))
            if d[j] < best_d:
                best, best_d = int(ids[j]), float(d[j])
        if best is None:
            raise NotFound(f"lon {lon}, lat {lat}: no indexed chip covers this point")
        return best

    def search_upload(
        self,
        data: bytes,
        k: int = 20,
        rerank: str | None = None,
        tile: Tiling | None = None,
        max_pixels: int = 0,
        period: Period | None = None,
    ) -> Results:
        """An uploaded JPEG, PNG or (Geo)TIFF through the model, as `hashidx query` reads that file: its type
        sniffed from its bytes, its pixel count bounded, each chip a query where `tile` cuts it."""
        if self.searcher.encoder is None:
            raise HashidxError("this service has no model: start it with --model to search by image")
        suffix, pixels = sniff_image(data)
        if max_pixels and pixels > max_pixels:
            raise Unacceptable(f"the image has {pixels:,} pixels; the service takes at most {max_pixels:,}", 413)
        with tempfile.TemporaryDirectory(prefix="hashidx-upload-") as tmp:
            path = Path(tmp) / f"upload{suffix}"
            path.write_bytes(data)
            searcher = self.searcher
            with self._lock:
                # Each upload is read with the model's own bands and scaling, or (--scale) its own where the
                # model's cannot read its pixels; the encoder is left as it was for the next one.
                model_radiometry, searcher.scale = searcher.encoder.radiometry, None
                if self.scale is not None and _pixel_type(path) != "uint8":
                    searcher.scale = self.scale
                try:
                    qs = searcher.encode_images([("upload", path)], "upload", tiling=tile)
                finally:
                    searcher.encoder.radiometry, searcher.scale = model_radiometry, None
            qs.files = [None] * len(qs.names)  # the temporary file is gone with the request
            return searcher.search(qs, k, rerank or self.order_within_code(searcher, qs.content is not None), period)

    def order_within_code(self, searcher: Searcher, query_content: bool = True) -> str | None:
        """What a search re-ranks by when the request does not say: items of one code by their content vectors where
        the index and the query hold them ("more like this one", not the class in id order), else the default."""
        return "features" if query_content and searcher.has_content else None

    # --- pictures ---------------------------------------------------------------------------------------------

    def thumbnail(self, item_id: int, size: int = 128) -> tuple[bytes, str]:
        item = self.item(item_id)
        if item.file is None:
            raise NotFound(f"item {item_id}: its pixels are not known to the index (a label-only item)")
        encoder = self.searcher.encoder
        try:
            return thumbnail_bytes(item.file, size, *([] if encoder is None else [encoder.radiometry]))
        except HashidxError as exc:
            raise NotFound(f"item {item_id}: its image cannot be read ({str(exc).split(': ', 1)[-1]})") from None

    def tile(self, scene_id: str, z: int, x: int, y: int) -> bytes:
        """A 256 px web-mercator PNG of a scene (rio-tiler), bands and scaling as the model reads them, no-data
        transparent; NotFound outside the scene."""
        from rio_tiler.errors import TileOutsideBounds
        from rio_tiler.io import Reader

        scene = self.scene(scene_id)
        radiometry = None if self.searcher.encoder is None else self.searcher.encoder.radiometry
        with open_raster(scene.file) as src:
            if radiometry is not None and radiometry.bands:
                bands = radiometry.bands[:3]
            else:
                try:
                    bands = default_bands(src, scene.file)[0][:3]
                except HashidxError:  # a multi-band file read as RGB through --bands at add time: its first three
                    bands = (1, 2, 3) if src.count >= 3 else (1,)
            dtype = src.dtypes[bands[0] - 1]
        try:
            with warnings.catch_warnings(), Reader(str(scene.file)) as reader:
                warnings.simplefilter("ignore")  # rio-tiler's advice to add overviews, once per tile
                img = reader.tile(x, y, z, indexes=bands, tilesize=256)
        except TileOutsideBounds:
            raise NotFound(f"scene {scene_id}: tile {z}/{x}/{y} is outside it") from None
        if radiometry is not None and radiometry.scale and dtype != "uint8":
            img.rescale(in_range=[tuple(radiometry.scale[b]) for b in range(len(bands))])
        elif dtype != "uint8":
            img.rescale(in_range=[(float(img.data.min()), float(img.data.max()) or 1.0)] * len(bands))
        return bytes(img.render(img_format="PNG"))


def _pixel_type(path: Path) -> str:
    """An upload's pixel type: uint8 for JPEG/PNG, a TIFF's first band's otherwise."""
    if path.suffix != ".tif":
        return "uint8"
    with open_raster(path) as src:
        return str(src.dtypes[0])


def sniff_image(data: bytes) -> tuple[str, int]:
    """The file suffix an upload's bytes make it, and its pixel count; anything but JPEG, PNG or TIFF is refused.
    The header alone is read: a decompression bomb is counted, never decoded."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise Unacceptable("the upload is empty; send the image's bytes", 400)
    try:
        with warnings.catch_warnings(), Image.open(io.BytesIO(data)) as img:
            warnings.simplefilter("ignore")  # PIL's notes on odd headers; what it cannot open is refused below
            fmt, (w, h) = img.format, img.size
        if fmt in UPLOAD_TYPES:
            return UPLOAD_TYPES[fmt], w * h
    except Image.DecompressionBombError as exc:
        raise Unacceptable(f"the image is too large to decode ({exc})", 413) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        pass
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):  # TIFFs PIL cannot open (16-bit, 13 bands)
        try:
            from rasterio.io import MemoryFile

            with MemoryFile(data) as mem, mem.open() as src:
                return ".tif", int(src.width) * int(src.height)
        except Exception:  # rasterio's own errors for bytes GDAL cannot read
            raise Unacceptable("the upload is a damaged TIFF; send a readable JPEG, PNG or GeoTIFF", 415) from None
    raise Unacceptable("the upload is not a JPEG, PNG or TIFF image; send one of those", 415)


def results_records(archive: Archive, results: Results) -> list[dict]:
    """Each query's ranked results as the API shows them: rank, distance, score and the item's record."""
    out = []
    for qi, name in enumerate(results.queries):
        hits: list[dict] = []
        for j, (d, i) in enumerate(zip(results.distances[qi].tolist(), results.ids[qi].tolist())):
            if i < 0:
                continue
            score = None if results.scores is None else round(float(results.scores[qi][j]), 6)
            hits.append({"rank": len(hits) + 1, "distance": int(d), "score": score, **archive.item_record(i)})
        out.append({"query": name, "results": hits})
    return out
