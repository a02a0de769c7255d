"""ITQ and LSH against their numpy definitions."""

import numpy as np
import pytest

from hashidx.errors import HashidxError
from hashidx.methods.baselines import fit_itq, fit_lsh, itq_rotation


def _features(n=300, d=40, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, 8)) @ rng.normal(size=(8, d)) + 0.1 * rng.normal(size=(n, d)) + 3).astype(np.float32)


def test_itq_rotation_is_orthogonal_and_its_loss_never_rises():
    x = _features()
    x = x - x.mean(0)
    v = x @ np.linalg.svd(x, full_matrices=False)[2][:16].T
    r, losses = itq_rotation(v.astype(np.float64), iterations=30)
    np.testing.assert_allclose(r.T @ r, np.eye(16), atol=1e-10)
    assert all(b <= a + 1e-6 for a, b in zip(losses, losses[1:]))
    assert losses[-1] < losses[0]


def test_itq_projection_is_pca_then_rotation():
    x = _features()
    h = fit_itq(x, 16, seed=3)
    centred = x - x.mean(0)
    # Same subspace as the top-16 principal directions: projecting W onto that subspace keeps it.
    top = np.linalg.svd(centred, full_matrices=False)[2][:16].T
    w = h.projection.numpy()
    np.testing.assert_allclose(top @ (top.T @ w), w, atol=1e-4)
    # Columns stay orthonormal (PCA basis times a rotation), so the code bits are decorrelated.
    np.testing.assert_allclose(w.T @ w, np.eye(16), atol=1e-4)
    np.testing.assert_allclose(h.embed(x), centred @ w, rtol=1e-4, atol=1e-3)


def test_lsh_is_sign_of_seeded_gaussian_projections():
    x = _features()
    a, b, c = fit_lsh(x, 32, seed=1), fit_lsh(x, 32, seed=1), fit_lsh(x, 32, seed=2)
    expected = np.random.default_rng(1).standard_normal((x.shape[1], 32))
    np.testing.assert_allclose(a.projection.numpy(), expected, rtol=1e-6)
    np.testing.assert_array_equal(a.embed(x), b.embed(x))
    assert not np.array_equal(a.embed(x), c.embed(x))
    np.testing.assert_allclose(a.mean.numpy(), x.mean(0), rtol=1e-6)


def test_itq_refuses_more_bits_than_data():
    with pytest.raises(HashidxError, match="training pool of at least 16 images"):
        fit_itq(_features(n=10), 16)
