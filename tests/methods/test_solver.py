"""The discrete V step against brute force, and the label algebra against dense S."""

import itertools

import numpy as np
import pytest
import torch

from hashidx.methods.similarity import (
    DenseSimilarity,
    LabelSimilarity,
    MultiLabelSimilarity,
    one_hot,
    row_groups,
    t_matmul,
)
from hashidx.methods.solver import linear_term, objective, update_bit, update_codes
from hashidx.methods.training import pair_targets, pairwise_loss


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
        best = min(
            objective(_with_column(current, k, col), u, omega, s, lam)
            for col in itertools.product((-1, 1), repeat=len(labels))
        )
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


def _same_products(fast, dense, u, v):
    assert fast.r == pytest.approx(dense.r)
    np.testing.assert_allclose(fast.dense(), dense.s)
    np.testing.assert_allclose(t_matmul(fast, u), t_matmul(dense, u))
    np.testing.assert_allclose(fast.matmul(v), dense.matmul(v))
    np.testing.assert_allclose(fast.row_square_sums(), dense.row_square_sums())


def test_label_algebra_matches_dense_similarity():
    classes = 5
    labels, omega, u, v, fast = _problem(0, n=50, m=20, bits=8, classes=classes)
    dense = DenseSimilarity(one_hot(labels[omega], classes), one_hot(labels, classes))
    _same_products(fast, dense, u, v)
    np.testing.assert_array_equal(update_codes(v, u, omega, fast, 200.0), update_codes(v, u, omega, dense, 200.0))


def _multi_hot(rng, n, classes):
    y = rng.random((n, classes)) < 0.25
    y[np.arange(n), rng.integers(0, classes, n)] = True  # every item has at least one label
    return y.astype(np.uint8)


@pytest.mark.parametrize("graded", [False, True])
@pytest.mark.parametrize("block_entries", [1, 7, 64, 1 << 20])
def test_multi_label_column_blocks_match_dense_similarity(block_entries, graded):
    rng = np.random.default_rng(block_entries)
    n, m, bits, classes = 45, 12, 8, 6
    y = _multi_hot(rng, n, classes)
    omega = rng.choice(n, m, replace=False)
    u = np.tanh(rng.normal(size=(m, bits)))
    v = np.where(rng.normal(size=(n, bits)) >= 0, 1, -1).astype(np.int8)
    fast = MultiLabelSimilarity(y[omega], y, block_entries=block_entries, graded=graded)
    dense = DenseSimilarity(y[omega], y, graded=graded)
    _same_products(fast, dense, u, v)
    for _ in range(3):  # the codes stay identical over repeated sweeps, not just the first
        v_fast, v_dense = update_codes(v, u, omega, fast, 200.0), update_codes(v, u, omega, dense, 200.0)
        np.testing.assert_array_equal(v_fast, v_dense)
        v = v_fast


def test_row_blocks_give_the_same_sweep_as_one_block():
    """The V step in row blocks (what keeps 10⁶ items bounded) equals the whole-matrix sweep."""
    labels, omega, u, v, sim = _problem(5, n=300, m=40, bits=16, classes=6)
    whole = update_codes(v, u, omega, sim, 200.0, chunk=300)
    np.testing.assert_array_equal(update_codes(v, u, omega, sim, 200.0, chunk=7), whole)
    dense = DenseSimilarity(one_hot(labels[omega], 6), one_hot(labels, 6))
    np.testing.assert_array_equal(update_codes(v, u, omega, dense, 200.0, chunk=7), whole)


def test_soft_similarity_ratio():
    labels = np.array([0, 0, 1, 2])
    sim = LabelSimilarity(labels[:2], labels, 3)
    # rows 0,1 are class 0: 2 similar each -> 4 similar, 4 dissimilar
    assert sim.r == pytest.approx(1.0)
    np.testing.assert_allclose(sim.dense(), [[1, 1, -1, -1], [1, 1, -1, -1]])


def _settled_problem(seed, n=400, m=30, bits=16, classes=5):
    """Codes as they look after a few iterations: most rows of a class share its code."""
    labels, omega, u, _, _ = _problem(seed, n, m, bits, classes)
    rng = np.random.default_rng(seed + 100)
    class_codes = np.where(rng.normal(size=(classes, bits)) >= 0, 1, -1).astype(np.int8)
    v = class_codes[labels]
    flip = rng.random(v.shape) < 0.02
    v[flip] = -v[flip]
    return labels, omega, u, v


