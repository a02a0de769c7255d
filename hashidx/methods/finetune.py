"""End-to-end fine-tuning: backbone, hash layer and classifier trained together on the pool's images.

The frozen path trains a head on cached features; this one updates the backbone too, with the
authors' preprocessing (resize 256, centre crop 224, ImageNet-style normalisation), on CUDA when
there is one (bf16 autocast) and on the CPU otherwise.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hashidx.data.images import decode_ahead, decode_items, keep_readable, load_image
from hashidx.data.rasters import RGB, Radiometry
from hashidx.errors import HashidxError
from hashidx.features.backbones import BackboneSpec, backbone_spec, channel_stats
from hashidx.features.extract import Encoded
from hashidx.features.networks import adapt_input
from hashidx.io.progress import progress
from hashidx.methods.training import Network, TrainConfig, sgd

RESIZE, CROP = 256, 224


class HashNet(nn.Module):
    """Backbone trunk → hash layer → tanh, and a linear classifier on the codes; takes [0,1] NCHW images."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, trunk: nn.Module, spec: BackboneSpec, bits: int, n_classes: int, channels: int = 3):
        super().__init__()
        self.trunk = adapt_input(trunk, channels)
        self.hash = nn.Linear(spec.feature_dim, bits)
        self.classifier = nn.Linear(bits, n_classes)
        mean, std = channel_stats(spec, channels)
        self.register_buffer("mean", torch.tensor(mean).view(1, channels, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u = torch.tanh(self.hash(self.trunk((x - self.mean) / self.std)))
        return u, self.classifier(u)


def hashnet_from_config(config: dict) -> HashNet:
    """An untrained HashNet of the recorded shape (its weights come from the checkpoint)."""
    spec = backbone_spec(config["backbone"])
    channels = Radiometry.from_attrs(config).channels
    return HashNet(spec.build("none"), spec, int(config["bits"]), len(config["classes"]), channels)


def resolve_device(device: str) -> torch.device:
    """auto → cuda when available, else cpu; an explicit cuda without a GPU is refused."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise HashidxError(f"--device {device}: this torch sees no CUDA device; use --device cpu (or auto)")
    try:
        return torch.device(device)
    except RuntimeError:
        raise HashidxError(f"--device {device}: use auto, cpu, cuda or cuda:N") from None


def _crop(path: Path, radiometry: Radiometry = RGB) -> np.ndarray:
    lo = (RESIZE - CROP) // 2
    pixels = load_image(path, RESIZE, radiometry)[lo : lo + CROP, lo : lo + CROP]
    return (pixels * 255).round().astype(np.uint8).transpose(2, 0, 1)


def load_crops(
    paths: Sequence[Path],
    on_error: str = "fail",
    desc: str = "load images",
    chunk: int = 32,
    radiometry: Radiometry = RGB,
) -> tuple[torch.Tensor, list[int], list[tuple[int, str]]]:
    """uint8 N x C x 224 x 224 centre crops of the images resized to 256, the positions kept, and
    (position, reason) of the images left out by on_error="skip". Kept as 8 bits after the dataset's scaling
    (16-bit rasters too): the pool must fit in memory."""
    out: list[torch.Tensor] = []
    kept: list[int] = []
    skipped: list[tuple[int, str]] = []
    chunks = [range(s, min(s + chunk, len(paths))) for s in range(0, len(paths), chunk)]
    crop = functools.partial(_crop, radiometry=radiometry)
    for decoded in progress(decode_ahead(paths, crop, chunks), desc, total=len(chunks), unit="batch"):
        ok, crops = keep_readable(decoded, on_error, skipped)
        kept += ok
        out += [torch.from_numpy(c) for c in crops]
    stacked = torch.stack(out) if out else torch.zeros((0, radiometry.channels, CROP, CROP), dtype=torch.uint8)
    return stacked, kept, skipped


class ImageInputs:
    """Pool images kept as uint8 crops; a batch is scaled to [0,1] and, when training with `augment`,
    rotated by a multiple of 90° and flipped (aerial scenes have no up)."""

    def __init__(self, pixels: torch.Tensor, augment: bool = False):
        self.pixels, self.augment = pixels, augment

    def __len__(self) -> int:
        return len(self.pixels)

    def batch(self, positions: np.ndarray, rng: np.random.Generator | None = None) -> torch.Tensor:
        """[0,1] images; with `rng` (training) and augment, each turned and flipped at random."""
        x = self.pixels[torch.from_numpy(np.asarray(positions))].float() / 255.0
        if rng is not None and self.augment:
            turns = rng.integers(0, 8, len(x))
            x = torch.stack(
                [
                    torch.rot90(img, int(t % 4), dims=(1, 2)).flip(2)
                    if t >= 4
                    else torch.rot90(img, int(t), dims=(1, 2))
                    for img, t in zip(x, turns)
                ]
            )
        return x.contiguous(memory_format=torch.channels_last)


def finetune_network(
    backbone: str,
    weights: str,
    pixels: torch.Tensor,
    n_classes: int,
    config: TrainConfig,
    device: torch.device,
    augment: bool = False,
    channels: int = 3,
) -> Network:
    """A seeded HashNet on the pretrained backbone (first convolution widened to `channels` bands), with the
    authors' SGD schedule, over the pool's images."""
    spec = backbone_spec(backbone)
    trunk = spec.build(weights)
    torch.manual_seed(config.seed)
    net = HashNet(trunk, spec, config.bits, n_classes, channels).to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]
    opt, sched = sgd(net, config)
    return Network(net, opt, sched, ImageInputs(pixels, augment), device, amp=device.type == "cuda")


class _Outputs(nn.Module):
    """A HashNet's outputs u alone: what its ONNX twin computes."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[0]


def onnx_outputs(net: nn.Module, backbone: str, channels: int = 3) -> Any:
    """The ONNX Runtime twin of a fine-tuned HashNet's outputs u for 224 px crops, or None where it fell back."""
    from hashidx.features.runtime import onnx_twin

    identity = {"module": "hash network", "backbone": backbone, "bands": channels}
    return onnx_twin(_Outputs(net.eval()), "fine-tuned network", identity, (channels, CROP, CROP))


class HashNetWorker:
    """Crops a chunk of (position, path) and runs a fine-tuned HashNet (or its ONNX twin) on them: outputs u."""

    def __init__(self, net: nn.Module, twin: Any, radiometry: Radiometry):
        self.net, self.twin = net, twin
        self.crop = functools.partial(_crop, radiometry=radiometry)

    def load(self, chunk: Sequence[tuple[int, Path]]) -> list[tuple[int, np.ndarray | HashidxError]]:
        return decode_items(self.crop, chunk)

    def run(self, decoded: list[tuple[int, np.ndarray | HashidxError]]) -> Encoded:
        errors: list[tuple[int, str]] = []
        ok, crops = keep_readable(decoded, "skip", errors)
        pixels = torch.from_numpy(np.stack(crops)) if crops else torch.zeros((0, 1, CROP, CROP), dtype=torch.uint8)
        bits = int(self.net.hash.out_features)  # type: ignore[union-attr, arg-type]
        u = embed_images(self.net, pixels, twin=self.twin) if crops else np.empty((0, bits), np.float32)
        return Encoded(
            np.asarray(ok, dtype=np.int64), u.astype(np.float32, copy=False), errors, "onnx" if self.twin else "torch"
        )


@dataclass
class HashNetStage:
    """The recipe of a HashNetWorker: the network (its weights travel with it), how to run and read. `twin` and
    `built` mark a network already prepared in this process (its ONNX twin, or None for torch), never shipped."""

    net: nn.Module
    backbone: str
    runtime: str
    radiometry: Radiometry
    twin: Any = field(default=None, compare=False, repr=False)
    built: bool = False

    def __getstate__(self) -> dict:
        return {**self.__dict__, "twin": None, "built": False}

    def build(self, threads: int | None = None, device: str = "cpu") -> HashNetWorker:
        if self.built and threads is None:
            return HashNetWorker(self.net, self.twin, self.radiometry)
        from hashidx.features.runtime import set_threads

        set_threads(threads)
        net = self.net.to(device).eval()
        on_cpu = self.runtime == "onnx" and device == "cpu"
        twin = onnx_outputs(net, self.backbone, self.radiometry.channels) if on_cpu else None
        return HashNetWorker(net, twin, self.radiometry)


def embed_images(
    net: nn.Module, pixels: torch.Tensor, device: torch.device | None = None, batch_size: int = 64, twin: Any = None
) -> np.ndarray:
    """Outputs u of a fine-tuned HashNet for uint8 crops (eval mode), through the training loop's own
    batching and autocast (Network.embed), or through `twin` (onnx_outputs) where given."""
    if twin is not None:
        blocks = [twin(pixels[s : s + batch_size].float().numpy() / 255.0) for s in range(0, len(pixels), batch_size)]
        return np.concatenate(blocks) if blocks else np.zeros((0, net.hash.out_features), np.float32)  # type: ignore[union-attr, arg-type]
    device = device or next(net.parameters()).device
    inference = Network(net, None, None, ImageInputs(pixels), device, amp=device.type == "cuda")
    return inference.embed(np.arange(len(pixels)), batch_size)
