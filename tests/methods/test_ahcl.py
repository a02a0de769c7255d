"""AHCL on real UC Merced features: codes learned from labels, reproducible, and pool-free items coded by label."""

import numpy as np

from hashidx.features.cache import FeatureCache
from hashidx.methods.ahcl import train_ahcl
from hashidx.methods.training import TrainConfig

CONFIG = TrainConfig(bits=16, iterations=5, seed=0)


def _data(ucmd_features):
    cache = FeatureCache.load(ucmd_features)
    return cache.features, cache.dataset.labels, len(cache.dataset.classes)


def test_learned_codes_group_by_class_and_reproduce(ucmd_features):
    feats, labels, n_classes = _data(ucmd_features)
    head, v, log = train_ahcl(feats, labels, n_classes, CONFIG)
    assert v.shape == (len(labels), 16) and v.dtype == np.int8 and set(np.unique(v)) == {-1, 1}
    dist = (16 - v.astype(np.int64) @ v.T) // 2
    same = labels[:, None] == labels[None, :]
    assert dist[same].mean() < 1 < 6 < dist[~same].mean()  # a class shares its code; classes lie far apart
    assert len(log["iterations"]) == 5
    _, v2, _ = train_ahcl(feats, labels, n_classes, CONFIG)
    np.testing.assert_array_equal(v, v2)


def test_items_outside_the_pool_are_coded_from_their_label_alone(ucmd_features):
    """The asymmetry: half the database never passes the network, yet gets its class's code."""
    feats, labels, n_classes = _data(ucmd_features)
    pool = np.arange(0, len(labels), 2)
    head, v, _ = train_ahcl(feats[pool], labels, n_classes, CONFIG, pool)
    outside = np.setdiff1d(np.arange(len(labels)), pool)
    # each outside item lies nearest (mean Hamming distance) to the pool items of its own class
    dist = (16 - v[outside].astype(np.int64) @ v[pool].T.astype(np.int64)) // 2
    per_class = np.stack([dist[:, labels[pool] == k].mean(axis=1) for k in range(n_classes)], axis=1)
    assert (per_class.argmin(axis=1) == labels[outside]).all()


def test_codes_started_by_label_set_keep_a_class_outside_the_pool_on_one_code(ucmd_features):
    """--code-init label: items that share their labels start on one code, and outside the sampled rows their
    update depends on nothing else, so each class keeps one code there; the authors' random start is the
    default and gives other codes."""
    from dataclasses import replace

    from hashidx.methods.ahcl import initial_codes, label_sets

    feats, labels, n_classes = _data(ucmd_features)
    pool = np.arange(0, len(labels), 4)
    outside = np.setdiff1d(np.arange(len(labels)), pool)
    _, v, log = train_ahcl(feats[pool], labels, n_classes, replace(CONFIG, code_init="label"), pool)
    for k in range(n_classes):
        assert len(np.unique(v[outside][labels[outside] == k], axis=0)) == 1
    assert log["settling"]["label_sets"] == n_classes
    _, v_random, _ = train_ahcl(feats[pool], labels, n_classes, CONFIG, pool)
    assert not np.array_equal(v, v_random)
    # One start per label set: multi-label rows that are equal share one, others do not.
    rows = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], np.uint8)
    assert label_sets(rows).tolist()[0] == label_sets(rows).tolist()[2] != label_sets(rows).tolist()[1]
    start = initial_codes(3, 64, np.random.default_rng(0), label_sets(rows))
    assert np.array_equal(start[0], start[2]) and not np.array_equal(start[0], start[1])
