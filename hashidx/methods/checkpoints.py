"""Model checkpoints: a plain state dict plus a JSON-able config, rebuilt into the right network on load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from hashidx.errors import HashidxError
from hashidx.features.content import ContentProjection
from hashidx.io.atomic import atomic_path
from hashidx.methods.baselines import LinearHash
from hashidx.methods.finetune import hashnet_from_config
from hashidx.methods.head import HashHead

CHECKPOINT_FORMAT = 1


def head_from_config(config: dict[str, Any]) -> nn.Module:
    """An untrained module of the shape the config records: a hash head, or a linear map for itq/lsh."""
    if config.get("finetune"):
        return hashnet_from_config(config)
    if config.get("method") in ("itq", "lsh"):
        return LinearHash(config["feature_dim"], config["bits"])
    return HashHead(config["feature_dim"], config["bits"], len(config["classes"]), config["hidden"], config["dropout"])


def save_checkpoint(
    path: str | Path, head: nn.Module, config: dict[str, Any], content: ContentProjection | None = None
) -> None:
    """A plain state dict plus a JSON-able config (and the content projection, where the run fitted one):
    nothing in it can run code on load."""
    obj: dict[str, Any] = {"format": CHECKPOINT_FORMAT, "config": config, "state_dict": head.state_dict()}
    if content is not None:
        obj["content"] = {name: torch.from_numpy(a) for name, a in content.arrays().items()}
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the head from a checkpoint, refusing anything that is not plain tensors and data."""
    head, config, _ = load_model(path)
    return head, config


def load_model(path: str | Path) -> tuple[nn.Module, dict[str, Any], ContentProjection | None]:
    """`load_checkpoint`, and the content projection the checkpoint holds (None where it has none)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise HashidxError(f"{path}: model checkpoint not found") from None
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError... for bad files
        # torch's own message suggests weights_only=False, which would let the file run code: never relay it.
        raise HashidxError(
            f"{path}: not a hashidx checkpoint of plain tensors ({type(exc).__name__}); "
            "use RUN_DIR/model.pt from 'hashidx train'"
        ) from None
    if not isinstance(obj, dict) or "config" not in obj or "state_dict" not in obj:
        raise HashidxError(
            f"{path}: not a hashidx checkpoint (no config/state_dict); use RUN_DIR/model.pt from 'hashidx train'"
        )
    config = obj["config"]
    head = head_from_config(config)
    try:
        head.load_state_dict(obj["state_dict"])
    except RuntimeError as exc:
        raise HashidxError(
            f"{path}: weights do not match the recorded config ({str(exc).splitlines()[0]}); retrain"
        ) from None
    stored = obj.get("content")
    content = None
    if isinstance(stored, dict):
        content = ContentProjection.from_arrays({k: v.numpy() for k, v in stored.items()})
    return head.eval(), config, content
