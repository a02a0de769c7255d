"""The symmetric counterpart on real features: it trains a head whose codes separate classes, reproducibly."""

import numpy as np

from hashidx.codes.binary import sign
from hashidx.features.cache import FeatureCache
from hashidx.methods.symmetric import train_symmetric
from hashidx.methods.training import TrainConfig


def test_symmetric_head_codes_separate_classes_and_reproduce(ucmd_features):
    cache = FeatureCache.load(ucmd_features)
    labels, n_classes = cache.dataset.labels, len(cache.dataset.classes)
    config = TrainConfig(bits=16, iterations=5, seed=3)
    head, log = train_symmetric(cache.features, labels, n_classes, config)
    codes = sign(head.embed(cache.features)).astype(np.int64)
    dist = (16 - codes @ codes.T) // 2
    same = labels[:, None] == labels[None, :]
    assert dist[same].mean() + 4 < dist[~same].mean()
    assert log["pool_size"] == len(labels) and len(log["iterations"]) == 5
    head2, _ = train_symmetric(cache.features, labels, n_classes, config)
    np.testing.assert_array_equal(head2.embed(cache.features), head.embed(cache.features))
