"""The soft pairwise similarity S (m x n) between the sampled pool and the database, never built densely.

S_ij = 1 when items i and j share a label, else 0; the soft form is (1+r)S - r with
r = #similar / #dissimilar pairs, so dissimilar pairs target -r instead of 0.

Every class offers the same products, each in bounded memory however large n is:
    row_keys()                  equal keys ⇒ equal columns of S (single-label: the label)
    t_rows(U, rows)             (SᵀU)[rows]: the V step's linear term
    matmul(V, rows, weights)    S[:, rows]·(weights·V[rows]) (m x c): the network's pairwise targets
    row_square_sums()           Σ_j S_ij² (m,)
Database items with equal keys and equal codes are interchangeable in every product, so
`row_groups` lets the solver work on the distinct (key, code) rows: a few hundred once codes
settle, instead of n.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

# Entries of one m x chunk block of S for multi-hot labels: 4M float32 = 16 MB.
BLOCK_ENTRIES = 1 << 22
# Rows of V swept at a time (1 MB of float64 at 64 bits: stays in cache for all c bit updates).
ROW_CHUNK = 2048
# Rows of V read at a time for sums and products (16 MB of float64 at 64 bits).
READ_CHUNK = 32768


def _soft_ratio(n_similar: float, n_pairs: float) -> float:
    n_dissimilar = n_pairs - n_similar
    return n_similar / n_dissimilar if n_dissimilar > 0 else 0.0


def gram(v: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Vᵀ diag(weights) V (c x c, float64), read in row blocks: exact for ±1 codes and integer weights."""
    out = np.zeros((v.shape[1], v.shape[1]), dtype=np.float64)
    for rows, block in _weighted_blocks(v, None, weights):
        out += v[rows].astype(np.float64).T @ block
    return out


def class_sums(labels: np.ndarray, x: np.ndarray, n_classes: int) -> np.ndarray:
    """Y ᵀX (C x c) for integer labels: one bincount per column, no n x C one-hot."""
    return np.stack([np.bincount(labels, weights=x[:, k], minlength=n_classes) for k in range(x.shape[1])], axis=1)


