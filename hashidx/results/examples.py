"""Several examples at once: "more like these, not like those", as one ranked list.

Two rules, measured side by side in benchmarks/feedback.py (docs: Learning from marks):
- `mean`: the examples combine in u-space, q = mean(u of the positives) − mean(u of the negatives); the index is
  searched with sgn(q) and the candidates re-ranked by qᵀv (an indexed example whose u is not known stands in with
  its ±1 code);
- `fusion`: each example is searched on its own, and the lists fuse by reciprocal rank (Cormack et al., SIGIR
  2009), the positives' lists adding and the negatives' subtracting.
Items in `exclude` (marked negatives and their duplicates) never come back, whatever the rule.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hashidx.codes.binary import hamming, pack, sign, unpack
from hashidx.codes.codefile import positions
from hashidx.errors import HashidxError
from hashidx.results.period import Period
from hashidx.results.query import QuerySet, Results, Searcher

RULES = ("mean", "fusion")
DEFAULT_RULE = "fusion"  # measured on validation seeds: benchmarks/feedback.py --validate
FUSION_K = 60  # the reciprocal-rank constant of Cormack et al.
FUSION_DEPTH = 200  # how deep each example's own list is read


@dataclass
class Examples:
    """One multi-example query: each example's continuous output u (or its ±1 code), and ids never to return."""

    name: str
    positive: np.ndarray  # (p x bits) float
    negative: np.ndarray  # (n x bits) float, maybe 0 rows
    exclude: set[int] = field(default_factory=set)
    file: Path | None = None  # the first positive's image, for galleries
    # Content vectors of the positives then the negatives (features.content), where every example has one.
    content: np.ndarray | None = None

    def __post_init__(self) -> None:
        if len(self.positive) == 0:
            raise HashidxError(f"query {self.name!r}: give at least one positive example")

    def content_target(self) -> np.ndarray | None:
        """The positives' mean content vector, unit length (1 x dims), for `--rerank features`."""
        if self.content is None:
            return None
        mean = self.content[: len(self.positive)].astype(np.float32).mean(axis=0)
        return (mean / max(float(np.linalg.norm(mean)), 1e-12))[None, :].astype(np.float16)

    def target(self) -> np.ndarray:
        """q = mean(u+) − mean(u−): the u-space form of the examples (1 x bits)."""
        q = self.positive.mean(axis=0)
        if len(self.negative):
            q = q - self.negative.mean(axis=0)
        return q[None, :].astype(np.float32)


def indexed_examples(searcher: Searcher, ids: Iterable[int]) -> np.ndarray:
    """Indexed items as examples: their codes as ±1 rows (a learned database code has no u of its own)."""
    ids = np.asarray(list(ids), dtype=np.int64)
    table = searcher.code_table()
    where, found = positions(table.ids, ids)
    if not found.all():
        raise HashidxError(
            f"example id {int(ids[~found][0])}: not in the index (ids come from results or 'hashidx info')"
        )
    return unpack(table.codes[where], searcher.bits).astype(np.float32)


def indexed_content(searcher: Searcher, ids: Iterable[int]) -> np.ndarray | None:
    """Indexed items' content vectors (ids checked by `indexed_examples`), or None where the index holds none."""
    if not searcher.has_content:
        return None
    table = searcher.content_table()
    return table.codes[positions(table.ids, np.asarray(list(ids), dtype=np.int64))[0]]


def search_examples(
    searcher: Searcher,
    examples: Examples,
    k: int = 20,
    rule: str = DEFAULT_RULE,
    rerank: str | int | None = None,
    period: Period | None = None,
) -> Results:
    """The k best items for the examples under `rule`; `rerank` as for `Searcher.search` (each example's own list
    under `fusion`, the combined one under `mean`); only items acquired in `period` where given."""
    if rule not in RULES:
        raise HashidxError(f"--rule {rule}: choose one of {', '.join(RULES)}")
    q = examples.target()
    qs = QuerySet([examples.name], pack(sign(q)), [], [examples.file], [None], q, "examples", examples.content_target())
    room = min(k + len(examples.exclude), searcher.index.ntotal)
    rows = np.concatenate([examples.positive, examples.negative]).astype(np.float32)
    # ±1 codes re-rank an example's own list to its Hamming order: nothing to gain, but content can order ties
    own_rerank = "none" if np.isin(rows, (-1.0, 1.0)).all() and rerank != "features" else rerank
    if len(rows) == 1:  # both rules are the example's own list
        return left_out(searcher.search(qs, room, own_rerank, period), examples.exclude, k)
    if rule == "mean":
        return left_out(searcher.search(qs, room, rerank, period), examples.exclude, k)
    return _fused(searcher, examples, rows, qs, k, own_rerank, period)


