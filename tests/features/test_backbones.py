"""The default backbone's feature layout, checked against the package's own forward pass."""

from __future__ import annotations

import numpy as np
import torch

from hashidx.data.datasets import load_dataset
from hashidx.data.images import load_image
from hashidx.features.backbones import LITE0_BLOCKS, FeatureExtractor, backbone_spec, recorded_layers


def test_lite0_features_are_pooled_blocks_then_the_pooled_head(ucmd_slice):
    spec = backbone_spec("efficientnet-lite0")
    ds = load_dataset(ucmd_slice)
    x = np.stack([load_image(ds.absolute(i), 224) for i in (0, 45)]).transpose(0, 3, 1, 2)
    extractor = FeatureExtractor(spec)
    features = extractor(x)
    assert features.shape == (2, spec.feature_dim)
    # The reference: the package's extract_features, with hooks on the blocks hashidx pools beside it.
    package = extractor.net.net
    seen = {}
    hooks = [
        package._blocks[i].register_forward_hook(lambda m, i_, o, i=i: seen.__setitem__(i, o.mean(dim=(2, 3))))
        for i in LITE0_BLOCKS
    ]
    with torch.inference_mode():
        head = package.extract_features(torch.from_numpy((x - extractor.mean) / extractor.std)).mean(dim=(2, 3))
    for h in hooks:
        h.remove()
    reference = torch.cat([seen[i] for i in LITE0_BLOCKS] + [head], dim=1).numpy()
    np.testing.assert_allclose(features, reference, rtol=1e-4, atol=1e-5)
    assert [seen[i].shape[1] for i in LITE0_BLOCKS] == [112, 320] and head.shape[1] == 1280


def test_files_without_recorded_layers_keep_their_old_meaning():
    assert recorded_layers("efficientnet-lite0", None) == "avgpool(head)"
    assert recorded_layers("resnet50", None) == backbone_spec("resnet50").layers
    assert recorded_layers("efficientnet-lite0", "x") == "x"
