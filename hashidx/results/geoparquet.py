"""GeoParquet 1.1 files (pyarrow, shapely): one WKB footprint polygon in EPSG:4326 per row, the `geo` metadata
that geopandas, GDAL's Parquet driver and QGIS read, written one row group per block while a stream runs."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hashidx.errors import HashidxError
from hashidx.io.atomic import atomic_path
from hashidx.results.columns import result_arrow_fields
from hashidx.version import __version__

GEOPARQUET_VERSION = "1.1.0"


def _libraries() -> tuple[Any, Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
        import shapely
    except ImportError:
        raise HashidxError("GeoParquet needs pyarrow and shapely: pip install 'hashidx[geoparquet]'") from None
    return pa, pq, shapely


def timestamps(values: Sequence[str | None]) -> Any:
    """ISO 8601 UTC strings ("" or None: unknown) as an Arrow timestamp column in UTC."""
    pa, _, _ = _libraries()
    parsed = np.array([v.removesuffix("Z") if v else "NaT" for v in values], dtype="datetime64[us]")
    return pa.array(parsed, type=pa.timestamp("us", tz="UTC"), mask=np.isnat(parsed))


class GeoParquetWriter:
    """Rows with a `geometry` of (lon, lat) rings (None: no footprint), block by block; `bbox` and the geometry
    types are gathered as the blocks come and written into the footer's `geo` metadata when it closes."""

    def __init__(self, writer: Any, schema: Any):
        self.writer, self.schema = writer, schema
        self.bbox = [np.inf, np.inf, -np.inf, -np.inf]
        self.rows = 0

    def write(self, columns: dict[str, Any], rings: Sequence[list[list[float]] | None]) -> None:
        pa, _, shapely = _libraries()
        geoms = [None if r is None else shapely.Polygon(r) for r in rings]
        wkb = [None if g is None else shapely.to_wkb(g, output_dimension=2) for g in geoms]
        for r in rings:
            if r is not None:
                a = np.asarray(r)
                self.bbox = [
                    min(self.bbox[0], a[:, 0].min()),
                    min(self.bbox[1], a[:, 1].min()),
                    max(self.bbox[2], a[:, 0].max()),
                    max(self.bbox[3], a[:, 1].max()),
                ]
        table = pa.table({**columns, "geometry": pa.array(wkb, pa.binary())}, schema=self.schema)
        self.writer.write_table(table)
        self.rows += len(rings)

    def geo(self) -> dict:
        column: dict[str, Any] = {"encoding": "WKB", "geometry_types": ["Polygon"]}
        if np.isfinite(self.bbox).all():
            column["bbox"] = [round(float(x), 8) for x in self.bbox]
        # No "crs" member: GeoParquet reads its absence as OGC:CRS84, longitude/latitude on WGS 84.
        return {"version": GEOPARQUET_VERSION, "primary_column": "geometry", "columns": {"geometry": column}}


@contextlib.contextmanager
def geoparquet(path: str | Path, fields: Sequence[tuple[str, Any]]) -> Iterator[GeoParquetWriter]:
    """A GeoParquet file of `fields` (name, Arrow type) plus `geometry`, written under a temporary name and renamed
    when the block that writes it ends without an error."""
    pa, pq, _ = _libraries()
    schema = pa.schema([*fields, ("geometry", pa.binary())], metadata={"creator": f"hashidx {__version__}"})
    with atomic_path(path) as tmp, pq.ParquetWriter(str(tmp), schema) as writer:
        out = GeoParquetWriter(writer, schema)
        yield out
        writer.add_key_value_metadata({"geo": json.dumps(out.geo())})


def item_fields() -> list[tuple[str, Any]]:
    """The columns `item_columns` fills, after an item's time (a UTC timestamp)."""
    pa, _, _ = _libraries()
    return [
        ("label", pa.string()),
        ("source", pa.string()),
        ("window", pa.list_(pa.int32())),
        ("crs", pa.string()),
        ("stac_item", pa.string()),
        ("collection", pa.string()),
    ]


def utc_timestamp() -> Any:
    pa, _, _ = _libraries()
    return pa.timestamp("us", tz="UTC")


def result_fields() -> list[tuple[str, Any]]:
    """The result rows' columns (columns.RESULT_FIELDS, time as a timestamp), then the items'."""
    return [*result_arrow_fields(utc_timestamp()), *item_fields()]


def item_columns(
    items: Sequence[Any], paths: Sequence[str], labels: Sequence[str | None], files: Sequence[Path | None]
) -> dict[str, Any]:
    """The columns every row of an item has: label, source file and pixel window (from its file where known, else
    its stored path), and, from its footprint (a codefile.Item, None where it has none), CRS, STAC item and
    collection."""
    from hashidx.data.rasters import split_chip

    source, window = [], []
    for file, path in zip(files, paths):
        scene, win = split_chip(file if file is not None else path)
        source.append(str(scene))
        window.append(None if win is None else [win.col, win.row, win.width, win.height])

    def text(name: str) -> list[str | None]:
        return [(getattr(it, name) or None) if it is not None else None for it in items]

    return {
        "label": list(labels),
        "source": source,
        "window": window,
        "crs": text("crs"),
        "stac_item": text("item"),
        "collection": text("collection"),
    }


def write_results_geoparquet(blocks: Any, path: str | Path) -> int:
    """Result rows (query.Results blocks) as GeoParquet, one row group per block; rows without a footprint keep a
    null geometry. Returns how many rows were written."""
    with geoparquet(path, result_fields()) as out:
        for block in blocks:
            rows = list(block.rows())
            items = [block.places.get(r[2]) for r in rows]
            if rows:
                query, rank, ids, paths, dist, score, lon, lat, when = (list(c) for c in zip(*rows))
            else:
                query = rank = ids = paths = dist = score = lon = lat = when = []
            columns = {
                "query": query,
                "rank": rank,
                "id": ids,
                "path": paths,
                "distance": dist,
                "score": score,
                "lon": lon,
                "lat": lat,
                "datetime": timestamps(when),
                **item_columns(items, paths, [block.labels.get(i) for i in ids], [block.files.get(i) for i in ids]),
            }
            out.write(columns, [None if it is None else it.ring for it in items])
        return out.rows
