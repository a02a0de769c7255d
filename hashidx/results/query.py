"""Batch queries: image paths, features or codes → network codes → FAISS search → result rows."""

from __future__ import annotations

import csv
import json
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from hashidx.codes.binary import pack, sign, unpack
from hashidx.codes.codefile import (
    CodeFile,
    CodeTable,
    Item,
    count_rows,
    items_by_id,
    read_ids_codes,
    read_ids_content,
    read_ids_times,
)
from hashidx.data.chips import Tiling
from hashidx.data.labels import label_names
from hashidx.engines.base import Engine
from hashidx.engines.local import LocalEngine
from hashidx.errors import HashidxError
from hashidx.features.runtime import DEFAULT_RUNTIME
from hashidx.index import indexes as idx
from hashidx.index.indexes import check_model
from hashidx.index.shards import ShardStage, merge, shard_rows
from hashidx.io.atomic import atomic_path, sha256_file
from hashidx.results.columns import RESULT_FIELDS, result_arrow_fields
from hashidx.results.period import Period
from hashidx.results.rerank import DEFAULT_RERANK, candidates_for, parse_rerank
from hashidx.results.rerank import rerank as rerank_candidates
from hashidx.version import __version__

FORMATS = ("tsv", "jsonl", "geojson", "parquet", "geoparquet")


@dataclass
class Results:
    """Top-k per query as arrays (ranked by distance, then id); id -1 marks an empty slot."""

    queries: list[str]
    distances: np.ndarray  # int32 (q x k)
    ids: np.ndarray  # int64 (q x k)
    paths: dict[int, str]  # id → database path, for the ids present
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (query, reason) left out by on_error="skip"
    labels: dict[int, str] = field(default_factory=dict)  # id → class name, where the codes file knows it
    files: dict[int, Path] = field(default_factory=dict)  # id → image file, where the codes file knows it
    query_files: list[Path | None] = field(default_factory=list)  # each query's image file, where known
    query_labels: list[str | None] = field(default_factory=list)  # each query's class name, where known
    scores: np.ndarray | None = None  # float (q x k): uᵀv where the results were re-ranked, else None
    rerank: str | int = "none"
    places: dict[int, Item] = field(default_factory=dict)  # id → item, for the ids with a footprint

    def __len__(self) -> int:
        return int((self.ids >= 0).sum())

    @classmethod
    def concat(cls, blocks: list[Results]) -> Results:
        """One Results of consecutive blocks (query_to_file's kept blocks)."""
        if len(blocks) == 1:
            return blocks[0]
        first = blocks[0]
        scores = None if first.scores is None else np.concatenate([b.scores for b in blocks])
        merged: dict[str, dict] = {"paths": {}, "labels": {}, "files": {}, "places": {}}
        for b in blocks:
            merged["paths"].update(b.paths)
            merged["labels"].update(b.labels)
            merged["files"].update(b.files)
            merged["places"].update(b.places)
        return cls(
            [q for b in blocks for q in b.queries],
            np.concatenate([b.distances for b in blocks]),
            np.concatenate([b.ids for b in blocks]),
            merged["paths"],
            [x for b in blocks for x in b.skipped],
            merged["labels"],
            merged["files"],
            [x for b in blocks for x in b.query_files],
            [x for b in blocks for x in b.query_labels],
            scores,
            first.rerank,
            merged["places"],
        )

    def rows(self) -> Iterator[tuple[str, int, int, str, int, float | None, float | None, float | None, str | None]]:
        """(query, rank, id, path, distance, score, lon, lat, datetime) in RESULT_FIELDS order; score None when not
        re-ranked, lon/lat None where the item has no footprint, datetime None where its time is unknown."""
        scores = (
            self.scores.round(6).tolist() if self.scores is not None else [[None] * self.ids.shape[1]] * len(self.ids)
        )
        for name, drow, irow, srow in zip(self.queries, self.distances.tolist(), self.ids.tolist(), scores):
            for rank, (d, i, s) in enumerate(zip(drow, irow, srow), 1):
                if i >= 0:
                    place = self.places.get(i)
                    lon, lat = place.lonlat if place is not None and place.lonlat else (None, None)
                    when = (place.datetime or None) if place is not None else None
                    yield name, rank, i, self.paths.get(i, ""), d, s, lon, lat, when


