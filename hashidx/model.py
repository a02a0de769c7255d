"""The hash network on backbone features (hash layer → tanh, plus a class head) and its checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .atomic import atomic_path
from .errors import HashidxError

CHECKPOINT_FORMAT = 1


class HashHead(nn.Module):
    """Standardise features, d → hidden → bits with tanh, and a linear classifier on the codes."""

    def __init__(self, in_dim: int, bits: int, n_classes: int, hidden: int = 1024, dropout: float = 0.5):
        super().__init__()
        self.register_buffer("feature_mean", torch.zeros(in_dim))
        self.register_buffer("feature_std", torch.ones(in_dim))
        self.hash = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                  nn.Linear(hidden, bits))
        self.classifier = nn.Linear(bits, n_classes)

    def set_normalisation(self, features: np.ndarray) -> None:
        """Fit the standardisation to training features; it travels inside the state dict."""
        self.feature_mean.copy_(torch.from_numpy(features.mean(axis=0)))
        self.feature_std.copy_(torch.from_numpy(features.std(axis=0) + 1e-6))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u = torch.tanh(self.hash((x - self.feature_mean) / self.feature_std))
        return u, self.classifier(u)

    @torch.inference_mode()
    def embed(self, features: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Continuous outputs u in (−1,1) for a feature matrix, in eval mode."""
        self.eval()
        return np.concatenate([self(torch.from_numpy(features[i:i + batch_size]))[0].numpy()
                               for i in range(0, max(len(features), 1), batch_size)])


def head_from_config(config: dict[str, Any]) -> nn.Module:
    """An untrained module of the shape the config records: a hash head, or a linear map for itq/lsh."""
    if config.get("finetune"):
        from .finetune import hashnet_from_config

        return hashnet_from_config(config)
    if config.get("method") in ("itq", "lsh"):
        from .baselines import LinearHash

        return LinearHash(config["feature_dim"], config["bits"])
    return HashHead(config["feature_dim"], config["bits"], len(config["classes"]), config["hidden"], config["dropout"])


def save_checkpoint(path: str | Path, head: nn.Module, config: dict[str, Any]) -> None:
    """A plain state dict plus a JSON-able config: nothing in it can run code on load."""
    with atomic_path(path) as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, "config": config, "state_dict": head.state_dict()}, tmp)


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the head from a checkpoint, refusing anything that is not plain tensors and data."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise HashidxError(f"{path}: model checkpoint not found") from None
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError... for bad files
        # torch's own message suggests weights_only=False, which would let the file run code: never relay it.
        raise HashidxError(f"{path}: not a hashidx checkpoint of plain tensors ({type(exc).__name__}); "
                           "use RUN_DIR/model.pt from 'hashidx train'") from None
    if not isinstance(obj, dict) or "config" not in obj or "state_dict" not in obj:
        raise HashidxError(f"{path}: not a hashidx checkpoint (no config/state_dict); use RUN_DIR/model.pt from 'hashidx train'")
    config = obj["config"]
    head = head_from_config(config)
    try:
        head.load_state_dict(obj["state_dict"])
    except RuntimeError as exc:
        raise HashidxError(f"{path}: weights do not match the recorded config ({str(exc).splitlines()[0]}); retrain") from None
    return head.eval(), config
