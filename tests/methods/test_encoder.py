"""New images → codes: image paths and their cached features give the same codes; a mismatched cache is refused."""

from dataclasses import replace

import numpy as np
import pytest

from hashidx.codes.binary import pack, sign
from hashidx.errors import HashidxError
from hashidx.features.cache import FeatureCache
from hashidx.methods.checkpoints import load_checkpoint
from hashidx.methods.encoder import Encoder
from hashidx.methods.runs import train_run


@pytest.fixture(scope="module")
def run(ucmd_features, tmp_path_factory):
    out = tmp_path_factory.mktemp("encoder") / "run"
    train_run(ucmd_features, out, bits=16, config=None, seed=0)
    return out


def test_images_and_their_cached_features_give_the_same_codes(run, ucmd_features):
    encoder = Encoder(*load_checkpoint(run / "model.pt"))
    cache = FeatureCache.load(ucmd_features)
    picks = [0, 21, 47, 99]
    from_features = encoder.encode_features(cache.features[picks])
    np.testing.assert_array_equal(from_features, pack(sign(encoder.arrays.embed(cache.features[picks]))))
    from_images, kept, skipped = encoder.encode_images([cache.dataset.absolute(i) for i in picks])
    assert kept.tolist() == [0, 1, 2, 3] and skipped == []
    # the same 8-view backbone pass; float sums may differ in the last bit, so allow a rare flipped bit
    assert np.unpackbits(from_images ^ from_features).sum() <= 1


def test_a_cache_of_other_layers_is_refused(run, ucmd_features):
    encoder = Encoder(*load_checkpoint(run / "model.pt"))
    cache = FeatureCache.load(ucmd_features)
    with pytest.raises(HashidxError, match="use the feature cache the model was trained on"):
        encoder.check_features(replace(cache, layers="avgpool(head)"), "other.h5")


def test_named_items_skip_unreadable_images_when_asked(run, ucmd_slice, tmp_path):
    encoder = Encoder(*load_checkpoint(run / "model.pt"))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    good = sorted((ucmd_slice / "beach").iterdir())[0]
    names, codes, skipped = encoder.encode_named([("good.jpg", good), ("bad.jpg", bad)], "q.txt", on_error="skip")
    assert names == ["good.jpg"] and codes.shape == (1, 2) and skipped[0][0] == "bad.jpg"
    with pytest.raises(HashidxError, match="bad.jpg"):
        encoder.encode_named([("bad.jpg", bad)], "q.txt")