def test_grouped_rows_give_the_same_codes_and_targets_as_every_row():
    """Sweeping one row per (label, code) group equals sweeping all n rows (the dense S has no groups)."""
    labels, omega, u, v = _settled_problem(0)
    fast = LabelSimilarity(labels[omega], labels, 5)
    dense = DenseSimilarity(one_hot(labels[omega], 5), one_hot(labels, 5))
    groups = row_groups(v, fast.row_keys())
    assert len(groups.first) < len(v) // 4 and groups.counts.sum() == len(v)
    np.testing.assert_array_equal(v[groups.first][groups.inverse], v)
    for _ in range(3):
        v_fast, v_dense = update_codes(v, u, omega, fast, 200.0), update_codes(v, u, omega, dense, 200.0)
        np.testing.assert_array_equal(v_fast, v_dense)
        v = v_fast
    grouped = pair_targets(v, fast, groups=row_groups(v, fast.row_keys()))
    plain = pair_targets(v, dense)
    np.testing.assert_array_equal(grouped.ttt.numpy(), plain.ttt.numpy())
    np.testing.assert_allclose(grouped.st.numpy(), plain.st.numpy(), rtol=1e-12)
    np.testing.assert_allclose(grouped.s_sq.numpy(), plain.s_sq.numpy(), rtol=1e-12)


def test_grouped_multi_label_rows_match_dense():
    rng = np.random.default_rng(4)
    labels, omega, u, _ = _settled_problem(1, n=200, m=20, bits=8, classes=4)
    y = _multi_hot(rng, 200, 4)
    set_codes = {tuple(r): np.where(rng.normal(size=8) >= 0, 1, -1) for r in np.unique(y, axis=0)}
    v = np.stack([set_codes[tuple(r)] for r in y]).astype(np.int8)
    fast = MultiLabelSimilarity(y[omega], y, block_entries=97)
    dense = DenseSimilarity(y[omega], y)
    assert len(row_groups(v, fast.row_keys()).first) == len(set_codes)
    np.testing.assert_array_equal(update_codes(v, u, omega, fast, 200.0), update_codes(v, u, omega, dense, 200.0))


def test_train_ahcl_on_multi_hot_labels():
    """The whole AHCL loop runs on multi-hot labels; items sharing a label end up nearer than items sharing none."""
    from hashidx.methods.ahcl import train_ahcl
    from hashidx.methods.training import TrainConfig

    rng = np.random.default_rng(0)
    n, classes, d = 120, 4, 16
    y = _multi_hot(rng, n, classes)
    feats = y.astype(np.float32) @ rng.normal(size=(classes, d)).astype(np.float32) + 0.1 * rng.normal(
        size=(n, d)
    ).astype(np.float32)
    pool = np.arange(0, n, 2)
    _, v, log = train_ahcl(feats[pool], y, classes, TrainConfig(bits=16, iterations=4, hidden=32, batch_size=16), pool)
    assert v.shape == (n, 16) and set(np.unique(v)) == {-1, 1} and len(log["iterations"]) == 4
    dist = (16 - v.astype(np.int64) @ v.T) // 2
    share = (y.astype(np.int64) @ y.T) > 0
    assert dist[share].mean() < dist[~share].mean()


def test_graded_similarity_is_the_jaccard_index_in_soft_form():
    y = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 1]], dtype=np.uint8)
    sim = MultiLabelSimilarity(y[:1], y, graded=True)
    a = np.array([[1.0, 0.5, 0.0]])  # {0,1} vs {0,1}, {0}, {2}
    r = a.sum() / (1 - a).sum()
    np.testing.assert_allclose(sim.r, r)
    np.testing.assert_allclose(sim.dense(), (1 + r) * a - r)


def test_pairwise_loss_without_batch_by_n_product_matches_direct_sum():
    labels, omega, _, v, sim = _problem(1, n=40, m=16, bits=8, classes=4)
    v = v.astype(np.float64)
    rows = np.array([1, 2, 5, 9])
    u = torch.tanh(torch.from_numpy(np.random.default_rng(1).normal(size=(len(rows), 8)))).requires_grad_(True)
    fast = pairwise_loss(
        u,
        torch.from_numpy(v.T @ v),
        torch.from_numpy(sim.matmul(v)[rows]),
        torch.from_numpy(sim.row_square_sums()[rows]),
    )
    direct = ((u @ torch.from_numpy(v).T - 8 * torch.from_numpy(sim.dense()[rows])) ** 2).sum()
    assert fast.item() == pytest.approx(direct.item(), rel=1e-10)
    (g_fast,) = torch.autograd.grad(fast, u)
    (g_direct,) = torch.autograd.grad(direct, u)
    np.testing.assert_allclose(g_fast.numpy(), g_direct.numpy(), rtol=1e-9)


def test_pairwise_loss_matches_direct_sum_for_multi_hot_labels():
    rng = np.random.default_rng(2)
    y = _multi_hot(rng, 30, 5)
    omega = rng.choice(30, 10, replace=False)
    v = np.where(rng.normal(size=(30, 8)) >= 0, 1.0, -1.0)
    sim = MultiLabelSimilarity(y[omega], y, block_entries=33)
    u = torch.tanh(torch.from_numpy(rng.normal(size=(10, 8)))).requires_grad_(True)
    fast = pairwise_loss(
        u, torch.from_numpy(v.T @ v), torch.from_numpy(sim.matmul(v)), torch.from_numpy(sim.row_square_sums())
    )
    direct = ((u @ torch.from_numpy(v).T - 8 * torch.from_numpy(sim.dense())) ** 2).sum()
    assert fast.item() == pytest.approx(direct.item(), rel=1e-10)
