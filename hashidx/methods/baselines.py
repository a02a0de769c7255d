"""Unsupervised baselines on the same features: LSH (random hyperplanes) and ITQ, in numpy.

Both are a linear map: code = sgn((x − mean) · W); the map is saved like a hash head.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hashidx.errors import HashidxError


class LinearHash(nn.Module):
    """x → (x − mean)·W, the continuous output whose sign is the code."""

    mean: torch.Tensor
    projection: torch.Tensor

    def __init__(self, in_dim: int, bits: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("projection", torch.zeros(in_dim, bits))

    @property
    def out_dim(self) -> int:
        return int(self.projection.shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) @ self.projection

    @torch.inference_mode()
    def embed(self, features: np.ndarray) -> np.ndarray:
        return self(torch.from_numpy(np.asarray(features, dtype=np.float32))).numpy()


def _linear(mean: np.ndarray, projection: np.ndarray) -> LinearHash:
    h = LinearHash(*projection.shape)
    h.mean.copy_(torch.from_numpy(mean.astype(np.float32)))
    h.projection.copy_(torch.from_numpy(projection.astype(np.float32)))
    return h.eval()


def fit_lsh(features: np.ndarray, bits: int, seed: int = 0) -> LinearHash:
    """Gaussian random hyperplanes through the features' mean (sign random projections)."""
    rng = np.random.default_rng(seed)
    return _linear(features.mean(axis=0), rng.standard_normal((features.shape[1], bits)))


def itq_rotation(v: np.ndarray, iterations: int = 50, seed: int = 0) -> tuple[np.ndarray, list[float]]:
    """ITQ (Gong & Lazebnik 2011): the orthogonal R minimising ||sgn(VR) − VR||², and the loss per step."""
    rng = np.random.default_rng(seed)
    r, _ = np.linalg.qr(rng.standard_normal((v.shape[1], v.shape[1])))
    losses = []
    for _ in range(iterations):
        z = v @ r
        b = np.where(z >= 0, 1.0, -1.0)
        losses.append(float(((b - z) ** 2).sum()))
        # max tr(Bᵀ V R) over orthogonal R: R = P Qᵀ with P Σ Qᵀ = svd(Vᵀ B)
        p, _, qt = np.linalg.svd(v.T @ b)
        r = p @ qt
    return r, losses


def fit_itq(features: np.ndarray, bits: int, seed: int = 0, iterations: int = 50) -> LinearHash:
    """PCA to `bits` dimensions, then the ITQ rotation."""
    if bits > min(features.shape):
        raise HashidxError(
            f"ITQ at {bits} bits needs a training pool of at least {bits} images (got "
            f"{len(features)}); enlarge --train-pool or use fewer bits"
        )
    mean = features.mean(axis=0)
    x = (features - mean).astype(np.float64)
    # Top principal directions from the covariance (d x d) eigendecomposition, largest first.
    evals, evecs = np.linalg.eigh(x.T @ x)
    pca = evecs[:, np.argsort(evals)[::-1][:bits]]
    r, _ = itq_rotation(x @ pca, iterations, seed)
    return _linear(mean, pca @ r)