class LabelSimilarity:
    """Single-label S by label algebra: every product costs O((m+n)c + Cc), never O(mn)."""

    def __init__(self, rows: np.ndarray, cols: np.ndarray, n_classes: int):
        self.rows, self.cols, self.n_classes = rows, cols, n_classes
        self.col_counts = np.bincount(cols, minlength=n_classes).astype(np.float64)
        self.r = _soft_ratio(float(self.col_counts[rows].sum()), float(len(rows)) * len(cols))

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.rows), len(self.cols)

    def row_keys(self) -> np.ndarray:
        return self.cols

    def t_rows(self, u: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """(Sᵀ U)[rows] for U (m x c): (1+r)·Y(Y_Ωᵀ U) − r·1(1ᵀ U), rows picked from C x c class sums."""
        sums = (1 + self.r) * class_sums(self.rows, u, self.n_classes) - self.r * u.sum(axis=0, dtype=np.float64)
        return sums[self.cols[rows]]

    def matmul(self, v: np.ndarray, rows: np.ndarray | None = None, weights: np.ndarray | None = None) -> np.ndarray:
        """S[:, rows]·(weights·V[rows]) (m x c); all rows with unit weights by default."""
        sums = np.zeros((self.n_classes, v.shape[1]), dtype=np.float64)
        for cols, block in _weighted_blocks(v, rows, weights):
            sums += class_sums(self.cols[cols], block, self.n_classes)
        return (1 + self.r) * sums[self.rows] - self.r * sums.sum(axis=0)

    def row_square_sums(self) -> np.ndarray:
        """Σ_j S_ij² for every sampled row."""
        same = self.col_counts[self.rows]
        return same + self.r**2 * (len(self.cols) - same)

    def dense(self) -> np.ndarray:
        """The m x n matrix itself: for tests and tiny problems only."""
        s = (self.rows[:, None] == self.cols[None, :]).astype(np.float64)
        return (1 + self.r) * s - self.r


class MultiLabelSimilarity:
    """Multi-hot S in column blocks of at most `block_entries` entries: O(m·n·C) time, O(block) memory.

    Two items are similar (A_ij = 1) when they share any label; `graded` makes A_ij the Jaccard index
    of their label sets instead. S = (1+r)A − r with r = ΣA / Σ(1−A). Building it makes one pass over
    the blocks for r and Σ_j S_ij²; each product makes one more.
    """

    def __init__(self, rows: np.ndarray, cols: np.ndarray, block_entries: int = BLOCK_ENTRIES, graded: bool = False):
        self.rows = np.asarray(rows, dtype=np.float32)
        self.cols = np.asarray(cols, dtype=np.float32)
        self.graded = graded
        self.chunk = max(1, block_entries // max(1, len(self.rows)))
        self.row_sum = np.zeros(len(self.rows), dtype=np.float64)
        self.row_sq = np.zeros(len(self.rows), dtype=np.float64)
        for lo in range(0, len(self.cols), self.chunk):
            a = self._hard(slice(lo, lo + self.chunk))
            self.row_sum += a.sum(axis=1)
            self.row_sq += (a * a).sum(axis=1)
        self.r = _soft_ratio(float(self.row_sum.sum()), float(len(self.rows)) * len(self.cols))
        self._keys: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.rows), len(self.cols)

    def _hard(self, cols) -> np.ndarray:
        """A[:, cols] (m x |cols|, float64): 0/1, or the Jaccard index when graded; S = (1+r)A − r."""
        shared = (self.rows @ self.cols[cols].T).astype(np.float64)  # small integers: exact in float32
        if not self.graded:
            return (shared > 0).astype(np.float64)
        union = (
            self.rows.sum(axis=1, dtype=np.float64)[:, None] + self.cols[cols].sum(axis=1, dtype=np.float64) - shared
        )
        return np.divide(shared, union, out=np.zeros(shared.shape, dtype=np.float64), where=union > 0)

    def row_keys(self) -> np.ndarray:
        if self._keys is None:
            self._keys = np.unique(self.cols, axis=0, return_inverse=True)[1].ravel()
        return self._keys

    def t_rows(self, u: np.ndarray, rows: np.ndarray) -> np.ndarray:
        u64 = u.astype(np.float64)
        out = np.empty((len(rows), u.shape[1]), dtype=np.float64)
        for lo in range(0, len(rows), self.chunk):
            out[lo : lo + self.chunk] = self._hard(rows[lo : lo + self.chunk]).T @ u64
        return (1 + self.r) * out - self.r * u64.sum(axis=0)

    def matmul(self, v: np.ndarray, rows: np.ndarray | None = None, weights: np.ndarray | None = None) -> np.ndarray:
        out = np.zeros((len(self.rows), v.shape[1]), dtype=np.float64)
        total = np.zeros(v.shape[1], dtype=np.float64)
        for cols, block in _weighted_blocks(v, rows, weights, self.chunk):
            out += self._hard(cols) @ block
            total += block.sum(axis=0)
        return (1 + self.r) * out - self.r * total

    def row_square_sums(self) -> np.ndarray:
        return (1 + self.r) ** 2 * self.row_sq - 2 * self.r * (1 + self.r) * self.row_sum + self.r**2 * len(self.cols)

    def dense(self) -> np.ndarray:
        return (1 + self.r) * self._hard(slice(None)) - self.r


class DenseSimilarity:
    """S held as an m x n matrix: the reference the scalable classes are tested against."""

    def __init__(self, rows: np.ndarray, cols: np.ndarray, graded: bool = False):
        rows, cols = np.asarray(rows, dtype=np.float64), np.asarray(cols, dtype=np.float64)
        shared = rows @ cols.T
        if graded:  # Jaccard: shared / union
            union = rows.sum(axis=1)[:, None] + cols.sum(axis=1)[None, :] - shared
            s = np.where(union > 0, shared / np.maximum(union, 1), 0.0)
        else:
            s = (shared > 0).astype(np.float64)
        self.r = _soft_ratio(s.sum(), s.size)
        self.s = (1 + self.r) * s - self.r

    @property
    def shape(self) -> tuple[int, int]:
        return self.s.shape

    def row_keys(self) -> np.ndarray:
        return np.arange(self.s.shape[1])

    def t_rows(self, u: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return self.s[:, rows].T @ u

    def matmul(self, v: np.ndarray, rows: np.ndarray | None = None, weights: np.ndarray | None = None) -> np.ndarray:
        rows = np.arange(len(v)) if rows is None else rows
        w = np.ones(len(rows)) if weights is None else weights
        return self.s[:, rows] @ (w[:, None] * v[rows])

    def row_square_sums(self) -> np.ndarray:
        return (self.s**2).sum(axis=1)

    def dense(self) -> np.ndarray:
        return self.s


def t_matmul(sim, u: np.ndarray) -> np.ndarray:
    """SᵀU whole (n x c): small problems and tests."""
    return sim.t_rows(u, np.arange(sim.shape[1]))


def _weighted_blocks(
    v: np.ndarray, rows: np.ndarray | None, weights: np.ndarray | None, chunk: int = READ_CHUNK
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(database rows, weights·V[rows] as float64) in bounded blocks."""
    rows = np.arange(len(v)) if rows is None else rows
    for lo in range(0, len(rows), chunk):
        r = rows[lo : lo + chunk]
        block = v[r].astype(np.float64)
        if weights is not None:
            block *= weights[lo : lo + chunk, None]
        yield r, block


@dataclass(frozen=True)
class RowGroups:
    """Database rows grouped by (key, code): a representative row, each row's group, group sizes."""

    first: np.ndarray
    inverse: np.ndarray
    counts: np.ndarray


def row_groups(v: np.ndarray, keys: np.ndarray) -> RowGroups:
    """Group the rows of V ({-1,+1}, n x c) that share a key and a code; one sort of n packed rows."""
    packed = np.packbits(v > 0, axis=1)
    rec = np.ascontiguousarray(np.concatenate([keys.astype(">i8").view(np.uint8).reshape(len(v), 8), packed], axis=1))
    _, first, inverse, counts = np.unique(
        rec.view(np.dtype((np.void, rec.shape[1]))).ravel(), return_index=True, return_inverse=True, return_counts=True
    )
    return RowGroups(first, inverse.ravel(), counts)


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Integer labels -> multi-hot rows."""
    out = np.zeros((len(labels), n_classes), dtype=np.float64)
    out[np.arange(len(labels)), labels] = 1.0
    return out


def similarity(
    rows: np.ndarray, cols: np.ndarray, n_classes: int, graded: bool = False
) -> LabelSimilarity | MultiLabelSimilarity:
    """The scalable S for these labels: integer labels (n,) use label algebra, multi-hot (n x C) column
    blocks (`graded`: Jaccard of the label sets rather than 'shares a label')."""
    if cols.ndim == 1:
        return LabelSimilarity(rows, cols, n_classes)
    return MultiLabelSimilarity(rows, cols, graded=graded)
