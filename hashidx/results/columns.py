"""The columns of a result row, as every result format writes them (TSV, JSON lines, Parquet, GeoParquet)."""

from __future__ import annotations

from typing import Any

RESULT_FIELDS = ("query", "rank", "id", "path", "distance", "score", "lon", "lat", "datetime")


def result_arrow_fields(when: Any) -> list[tuple[str, Any]]:
    """The RESULT_FIELDS columns' Arrow types, with `when` the type of `datetime` (text in Parquet, a UTC timestamp
    in GeoParquet)."""
    import pyarrow as pa

    types = [pa.string(), pa.int32(), pa.int64(), pa.string(), pa.int32(), pa.float64(), pa.float64(), pa.float64()]
    return [*zip(RESULT_FIELDS, [*types, when])]
