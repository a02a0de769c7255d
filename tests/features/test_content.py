"""Content vectors: principal components of real frozen features, the same bytes on every rerun."""

import numpy as np

from hashidx.features.cache import FeatureCache
from hashidx.features.content import ContentProjection, content_similarity


def test_a_projection_is_reproducible_and_gives_unit_vectors(ucmd_features):
    x = np.asarray(FeatureCache.load(ucmd_features).features)
    a, b = ContentProjection.fit(x, 16), ContentProjection.fit(x.copy(), 16)
    assert a.dims == 16 and a.components.shape == (x.shape[1], 16)
    assert np.array_equal(a.components, b.components) and np.array_equal(a.apply(x), b.apply(x))
    z = a.apply(x)
    assert z.dtype == np.float16
    np.testing.assert_allclose(np.linalg.norm(z.astype(np.float32), axis=1), 1.0, atol=2e-3)
    # The leading direction carries the most variance of the centred features.
    spread = ((x - a.mean) @ a.components).var(axis=0)
    assert (np.diff(spread) <= 1e-3 * spread[0]).all()


def test_each_image_is_closest_to_itself(ucmd_features):
    x = np.asarray(FeatureCache.load(ucmd_features).features)
    z = ContentProjection.fit(x, 32).apply(x)
    sim = content_similarity(z, np.broadcast_to(z, (len(z), *z.shape)))
    assert (sim.argmax(axis=1) == np.arange(len(z))).mean() > 0.95


def test_arrays_round_trip():
    rng = np.random.default_rng(0)
    p = ContentProjection.fit(rng.standard_normal((50, 8)), 4)
    back = ContentProjection.from_arrays(p.arrays())
    assert back is not None and np.array_equal(back.components, p.components) and np.array_equal(back.mean, p.mean)
    assert ContentProjection.from_arrays({}) is None
