"""The hash head on backbone features: standardise, hash layer → tanh, and a class head on the codes."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class HashHead(nn.Module):
    """Standardise features, d → hidden → bits with tanh, and a linear classifier on the codes."""

    feature_mean: torch.Tensor
    feature_std: torch.Tensor

    def __init__(self, in_dim: int, bits: int, n_classes: int, hidden: int = 1024, dropout: float = 0.5):
        super().__init__()
        self.register_buffer("feature_mean", torch.zeros(in_dim))
        self.register_buffer("feature_std", torch.ones(in_dim))
        self.hash = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, bits)
        )
        self.classifier = nn.Linear(bits, n_classes)

    def set_normalisation(self, features: np.ndarray) -> None:
        """Fit the standardisation to training features; it travels inside the state dict."""
        self.feature_mean.copy_(torch.from_numpy(features.mean(axis=0)))
        self.feature_std.copy_(torch.from_numpy(features.std(axis=0) + 1e-6))

    @property
    def out_dim(self) -> int:
        """Bits: the width of the outputs u."""
        return int(self.classifier.in_features)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u = torch.tanh(self.hash((x - self.feature_mean) / self.feature_std))
        return u, self.classifier(u)

    @torch.inference_mode()
    def embed(self, features: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Continuous outputs u in (−1,1) for a feature matrix, in eval mode."""
        self.eval()
        return np.concatenate(
            [
                self(torch.from_numpy(features[i : i + batch_size]))[0].numpy()
                for i in range(0, max(len(features), 1), batch_size)
            ]
        )
