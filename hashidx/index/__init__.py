"""Codes → FAISS binary indexes (flat, IVF, HNSW) with their sidecar, and adding new images to one."""

from hashidx.index.add import add_images
from hashidx.index.indexes import build, build_file, load, save, search

__all__ = ["add_images", "build", "build_file", "load", "save", "search"]
