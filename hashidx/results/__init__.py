"""Index → results: batch queries written as TSV/JSONL, and the HTML gallery."""

from hashidx.results.gallery import write_gallery
from hashidx.results.query import Results, run_query, write_results

__all__ = ["Results", "run_query", "write_gallery", "write_results"]
