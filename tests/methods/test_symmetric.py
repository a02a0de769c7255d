"""The symmetric counterpart on real features: it trains a head whose codes separate classes, reproducibly."""

from pathlib import Path

import numpy as np
import pytest

from hashidx.codes.binary import sign
from hashidx.codes.codefile import CodeFile
from hashidx.features.cache import FeatureCache
from hashidx.methods.runs import train_run
from hashidx.methods.symmetric import train_symmetric
from hashidx.methods.training import TrainConfig, default_lr

TABLE = (
    Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "UCMerced_LandUse" / "LandUse_Multilabeled.txt"
)


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


def test_multilabel_runs_at_32_bits_and_more_train_at_the_validated_rate(ucmd_features, tmp_path):
    """The authors' 1e-3 collapsed the symmetric codes on multi-label UC Merced at 32 and 64 bits (2-4 codes); such
    runs default to rates chosen per length on validation splits. Everything else keeps 1e-3; a given rate is kept."""
    assert [default_lr("symmetric", b, multilabel=True) for b in (16, 32, 64)] == [3e-4, 1e-4, 3e-5]
    assert default_lr("symmetric", 8, True) == 1e-3 and default_lr("symmetric", 128, True) == 1e-4 / 16
    for args in (("symmetric", 64, False), ("ahcl", 64, True), ("symmetric", 64, True, True)):
        assert default_lr(*args) == 1e-3
    assert TrainConfig(bits=32, lr=3e-3).resolved("symmetric", True).lr == 3e-3
    table = TABLE if TABLE.is_file() else pytest.skip("the UC Merced multi-label table is not in ../shared")
    record = train_run(ucmd_features, tmp_path / "run", "symmetric", 32, labels=table, config=TrainConfig(iterations=5))
    assert record["config"]["lr"] == 1e-4
    assert len(np.unique(CodeFile.load(tmp_path / "run" / "codes.h5").codes, axis=0)) > 5