QUERY_BATCH = 4096  # queries per FAISS search call (and per result block)


def _h5_kind(path: Path) -> str | None:
    if path.suffix.lower() not in (".h5", ".hdf5"):
        return None
    try:
        with h5py.File(path, "r") as f:
            return str(f.attrs.get("kind", ""))
    except FileNotFoundError:
        raise HashidxError(f"{path}: query file not found") from None
    except (OSError, KeyError, RuntimeError, ValueError) as exc:  # what h5py raises for damaged files
        raise HashidxError(
            f"{path}: unreadable HDF5 ({str(exc)[:200]}); pass an image list, a feature cache or a codes file"
        ) from None


@dataclass
class QuerySet:
    """Encoded queries: names, packed codes, and what is known of each (image file, class name)."""

    names: list[str]
    codes: np.ndarray
    skipped: list[tuple[str, str]]
    files: list[Path | None]
    labels: list[str | None]
    real: np.ndarray | None = None  # the network's outputs u (q x bits), where the queries passed it
    source: str = "queries"  # where they came from, for messages
    content: np.ndarray | None = None  # content vectors (q x dims), where the model has a projection

    @classmethod
    def concat(cls, blocks: list[QuerySet]) -> QuerySet:
        """One QuerySet of consecutive blocks of one query file."""
        if len(blocks) == 1:
            return blocks[0]
        real = None if blocks[0].real is None else np.concatenate([b.real for b in blocks])
        content = None if blocks[0].content is None else np.concatenate([b.content for b in blocks])
        return cls(
            [n for b in blocks for n in b.names],
            np.concatenate([b.codes for b in blocks]),
            [x for b in blocks for x in b.skipped],
            [x for b in blocks for x in b.files],
            [x for b in blocks for x in b.labels],
            real,
            blocks[0].source,
            content,
        )


def _no_model(query_file: str | Path) -> HashidxError:
    return HashidxError(
        f"{query_file}: image and feature queries are encoded by a model; pass --model RUN_DIR/model.pt"
    )


