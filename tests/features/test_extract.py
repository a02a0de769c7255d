"""Extraction: orientation views, skipping unreadable images, and a resumed extraction equal to a whole one."""

import numpy as np
import pytest

from hashidx.data.datasets import load_dataset
from hashidx.data.rasters import RGB
from hashidx.errors import HashidxError
from hashidx.features.backbones import FeatureExtractor, backbone_spec
from hashidx.features.cache import FeatureCache
from hashidx.features.extract import Extraction, compute_features, extract


@pytest.fixture(scope="module")
def extractor():
    return FeatureExtractor(backbone_spec("efficientnet-lite0"))


def _paths(ucmd_slice, n=6):
    return sorted((ucmd_slice / "harbor").iterdir())[:n]


def test_views_average_orientations(ucmd_slice, extractor):
    paths = _paths(ucmd_slice, 2)
    one, four = extract(paths, extractor, 224, views=1), extract(paths, extractor, 224, views=4)
    assert one.features.shape == four.features.shape == (2, extractor.spec.feature_dim)
    assert not np.allclose(one.features, four.features)  # the rotations change the vector
    assert (one.kept == [0, 1]).all() and one.done == 2


def test_unreadable_images_fail_or_are_skipped(ucmd_slice, extractor, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff nope")
    paths = [*_paths(ucmd_slice, 2), bad]
    with pytest.raises(HashidxError, match="bad.jpg"):
        extract(paths, extractor, 224)
    out = extract(paths, extractor, 224, on_error="skip")
    assert out.kept.tolist() == [0, 1] and out.skipped[0][0] == 2 and len(out.features) == 2


def test_resumed_extraction_equals_a_whole_one(ucmd_slice, extractor):
    paths = _paths(ucmd_slice, 6)
    whole = extract(paths, extractor, 224, batch_size=2)
    saved: list[Extraction] = []
    extract(paths, extractor, 224, batch_size=2, checkpoint=saved.append, every=1)
    first = saved[0]  # what a kill after the first batch leaves behind
    resumed = extract(paths, extractor, 224, batch_size=2, resume=first)
    np.testing.assert_allclose(resumed.features, whole.features, atol=1e-6)
    assert resumed.kept.tolist() == whole.kept.tolist()


def test_a_streamed_extraction_hands_every_row_to_its_checkpoint_and_keeps_none(ucmd_slice, extractor, tmp_path):
    """collect(keep=False), what write_features runs: the rows only reach the checkpoint (the last ones too), in
    order, and the cache written from the .partial file equals one made in memory."""
    from hashidx.features.extract import BackboneStage, collect, write_features

    paths = _paths(ucmd_slice, 5)
    whole = extract(paths, extractor, 224, batch_size=2)
    saved: list[Extraction] = []
    stage = BackboneStage("efficientnet-lite0", "imagenet", "torch", RGB, 224, 1, extractor=extractor)
    streamed = collect(paths, stage, extractor.spec.feature_dim, batch_size=2, checkpoint=saved.append, keep=False)
    assert streamed.features.shape == (0, extractor.spec.feature_dim) and streamed.kept.tolist() == [0, 1, 2, 3, 4]
    assert [s.done for s in saved] == [5]  # every=32 batches: one hand-over, at the end
    np.testing.assert_allclose(np.concatenate([s.features for s in saved]), whole.features, atol=1e-6)
    ds = load_dataset(ucmd_slice)
    ds = ds.subset(np.arange(3))
    write_features(ds, tmp_path / "w.h5", "efficientnet-lite0", views=1, checkpoint_every=1, runtime="torch")
    written = FeatureCache.load(tmp_path / "w.h5")
    assert not (tmp_path / "w.h5.partial").exists() and written.dataset.paths == ds.paths
    ref = compute_features(ds, "efficientnet-lite0", views=1, runtime="torch")
    np.testing.assert_allclose(written.features, ref.features, atol=1e-6)


def test_cache_round_trip_keeps_provenance(ucmd_slice, tmp_path):
    ds = load_dataset(ucmd_slice).subset(np.arange(0, 100, 25))
    cache = compute_features(ds, "efficientnet-lite0", views=1)
    cache.save(tmp_path / "f.h5")
    back = FeatureCache.load(tmp_path / "f.h5")
    np.testing.assert_array_equal(back.features, cache.features)
    assert back.dataset.paths == ds.paths and (back.dataset.labels == ds.labels).all()
    assert (back.backbone, back.image_size, back.views, back.layers) == ("efficientnet-lite0", 224, 1, cache.layers)