def _fused(
    searcher: Searcher,
    examples: Examples,
    rows: np.ndarray,
    qs: QuerySet,
    k: int,
    rerank: str | int | None,
    period: Period | None = None,
) -> Results:
    n = len(rows)
    each = QuerySet(
        [str(i) for i in range(n)], pack(sign(rows)), [], [None] * n, [None] * n, rows, "examples", examples.content
    )
    depth = min(max(FUSION_DEPTH, k + len(examples.exclude)), searcher.index.ntotal)
    lists = searcher.search(each, depth, rerank, period).ids
    score: dict[int, float] = {}
    for e, row in enumerate(lists.tolist()):
        weight = 1.0 if e < len(examples.positive) else -1.0
        for r, i in enumerate(row):
            if i >= 0:
                score[i] = score.get(i, 0.0) + weight / (FUSION_K + r + 1)
    ranked = sorted((i for i in score if i not in examples.exclude), key=lambda i: (-score[i], i))[:k]
    # Distances are to the combined code, as the mean rule reports them; the order is the fused one.
    ids = np.asarray([ranked], dtype=np.int64).reshape(1, -1)
    distance = hamming(qs.codes, searcher.code_table().lookup(ids[0]))
    return searcher.results_of(qs, distance, ids, np.asarray([[score[i] for i in ranked]], np.float64), "fusion")


def left_out(results: Results, ids: set[int], k: int) -> Results:
    """The results without `ids`, k kept per query (scores and distances follow their items)."""
    keep = [[j for j, i in enumerate(row) if i >= 0 and i not in ids][:k] for row in results.ids.tolist()]
    width = max((len(r) for r in keep), default=0)
    rows = np.arange(len(keep))[:, None]
    cols = np.asarray([r + [0] * (width - len(r)) for r in keep], np.int64).reshape(len(keep), width)
    filled = np.arange(width)[None, :] < np.asarray([len(r) for r in keep])[:, None]
    results.ids = np.where(filled, results.ids[rows, cols], -1)
    results.distances = np.where(filled, results.distances[rows, cols], 0).astype(results.distances.dtype)
    if results.scores is not None:
        results.scores = np.where(filled, results.scores[rows, cols], np.nan)
    return results


def examples_of(
    searcher: Searcher, name: str, positive: list[str], negative: list[str], folder: Path, batch_size: int = 8
) -> Examples:
    """One query's examples as the index sees them: an id's code (and stored content vector), an image's u (and
    content vector) through the model."""
    dims = searcher.encoder.content.dims if searcher.encoder and searcher.encoder.content else 0

    def vectors(examples: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
        rows = np.empty((len(examples), searcher.bits), np.float32)
        ids = [j for j, e in enumerate(examples) if e.isdigit()]
        rows[ids] = indexed_examples(searcher, [int(examples[j]) for j in ids])
        # Content for every example or none: the index's for ids, the model's for images, when both have it.
        stored = indexed_content(searcher, [int(examples[j]) for j in ids]) if dims else None
        content = None
        if stored is not None and stored.shape[1] == dims:
            content = np.zeros((len(examples), dims), np.float16)
            content[ids] = stored
        images = [j for j, e in enumerate(examples) if not e.isdigit()]
        if images:
            qs = searcher.encode_images(
                [(examples[j], (folder / examples[j]).resolve()) for j in images], f"query {name!r}", batch_size
            )
            if len(qs.names) != len(images):  # a chip-cut scene gives several rows: one example is one image
                raise HashidxError(f"query {name!r}: an image example must be one image or chip, not a scene")
            assert qs.real is not None
            rows[images] = qs.real
            if content is not None and qs.content is not None:
                content[images] = qs.content
        return rows, content

    exclude = {int(e) for e in negative if e.isdigit()}
    first = positive[0]
    (pos, pos_content), (neg, neg_content) = vectors(positive), vectors(negative)
    return Examples(
        name,
        pos,
        neg,
        exclude,
        None if first.isdigit() else (folder / first).resolve(),
        None if pos_content is None or neg_content is None else np.concatenate([pos_content, neg_content]),
    )


def query_examples_file(
    searcher: Searcher,
    queries: list[tuple[str, list[str], list[str]]],
    folder: Path,
    k: int = 20,
    rule: str = DEFAULT_RULE,
    rerank: str | int | None = None,
    batch_size: int = 8,
    period: Period | None = None,
) -> list[Results]:
    """Each multi-example query of an examples file, answered in file order (only items acquired in `period`)."""
    return [
        search_examples(searcher, examples_of(searcher, name, pos, neg, folder, batch_size), k, rule, rerank, period)
        for name, pos, neg in queries
    ]
