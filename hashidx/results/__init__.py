"""Index → results: batch queries written as TSV/JSONL/GeoJSON/(Geo)Parquet, periods of time, item exports, and the
HTML gallery."""

from typing import TYPE_CHECKING

from hashidx.io.lazy import lazy_exports

# The names this subpackage exports; each loads its module on first use (hashidx.io.lazy).
if TYPE_CHECKING:
    from hashidx.results.examples import Examples, search_examples
    from hashidx.results.export import export_items
    from hashidx.results.gallery import write_gallery
    from hashidx.results.period import Period
    from hashidx.results.query import Results, Searcher, run_query, write_results

__all__, __getattr__, __dir__ = lazy_exports(__name__)
