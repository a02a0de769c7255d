"""Content vectors: a few principal components of the frozen features, to order items that share a code.

Codes rank by class, and at 32 bits a class is often one code, so a search for "more like this image" returns its
class in an arbitrary order. The backbone features still tell members apart. Projected onto their leading
principal directions (fitted on the training pool) and scaled to unit length, they give a cosine that breaks
those ties at `dims` float16 numbers (2·dims bytes) an item, next to the code's bits/8.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

# Components kept: measured on perturbed copies of UC Merced database images (docs/choices-measured.md).
CONTENT_DIMS = 32
FIT_SAMPLE = 20_000  # pool rows the components are fitted on: enough for a 1,280-d covariance


@dataclass(frozen=True)
class ContentProjection:
    """x → unit((x − mean) · components), as float16."""

    mean: np.ndarray  # (d,) float32
    components: np.ndarray  # (d, dims) float32

    @property
    def dims(self) -> int:
        return int(self.components.shape[1])

    @classmethod
    def fit(cls, features: np.ndarray, dims: int = CONTENT_DIMS, seed: int = 0) -> ContentProjection:
        """The leading principal directions of `features` (a seeded sample of FIT_SAMPLE rows at most). On one
        BLAS thread and with each direction's sign fixed, so that a rerun gives the same bytes."""
        x = np.asarray(features, dtype=np.float64)
        if len(x) > FIT_SAMPLE:
            x = x[np.sort(np.random.default_rng(seed).choice(len(x), FIT_SAMPLE, replace=False))]
        mean = x.mean(axis=0)
        with threadpool_limits(1, "blas"):
            evals, evecs = np.linalg.eigh((x - mean).T @ (x - mean))
        top = evecs[:, np.argsort(evals)[::-1][: min(dims, x.shape[1])]]
        # An eigenvector's sign is arbitrary: make each one's largest entry positive.
        top *= np.sign(top[np.abs(top).argmax(axis=0), np.arange(top.shape[1])])
        return cls(mean.astype(np.float32), top.astype(np.float32))

    def apply(self, features: np.ndarray) -> np.ndarray:
        """Unit-length content vectors (n x dims, float16) of backbone features."""
        with threadpool_limits(1, "blas"):
            z = (np.asarray(features, dtype=np.float32) - self.mean) @ self.components
        norm = np.linalg.norm(z, axis=1, keepdims=True)
        return (z / np.maximum(norm, 1e-12)).astype(np.float16)

    def arrays(self) -> dict[str, np.ndarray]:
        """What a checkpoint and the remembered head store."""
        return {"content.mean": self.mean, "content.components": self.components}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> ContentProjection | None:
        """The projection a model stored, or None for a model without one."""
        if "content.mean" not in arrays:
            return None
        return cls(np.asarray(arrays["content.mean"], np.float32), np.asarray(arrays["content.components"], np.float32))


def content_similarity(query: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Cosine of each query's content vector (q x dims) with its candidates' (q x w x dims): q x w."""
    return np.einsum("qd,qwd->qw", query.astype(np.float32), candidates.astype(np.float32))
