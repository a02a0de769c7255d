"""An index's items as one GeoParquet file: what GIS tools, pandas and other indexes read without hashidx."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hashidx.codes.codefile import CodeFile, count_rows, item_of
from hashidx.data.labels import label_names
from hashidx.index import indexes as idx
from hashidx.results.geoparquet import geoparquet, item_columns, item_fields, timestamps, utc_timestamp

EXPORT_BLOCK = 65536  # items per row group: bounded memory for an archive of any size


def _export_fields() -> list[tuple[str, Any]]:
    import pyarrow as pa

    place = [("id", pa.int64()), ("path", pa.string()), ("lon", pa.float64()), ("lat", pa.float64())]
    return [*place, ("datetime", utc_timestamp()), *item_fields(), ("code", pa.string())]


def export_items(index_path: str | Path, output: str | Path, block: int = EXPORT_BLOCK) -> int:
    """Every item of the index (its codes file, then the added ones) with its footprint polygon (EPSG:4326; null
    where it has none), source, pixel window, time, label and code (hex, the packed bytes in order), as
    GeoParquet written one block at a time; returns the number of items."""
    sidecar = idx.load_sidecar(index_path)
    with geoparquet(output, _export_fields()) as out:
        for codes_path in idx.code_files_of(index_path, sidecar):
            n = count_rows(codes_path, "hashidx-codes", "codes file")
            for lo in range(0, n, block):
                cf = CodeFile.load(codes_path, slice(lo, lo + block))
                classes = json.loads(str(cf.attrs.get("classes", "[]")))
                labels = label_names(cf.labels, classes)
                root = cf.attrs.get("image_root")
                files = [
                    Path(f) if f else None
                    for f in (cf.files or [str(Path(root) / p) if root else "" for p in cf.paths])
                ]
                items = [item_of(p, lab, f, cf.geo, j) for j, (p, lab, f) in enumerate(zip(cf.paths, labels, files))]
                columns = {
                    "id": cf.ids,
                    "path": list(cf.paths),
                    "lon": [None if it.lonlat is None else it.lonlat[0] for it in items],
                    "lat": [None if it.lonlat is None else it.lonlat[1] for it in items],
                    "datetime": timestamps([it.datetime for it in items]),
                    **item_columns(items, cf.paths, labels, files),
                    "code": [row.tobytes().hex() for row in cf.codes],
                }
                out.write(columns, [it.ring for it in items])
        return out.rows
