"""The soft pairwise similarity S (m x n) between the sampled pool and the database, never built densely.

S_ij = 1 when items i and j share a label, else 0; the soft form is (1+r)S - r with
r = #similar / #dissimilar pairs, so dissimilar pairs target -r instead of 0.
"""

from __future__ import annotations

import numpy as np


class LabelSimilarity:
    """Single-label S by label algebra: every product costs O((m+n)c + Cc), never O(mn)."""

    def __init__(self, rows: np.ndarray, cols: np.ndarray, n_classes: int):
        self.rows, self.cols, self.n_classes = rows, cols, n_classes
        self.col_counts = np.bincount(cols, minlength=n_classes).astype(np.float64)
        n_similar = float(self.col_counts[rows].sum())
        n_dissimilar = float(len(rows)) * len(cols) - n_similar
        self.r = n_similar / n_dissimilar if n_dissimilar > 0 else 0.0

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.rows), len(self.cols)

    def _class_sums(self, labels: np.ndarray, x: np.ndarray) -> np.ndarray:
        sums = np.zeros((self.n_classes, x.shape[1]), dtype=np.float64)
        np.add.at(sums, labels, x)
        return sums

    def t_matmul(self, u: np.ndarray) -> np.ndarray:
        """Sᵀ U (n x c) for U (m x c): (1+r)·Y(Y_Ωᵀ U) − r·1(1ᵀ U)."""
        sums = self._class_sums(self.rows, u)
        return (1 + self.r) * sums[self.cols] - self.r * u.sum(axis=0, dtype=np.float64)

    def matmul_rows(self, v: np.ndarray, which: np.ndarray) -> np.ndarray:
        """(S V)[which] (|which| x c) for V (n x c)."""
        sums = self._class_sums(self.cols, v)
        return (1 + self.r) * sums[self.rows[which]] - self.r * v.sum(axis=0, dtype=np.float64)

    def row_square_sums(self, which: np.ndarray) -> np.ndarray:
        """Σ_j S_ij² for the rows in `which`."""
        same = self.col_counts[self.rows[which]]
        return same + self.r ** 2 * (len(self.cols) - same)

    def dense(self) -> np.ndarray:
        """The m x n matrix itself: for tests and tiny problems only."""
        s = (self.rows[:, None] == self.cols[None, :]).astype(np.float64)
        return (1 + self.r) * s - self.r


class DenseSimilarity:
    """S held as a matrix: the reference the label algebra is tested against, and multi-hot labels."""

    def __init__(self, rows: np.ndarray, cols: np.ndarray):
        s = (np.asarray(rows, dtype=np.float64) @ np.asarray(cols, dtype=np.float64).T > 0).astype(np.float64)
        n_similar = s.sum()
        n_dissimilar = s.size - n_similar
        self.r = n_similar / n_dissimilar if n_dissimilar > 0 else 0.0
        self.s = (1 + self.r) * s - self.r

    @property
    def shape(self) -> tuple[int, int]:
        return self.s.shape

    def t_matmul(self, u: np.ndarray) -> np.ndarray:
        return self.s.T @ u

    def matmul_rows(self, v: np.ndarray, which: np.ndarray) -> np.ndarray:
        return self.s[which] @ v

    def row_square_sums(self, which: np.ndarray) -> np.ndarray:
        return (self.s[which] ** 2).sum(axis=1)

    def dense(self) -> np.ndarray:
        return self.s


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Integer labels -> multi-hot rows (for DenseSimilarity)."""
    out = np.zeros((len(labels), n_classes), dtype=np.float64)
    out[np.arange(len(labels)), labels] = 1.0
    return out
