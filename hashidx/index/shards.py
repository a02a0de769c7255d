"""An index split into shards, each searched by its own worker, the per-query lists merged by (distance, id).

A shard is a contiguous range of the rows of the index's codes files (the codes it was built from, then the
added ones), read by its worker alone: no process ever holds the whole database. Each shard is searched
exhaustively (a flat index), so the merged top k is exactly the flat index's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from hashidx.codes.codefile import CodeTable, count_rows, read_ids_codes
from hashidx.errors import HashidxError
from hashidx.index import indexes as idx

Candidates = tuple[np.ndarray, np.ndarray, np.ndarray]  # distances, ids, packed codes (q x width x bytes)


def shard_rows(index_path: str | Path, sidecar: dict, shards: int) -> list[list[tuple[Path, slice]]]:
    """For each of `shards` shards, the (codes file, rows) it holds: near-equal contiguous ranges of all rows."""
    if sidecar.get("index_type", "flat") != "flat":
        raise HashidxError(
            f"{index_path}: --shards splits flat indexes (exhaustive per shard, exact when merged); this one is "
            f"{sidecar['index_type']}: build a flat index ('hashidx build-index --type flat') or drop --shards"
        )
    files = idx.code_files_of(index_path, sidecar)
    counts = [count_rows(p, "hashidx-codes", "codes file") for p in files]
    total = sum(counts)
    if total != sidecar["count"]:
        raise HashidxError(
            f"{index_path}: its codes files hold {total} codes but the index {sidecar['count']}; rebuild the index"
        )
    if not 1 <= shards <= total:
        raise HashidxError(f"--shards {shards}: use 1 to {total} (the index holds {total} codes)")
    bounds = np.linspace(0, total, shards + 1).round().astype(int)
    starts = np.cumsum([0, *counts])
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        parts = []
        for path, a, b in zip(files, starts[:-1], starts[1:]):
            first, last = max(lo, a), min(hi, b)
            if first < last:
                parts.append((path, slice(int(first - a), int(last - a))))
        out.append(parts)
    return out


class ShardWorker:
    """One shard as a flat index: the top k (or the tie shell at the k-th) per query, with the candidates' codes."""

    def __init__(self, table: CodeTable):
        self.index, _ = idx.build(table.codes, table.ids, "flat")
        self.table = table

    def load(self, chunk: tuple[np.ndarray, int, bool]) -> tuple[np.ndarray, int, bool]:
        return chunk

    def run(self, chunk: tuple[np.ndarray, int, bool]) -> Candidates:
        """`whole_shell` (a re-ranking search) also returns the candidates' codes, which the re-ranking scores."""
        queries, k, whole_shell = chunk
        dist, ids = idx.search(self.index, queries, k, whole_shell)
        if not whole_shell:
            return dist, ids, np.empty((*ids.shape, 0), np.uint8)
        return dist, ids, self.table.lookup(ids)


@dataclass
class ShardStage:
    """The recipe of one shard's worker: which rows of which codes files it reads."""

    parts: list[tuple[Path, slice]]

    def build(self, threads: int | None = None, device: str = "cpu") -> ShardWorker:
        if threads is not None:
            faiss.omp_set_num_threads(threads)
        return ShardWorker(CodeTable.of(read_ids_codes(path, rows) for path, rows in self.parts))


def merge(parts: list[Candidates], k: int, ntotal: int, whole_shell: bool = False) -> Candidates:
    """The shards' candidate lists of one block of queries as one, cut as a search of the whole index (of
    `ntotal` codes) cuts: each shard's top k by (distance, id) holds every item of the global top k it owns."""
    dist = np.concatenate([p[0] for p in parts], axis=1)
    ids = np.concatenate([p[1] for p in parts], axis=1)
    codes = np.concatenate([p[2] for p in parts], axis=1)
    dist, ids, cols = idx.top_k(dist, ids, min(k, ntotal), whole_shell)
    return dist, ids, np.take_along_axis(codes, cols[:, :, None], 1)