class Searcher:
    """An index, and the model that encodes queries for it, loaded once: each query then costs only its
    decoding, the network passes and the search (the warm path for services and notebooks).

    `run_query` is one Searcher answering one query file. Without a model only codes queries are answered,
    and the torch stack is never imported.
    """

    def __init__(
        self,
        index_path: str | Path,
        model_path: str | Path | None = None,
        nprobe: int | None = None,
        allow_model_mismatch: bool = False,
        runtime: str = DEFAULT_RUNTIME,
        tiling: Tiling | None = None,
        bands: str | None = None,
        engine: Engine | None = None,
        shards: int | None = None,
        scale: str | None = None,
    ):
        self.index_path = Path(index_path)
        # How query images are read: cut into chips, bands checked, and another scaling than the model's.
        self.tiling, self.bands, self.scale = tiling, bands, scale
        self.engine = engine or LocalEngine()  # where query images are encoded and the index searched
        self.nprobe = nprobe
        self.sidecar = idx.load_sidecar(index_path)
        if self.sidecar["count"] == 0:
            raise HashidxError(f"{index_path}: the index is empty; rebuild it with 'hashidx build-index CODES.h5'")
        idx.code_files_of(index_path, self.sidecar)  # results name items from them: found now, before any encoding
        # Sharded, no process holds the whole index; replicated on a remote engine, each worker loads its own.
        self.shards = None if shards is None else shard_rows(self.index_path, self.sidecar, shards)
        self._index: Any = None
        if self.shards is None:
            self.index  # read and checked now, before any query is encoded  # noqa: B018
        self.allow_model_mismatch = allow_model_mismatch
        self.encoder: Any = None
        self._table: CodeTable | None = None
        self._content: CodeTable | None = None
        self._has_content: bool | None = None
        self._held: dict[int, Item] | None = None
        self._times: list[tuple[np.ndarray, tuple[str, ...]]] | None = None  # (ids, times) per codes file
        if model_path is not None:
            from hashidx.methods.encoder import load_encoder

            self.encoder = load_encoder(model_path, runtime)
            check_model(
                model_path,
                self.encoder.bits,
                sha256_file(model_path),
                self.sidecar["bits"],
                self.sidecar.get("model_sha256"),
                allow_model_mismatch,
                "model",
            )

    @property
    def bits(self) -> int:
        return int(self.sidecar["bits"])

    @property
    def index(self) -> Any:
        """The FAISS index (a sharded search never reads it in this process)."""
        if self._index is None:
            self._index, self.sidecar = idx.load(self.index_path)
            if self.nprobe is not None:
                idx.set_nprobe(self._index, self.nprobe)
        return self._index

    def items(self, ids: np.ndarray) -> dict[int, Item]:
        """What the index's codes files know of these ids: name, label, image file, footprint (read from the files,
        or from memory once `hold_items` has kept them all)."""
        if self._held is not None:
            return {i: self._held[i] for i in np.unique(ids).tolist() if i in self._held}
        return _items_by_id(self.index_path, self.sidecar, ids)

    def hold_items(self) -> dict[int, Item]:
        """Read every item once and answer later searches from memory: what a long-lived service wants, and a
        batch run does not (an archive's items can outgrow memory)."""
        if self._held is None:
            self._held = _items_by_id(self.index_path, self.sidecar, self.code_table().ids)
        return self._held

    def warm(self) -> Searcher:
        """Load now what the first image query would: the network (and its ONNX twin), and the codes re-ranking
        reads."""
        if self.encoder is not None:
            self.encoder.prepare()
            self.code_table()
            self.has_content  # noqa: B018  # the content vectors too, where the index has them
        return self

    def code_table(self) -> CodeTable:
        """Every indexed item's (ids, packed codes), sorted by id, read once: what re-ranking looks candidates up in."""
        if self._table is None:
            self._table = _code_table(self.index_path, self.sidecar)
        return self._table

    def content_table(self) -> CodeTable:
        """Every indexed item's content vector by id, read once: what `--rerank features` orders ties by."""
        if self._content is None:
            self._content = _content_table(self.index_path, self.sidecar)
        return self._content

    @property
    def has_content(self) -> bool:
        """Whether every codes file of the index holds content vectors (found out once)."""
        if self._has_content is None:
            try:
                self.content_table()
                self._has_content = True
            except HashidxError:
                self._has_content = False
        return self._has_content

    def encode(self, query_file: str | Path, batch_size: int = 8, on_error: str = "fail") -> QuerySet:
        """Queries from an image list or feature cache (encoded by the model) or a codes file; on_error="skip"
        leaves unreadable query images out.

        A query's class is known from a feature cache or codes file, or for an image in a folder named after
        one of the model's classes (the class-folder layout).
        """
        return QuerySet.concat(list(self.encode_blocks(query_file, batch_size, on_error, block=None)))

    def encode_blocks(
        self, query_file: str | Path, batch_size: int = 8, on_error: str = "fail", block: int | None = QUERY_BATCH
    ) -> Iterator[QuerySet]:
        """`encode`, `block` queries at a time, reading only those rows of a codes file or feature cache: a
        query file of millions of rows in bounded memory (an image list is one block)."""
        query_file = Path(query_file)
        kind = _h5_kind(query_file)
        if kind in ("hashidx-codes", "hashidx-features"):
            if kind == "hashidx-features" and self.encoder is None:
                raise _no_model(query_file)
            n = count_rows(query_file, kind, "codes file" if kind == "hashidx-codes" else "feature cache")
            step = block or max(n, 1)
            for lo in range(0, max(n, 1), step):
                rows = slice(lo, lo + step)
                yield (
                    self._codes_block(query_file, rows)
                    if kind == "hashidx-codes"
                    else self._features_block(query_file, rows)
                )
            return
        if self.encoder is None:
            raise _no_model(query_file)
        if kind is not None:
            raise HashidxError(
                f"{query_file}: HDF5 of kind {kind!r}; query with an image list, a feature cache or a codes file"
            )
        yield self.encode_images(query_file, query_file, batch_size, on_error)

    def _codes_block(self, query_file: Path, rows: slice) -> QuerySet:
        cf = CodeFile.load(query_file, rows)  # precomputed codes need no model
        check_model(
            query_file,
            cf.bits,
            cf.attrs.get("model_sha256"),
            self.bits,
            self.sidecar.get("model_sha256"),
            self.allow_model_mismatch,
            "codes",
        )
        root = cf.attrs.get("image_root")
        return QuerySet(
            list(cf.paths),
            cf.codes,
            [],
            [Path(root) / p if root else None for p in cf.paths],
            label_names(cf.labels, json.loads(cf.attrs.get("classes", "[]"))),
            source=str(query_file),
            content=cf.content,
        )

    def _features_block(self, query_file: Path, rows: slice) -> QuerySet:
        from hashidx.features.cache import FeatureCache

        cache = FeatureCache.load(query_file, rows)
        self.encoder.check_features(cache, query_file)
        ds = cache.dataset
        u = self.encoder.embed_features(cache.features)
        return QuerySet(
            list(ds.paths),
            pack(sign(u)),
            [],
            [ds.root / p for p in ds.paths],
            label_names(ds.labels, ds.classes),
            u,
            str(query_file),
            self.encoder.content_of(cache.features),
        )

    def encode_images(
        self,
        items: Sequence[tuple[str, Path]] | str | Path,
        source: str | Path = "queries",
        batch_size: int = 8,
        on_error: str = "fail",
        tiling: Tiling | None = None,
    ) -> QuerySet:
        """Named query images, or an image list, folder or STAC catalog (scenes cut into chips with `tiling`, by
        default the Searcher's), through the model."""
        if self.encoder is None:
            raise _no_model(source)
        from hashidx.methods.inputs import image_inputs

        inputs = image_inputs(
            items if isinstance(items, (str, Path)) else list(items),
            self.encoder.radiometry,
            self.bands,
            tiling or self.tiling,
            self.scale,
        )
        items, self.encoder.radiometry = inputs.items, inputs.radiometry
        names, outputs, skipped = self.encoder.embed_named(
            items, source, batch_size, on_error, self.engine, with_content=True
        )
        u, content = self.encoder.split(outputs)
        files = dict(items)
        classes = set(self.encoder.config.get("classes", []))
        return QuerySet(
            names,
            pack(sign(u)),
            skipped,
            [files[n] for n in names],
            [files[n].parent.name if files[n].parent.name in classes else None for n in names],
            u,
            str(source),
            content,
        )

    def _mode(self, qs: QuerySet, rerank: str | int | None) -> str | int:
        if qs.real is None and rerank == "features" and qs.content is not None:
            return "features"  # codes with content vectors (a run's codes.h5): Hamming order, then content
        if qs.real is None and rerank not in (None, "none"):
            raise HashidxError(
                f"{qs.source}: --rerank needs the queries' network outputs; codes queries have none "
                "(query with images or a feature cache, or use --rerank none)"
            )
        mode = "none" if qs.real is None else parse_rerank(DEFAULT_RERANK if rerank is None else rerank)
        if mode == "features" and qs.content is None:
            raise HashidxError(
                f"{qs.source}: --rerank features orders by the model's content vectors, and this model has none "
                "(a fine-tuned model, or one trained before them): retrain it, or use --rerank ties or a K′"
            )
        return mode

    def rank(
        self, codes: np.ndarray, real: np.ndarray | None, k: int, mode: str | int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """One block of queries against the whole index (or its `allowed` ids): (distances, ids, scores or None),
        re-ranked by uᵀv unless `mode` is none. Under "features" `real` holds each query's u followed by its
        content vector."""
        if mode == "none":
            return (*idx.search(self.index, codes, k, allowed=allowed), None)
        assert real is not None
        dist, ids = idx.search(self.index, codes, candidates_for(k, mode), whole_shell=True, allowed=allowed)
        return self._reranked(dist, ids, self.code_table().lookup(ids), real, k, mode)

    def _reranked(
        self, dist: np.ndarray, ids: np.ndarray, codes: np.ndarray, real: np.ndarray, k: int, mode: str | int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if mode != "features":
            return rerank_candidates(dist, ids, codes, real, k, mode)
        u, query_content = real[:, : self.bits], real[:, self.bits :]
        return rerank_candidates(dist, ids, codes, u, k, mode, query_content, self.content_table().lookup(ids))

    def search(
        self, qs: QuerySet, k: int = 20, rerank: str | int | None = None, period: Period | None = None
    ) -> Results:
        """The k nearest per query, re-ranked by uᵀv where the queries have outputs u (`rerank`: none, ties or
        K′; default DEFAULT_RERANK); codes queries keep the Hamming order. Ties come out by id. With `period`,
        only items acquired in it are returned, in the order they have without it."""
        return next(iter(self.search_many([qs], k, rerank, period)))

    def allowed_ids(self, period: Period) -> np.ndarray:
        """The sorted ids of the items acquired within `period` (refused when there are none)."""
        if self._times is None:
            self._times = [read_ids_times(p) for p in idx.code_files_of(self.index_path, self.sidecar)]
        allowed = period.allowed(self._times)
        if len(allowed) == 0:
            raise HashidxError(
                f"{self.index_path}: no indexed item was acquired {period.describe()}; 'hashidx info "
                f"{self.index_path}' shows the index's time span"
            )
        return allowed

    def search_many(
        self,
        qsets: Iterable[QuerySet],
        k: int = 20,
        rerank: str | int | None = None,
        period: Period | None = None,
    ) -> Iterator[Results]:
        """`search` of each query set in turn, as one stream of QUERY_BATCH blocks through the engine: the index
        replicated on its workers, or split over `shards` of them and merged; the results are the same either way."""
        if k < 1:
            raise HashidxError(f"-k {k}: ask for at least one result")
        if period is not None and self.shards is not None:
            raise HashidxError("--since/--until search the whole index in each worker; drop --shards")
        allowed = None if period is None else self.allowed_ids(period)
        pending: deque[tuple[QuerySet, str | int, int]] = deque()

        def blocks() -> Iterator[tuple]:
            for qs in qsets:
                mode = self._mode(qs, rerank)
                starts = range(0, len(qs.codes), QUERY_BATCH)
                pending.append((qs, mode, len(starts)))
                # Under "features" each query's content vector travels after its u, through any engine's stages.
                outputs = qs.real
                if mode == "features":
                    assert qs.content is not None  # _mode refuses queries without them
                    # A code's ±1 row stands in for u where there is none: uᵀv = bits − 2·distance keeps Hamming order.
                    u = unpack(qs.codes, self.bits).astype(np.float32) if qs.real is None else qs.real
                    outputs = np.hstack([u, qs.content.astype(np.float32)])
                for lo in starts:
                    real = None if mode == "none" or outputs is None else outputs[lo : lo + QUERY_BATCH]
                    yield qs.codes[lo : lo + QUERY_BATCH], real, k, mode, allowed

        done: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = []
        for ranked in self._ranked(blocks()):
            done.append(ranked)
            while pending and pending[0][2] <= len(done):
                qs, mode, n = pending.popleft()
                yield self._results(qs, done[:n], mode)
                done = done[n:]
        while pending:  # query sets of no queries
            qs, mode, n = pending.popleft()
            yield self._results(qs, done[:n], mode)

    def _ranked(self, blocks: Iterator[tuple]) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        if self.shards is None:
            yield from self.engine.map(ReplicaStage(str(self.index_path), self.nprobe, self), blocks)
            return
        reals: deque[tuple[np.ndarray | None, int, str | int]] = deque()

        def requests() -> Iterator[tuple[np.ndarray, int, bool]]:
            for codes, real, k, mode, _ in blocks:
                reals.append((real, k, mode))
                yield codes, (k if mode == "none" else candidates_for(k, mode)), mode != "none"

        stages = [ShardStage(parts) for parts in self.shards]
        for parts in self.engine.scatter(stages, requests()):
            real, k, mode = reals.popleft()
            if mode == "none":
                dist, ids, _ = merge(parts, k, self.sidecar["count"])
                yield dist, ids, None
                continue
            dist, ids, codes = merge(parts, candidates_for(k, mode), self.sidecar["count"], whole_shell=True)
            assert real is not None  # a re-ranking search has the queries' outputs
            yield self._reranked(dist, ids, codes, real, k, mode)

    def _results(self, qs: QuerySet, ranked: list, mode: str | int) -> Results:
        if ranked:
            dist, ids = np.concatenate([b[0] for b in ranked]), np.concatenate([b[1] for b in ranked])
        else:
            dist, ids = np.empty((0, 0), np.int32), np.empty((0, 0), np.int64)
        scores = None if mode == "none" or not ranked else np.concatenate([b[2] for b in ranked])
        return self.results_of(qs, dist, ids, scores, mode)

    def results_of(
        self, qs: QuerySet, dist: np.ndarray, ids: np.ndarray, scores: np.ndarray | None, mode: str | int
    ) -> Results:
        """Ranked ids of `qs`'s queries as Results, with what the codes files know of each item."""
        items = self.items(ids)
        return Results(
            qs.names,
            dist,
            ids,
            {i: it.path for i, it in items.items()},
            qs.skipped,
            {i: it.label for i, it in items.items() if it.label is not None},
            {i: it.file for i, it in items.items() if it.file is not None},
            qs.files,
            qs.labels,
            scores,
            mode,
            {
                i: it
                for i, it in items.items()
                if it.datetime or (it.lonlat is not None and np.isfinite(it.lonlat).all())
            },
        )


class _Ranker:
    """A Searcher's `rank` as an engine worker: one block of queries in, its ranked results out."""

    def __init__(self, searcher: Searcher):
        self.searcher = searcher

    def load(self, block: tuple) -> tuple:
        return block

    def run(self, block: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        return self.searcher.rank(*block)


@dataclass
class ReplicaStage:
    """The recipe of a replica: a worker that loads the whole index (and its codes, to re-rank) once. `searcher`,
    the one already open in this process, is reused there and never shipped."""

    index_path: str
    nprobe: int | None = None
    searcher: Searcher | None = field(default=None, compare=False, repr=False)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "searcher": None}

    def build(self, threads: int | None = None, device: str = "cpu") -> _Ranker:
        if self.searcher is not None and threads is None:
            return _Ranker(self.searcher)
        if threads is not None:
            import faiss

            faiss.omp_set_num_threads(threads)
        # The driver checked the model against the index; a replica answers codes only.
        return _Ranker(Searcher(self.index_path, nprobe=self.nprobe, allow_model_mismatch=True))


@dataclass
class QueryTotals:
    """What a streamed query wrote: result rows, queries, the queries left out, and (when kept) the results."""

    results: int = 0
    queries: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    kept: list[Results] = field(default_factory=list)


def query_to_file(
    searcher: Searcher,
    query_file: str | Path,
    output: str | Path,
    fmt: str = "tsv",
    k: int = 20,
    batch_size: int = 8,
    on_error: str = "fail",
    rerank: str | int | None = None,
    keep: bool = False,
    period: Period | None = None,
) -> QueryTotals:
    """Answer a query file into `output` block by block (peak memory: one block, unless `keep` collects the
    results, e.g. for a gallery), only items acquired in `period` where given; returns the totals."""
    if k < 1:
        raise HashidxError(f"-k {k}: ask for at least one result")
    totals = QueryTotals()

    def blocks() -> Iterator[Results]:
        queries = searcher.encode_blocks(query_file, batch_size, on_error)
        for res in searcher.search_many(queries, k, rerank, period):
            totals.results += len(res)
            totals.queries += len(res.queries)
            totals.skipped += res.skipped
            if keep:
                totals.kept.append(res)
            yield res

    write_results(blocks(), output, fmt)
    return totals


def run_query(
    index_path: str | Path,
    query_file: str | Path,
    model_path: str | Path | None = None,
    k: int = 20,
    nprobe: int | None = None,
    batch_size: int = 8,
    allow_model_mismatch: bool = False,
    on_error: str = "fail",
    rerank: str | int | None = None,
    runtime: str = DEFAULT_RUNTIME,
) -> Results:
    """Encode the queries (unless they are codes already) and search the index; k results per query.

    Queries that pass the network are re-ranked by uᵀv (`rerank`: none, ties or K′; default
    DEFAULT_RERANK); codes queries have no u and keep the Hamming order. Ties come out by id.
    """
    if k < 1:  # known before any query is encoded
        raise HashidxError(f"-k {k}: ask for at least one result")
    searcher = Searcher(index_path, model_path, nprobe, allow_model_mismatch, runtime)
    return searcher.search(searcher.encode(query_file, batch_size, on_error), k, rerank)


def _code_table(index_path: str | Path, sidecar: dict) -> CodeTable:
    """Every indexed item's packed code by id: what re-ranking reads candidates' codes from."""
    return CodeTable.of(read_ids_codes(p) for p in idx.code_files_of(index_path, sidecar))


def _content_table(index_path: str | Path, sidecar: dict) -> CodeTable:
    """Every indexed item's content vector by id; refused when a codes file of the index holds none."""
    parts = []
    for path in idx.code_files_of(index_path, sidecar):
        part = read_ids_content(path)
        if part is None:
            raise HashidxError(
                f"{path}: holds no content vectors for --rerank features (written before they were, or by a "
                "model without them); retrain and rebuild the index, or use --rerank ties or a K′"
            )
        parts.append(part)
    return CodeTable.of(parts)


def _items_by_id(index_path: str | Path, sidecar: dict, ids: np.ndarray) -> dict[int, Item]:
    """The returned ids only, from the index's codes file and its added items (neither read whole)."""
    out: dict[int, Item] = {}
    for codes_path in idx.code_files_of(index_path, sidecar):
        out.update(items_by_id(codes_path, ids[ids >= 0]))
    return out


def write_results(results: Results | Iterable[Results], path: str | Path, fmt: str = "tsv") -> None:
    """TSV with a header row, JSON lines, a GeoJSON FeatureCollection (results.geojson), Parquet or GeoParquet
    (footprints as WKB polygons, with the `geo` metadata GIS tools read); written atomically.
    Blocks of results (as query_to_file makes them) are written as they come, so memory stays bounded by one
    block."""
    if fmt not in FORMATS:
        raise HashidxError(f"unknown result format {fmt!r}; use {', '.join(FORMATS)}")
    blocks = [results] if isinstance(results, Results) else results
    if fmt == "parquet":
        write_parquet(blocks, path)
        return
    if fmt == "geoparquet":
        from hashidx.results.geoparquet import write_results_geoparquet

        write_results_geoparquet(blocks, path)
        return
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        if fmt == "geojson":
            write_geojson(blocks, fh)
            return
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        if fmt == "tsv":
            w.writerow(RESULT_FIELDS)
        for block in blocks:
            if fmt == "tsv":
                w.writerows(block.rows())
            else:
                fh.writelines(json.dumps(dict(zip(RESULT_FIELDS, row))) + "\n" for row in block.rows())


def _parquet_schema() -> Any:
    import pyarrow as pa

    return pa.schema(result_arrow_fields(pa.string()))


def write_parquet(blocks: Iterable[Results], path: str | Path) -> None:
    """The RESULT_FIELDS columns as Parquet, one row group per block of results (pandas, DuckDB and Spark read
    it without parsing text); written atomically."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise HashidxError("--format parquet needs pyarrow: pip install 'hashidx[parquet]' (or hashidx[ray])") from None
    schema = _parquet_schema()
    with atomic_path(path) as tmp, pq.ParquetWriter(str(tmp), schema) as writer:
        for block in blocks:
            columns: list = list(zip(*block.rows())) or [[] for _ in RESULT_FIELDS]
            writer.write_table(pa.table(dict(zip(RESULT_FIELDS, columns)), schema=schema))


def write_geojson(blocks: Iterable[Results], fh: Any) -> int:
    """One Feature per result with a footprint (feature ids 0, 1, 2...): its polygon in EPSG:4326 (the four corners
    reprojected), and the query, rank, item_id, distance, score, path, source file and pixel window as properties.
    Results without a footprint are left out (the TSV keeps them); returns how many were written."""
    from hashidx.data.rasters import split_chip

    # A foreign member (RFC 7946 §6.1) that `hashidx info` knows the file by; GIS readers skip it.
    fh.write('{"type": "FeatureCollection", "generator": ' + json.dumps(f"hashidx {__version__}") + ', "features": [')
    n = 0
    for block in blocks:
        for name, rank, i, path, d, score, *_ in block.rows():
            place = block.places.get(i)
            if place is None or place.ring is None:
                continue
            source, window = split_chip(place.file if place.file is not None else path)
            feature = {
                "type": "Feature",
                # One id per feature (GDAL and QGIS take it as the FID); an item matching several queries appears
                # once per match, so the item's own id is the item_id property.
                "id": n,
                "geometry": {"type": "Polygon", "coordinates": [place.ring]},
                "properties": {
                    "query": name,
                    "rank": rank,
                    "item_id": i,
                    "distance": d,
                    "score": score,
                    "path": path,
                    "source": str(source),
                    "window": None if window is None else [window.col, window.row, window.width, window.height],
                    "label": block.labels.get(i),
                    "crs": place.crs,
                    "datetime": place.datetime or None,
                },
            }
            fh.write(("," if n else "") + "\n" + json.dumps(feature))
            n += 1
    fh.write("\n]}\n")
    return n
