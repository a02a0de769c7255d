"""The discrete V step against brute force, and the label algebra against dense S."""

import itertools

import numpy as np
import pytest
import torch

from hashidx.training import pairwise_loss
from hashidx.similarity import DenseSimilarity, LabelSimilarity, one_hot
from hashidx.solver import linear_term, objective, update_bit, update_codes


def _problem(seed, n=7, m=4, bits=4, classes=3):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    omega = rng.choice(n, m, replace=False)
    u = np.tanh(rng.normal(size=(m, bits)))
    v = np.where(rng.normal(size=(n, bits)) >= 0, 1, -1).astype(np.int8)
    return labels, omega, u, v, LabelSimilarity(labels[omega], labels, classes)


@pytest.mark.parametrize("seed", range(10))
def test_each_bit_update_is_the_exact_minimiser(seed):
    labels, omega, u, v, sim = _problem(seed)
    s, lam = sim.dense(), 5.0
    q, gram = linear_term(u, omega, sim, lam), u.T @ u
    current = v.astype(np.float64)
    for k in range(u.shape[1]):
        # Enumerate every column k in {-1,+1}^n with the other bits as they stand.
        best = min(objective(_with_column(current, k, col), u, omega, s, lam)
                   for col in itertools.product((-1, 1), repeat=len(labels)))
        update_bit(current, q, gram, k)
        assert objective(current, u, omega, s, lam) == pytest.approx(best, rel=1e-12)


def _with_column(v, k, col):
    out = v.copy()
    out[:, k] = col
    return out


def _bit_k(v, u, omega, sim, lam, k):
    """The per-bit formula of design.md §1, written literally with a dense S."""
    bits = u.shape[1]
    q = -2 * bits * sim.dense().T @ u
    q[omega] -= 2 * lam * u
    rest = [j for j in range(bits) if j != k]
    val = -(q[:, k] + 2 * v[:, rest] @ (u[:, rest].T @ u[:, k]))
    return np.where(val >= 0, 1, -1)


@pytest.mark.parametrize("seed", range(10))
def test_objective_never_increases(seed):
    labels, omega, u, v, sim = _problem(seed, n=12, m=6, bits=8)
    s = sim.dense()
    before = objective(v, u, omega, s, 200.0)
    for _ in range(3):
        v = update_codes(v, u, omega, sim, 200.0)
        after = objective(v, u, omega, s, 200.0)
        assert after <= before + 1e-9
        before = after


def test_sweep_matches_bitwise_reference():
    """update_codes equals the literal per-bit formula of design.md §1 applied in sequence."""
    labels, omega, u, v, sim = _problem(3, n=30, m=10, bits=16, classes=4)
    ref = v.copy()
    for k in range(u.shape[1]):
        ref[:, k] = _bit_k(ref, u, omega, sim, 200.0, k)
    np.testing.assert_array_equal(update_codes(v, u, omega, sim, 200.0), ref)


def test_label_algebra_matches_dense_similarity():
    classes = 5
    labels, omega, u, v, fast = _problem(0, n=50, m=20, bits=8, classes=classes)
    dense = DenseSimilarity(one_hot(labels[omega], classes), one_hot(labels, classes))
    assert fast.r == pytest.approx(dense.r)
    np.testing.assert_allclose(fast.dense(), dense.s)
    rows = np.array([0, 3, 7])
    np.testing.assert_allclose(fast.t_matmul(u), dense.t_matmul(u))
    np.testing.assert_allclose(fast.matmul_rows(v, rows), dense.matmul_rows(v, rows))
    np.testing.assert_allclose(fast.row_square_sums(rows), dense.row_square_sums(rows))
    np.testing.assert_array_equal(update_codes(v, u, omega, fast, 200.0), update_codes(v, u, omega, dense, 200.0))


def test_pairwise_loss_without_batch_by_n_product_matches_direct_sum():
    labels, omega, _, v, sim = _problem(1, n=40, m=16, bits=8, classes=4)
    v = v.astype(np.float64)
    rows = np.array([1, 2, 5, 9])
    u = torch.tanh(torch.from_numpy(np.random.default_rng(1).normal(size=(len(rows), 8)))).requires_grad_(True)
    fast = pairwise_loss(u, torch.from_numpy(v.T @ v), torch.from_numpy(sim.matmul_rows(v, rows)),
                         torch.from_numpy(sim.row_square_sums(rows)))
    direct = ((u @ torch.from_numpy(v).T - 8 * torch.from_numpy(sim.dense()[rows])) ** 2).sum()
    assert fast.item() == pytest.approx(direct.item(), rel=1e-10)
    g_fast, = torch.autograd.grad(fast, u)
    g_direct, = torch.autograd.grad(direct, u)
    np.testing.assert_allclose(g_fast.numpy(), g_direct.numpy(), rtol=1e-9)


def test_soft_similarity_ratio():
    labels = np.array([0, 0, 1, 2])
    sim = LabelSimilarity(labels[:2], labels, 3)
    # rows 0,1 are class 0: 2 similar each -> 4 similar, 4 dissimilar
    assert sim.r == pytest.approx(1.0)
    np.testing.assert_allclose(sim.dense(), [[1, 1, -1, -1], [1, 1, -1, -1]])
