"""Codes → FAISS binary indexes (flat, IVF, HNSW) with their sidecar, and adding new images to one."""

from typing import TYPE_CHECKING

from hashidx.io.lazy import lazy_exports

# The names this subpackage exports; each loads its module on first use (hashidx.io.lazy).
if TYPE_CHECKING:
    from hashidx.index.add import add_images
    from hashidx.index.indexes import build, build_file, load, save, search

__all__, __getattr__, __dir__ = lazy_exports(__name__)
