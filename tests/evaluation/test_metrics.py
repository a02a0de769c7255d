"""Metrics on hand-checked rankings, and the tie-aware closed forms against brute force."""

import itertools

import numpy as np
import pytest

from hashidx.codes.binary import hamming, pack, sign
from hashidx.evaluation.metrics import (
    asymmetric_scores,
    average_precision,
    expected_acg,
    expected_ap,
    expected_ndcg,
    expected_precision,
    group_ids,
    precision_within_radius,
    rank,
    ranking_keys,
    retrieval_metrics,
    tie_groups,
)


def test_average_precision_by_hand():
    rel = np.array([[1, 0, 1, 0], [0, 0, 0, 0], [0, 1, 1, 1]], dtype=bool)
    # q0: (1/1 + 2/3)/2 ; q1: no relevant -> 0 ; q2: (1/2 + 2/3 + 3/4)/3
    np.testing.assert_allclose(average_precision(rel), [(1 + 2 / 3) / 2, 0, (1 / 2 + 2 / 3 + 3 / 4) / 3])
    np.testing.assert_allclose(average_precision(rel, k=2), [1.0, 0, 0.5])


def test_ties_keep_database_order():
    dist = np.array([[2, 1, 1, 0, 1]])
    np.testing.assert_array_equal(rank(dist), [[3, 1, 2, 4, 0]])


def test_precision_within_radius_counts_empty_balls_as_zero():
    dist = np.array([[0, 3, 2], [5, 5, 5]])
    rel = np.array([[True, True, False], [True, True, True]])
    np.testing.assert_allclose(precision_within_radius(dist, rel, 2), [0.5, 0.0])


def test_perfect_codes_score_one():
    rng = np.random.default_rng(0)
    centres = sign(rng.normal(size=(3, 32)))
    db_labels = np.repeat(np.arange(3), 10)
    q_labels = np.arange(3)
    m = retrieval_metrics(pack(centres[q_labels]), q_labels, pack(centres[db_labels]), db_labels, ks=(5, 100))
    assert m["mAP"] == pytest.approx(1.0) and m["P@5"] == pytest.approx(1.0) and m["P@H<=2"] == pytest.approx(1.0)
    assert m["mAP@100"] == pytest.approx(1.0)  # k above n is cut to n


def _db_order_metrics(dist, shared, k):
    """Every metric of one ranking with ties in database order, by the textbook formulas."""
    order = np.argsort(dist, axis=1, kind="stable")
    s = np.take_along_axis(shared, order, 1).astype(float)
    rel = s > 0
    top_rel, top_s = rel[:, :k], s[:, :k]
    pos = np.arange(1, k + 1)
    n_rel_k = top_rel.sum(1)
    prec = top_rel.cumsum(1) / pos
    acg_p = top_s.cumsum(1) / pos
    ap_k = np.divide((prec * top_rel).sum(1), n_rel_k, out=np.zeros(len(s)), where=n_rel_k > 0)
    wap_k = np.divide((acg_p * top_rel).sum(1), n_rel_k, out=np.zeros(len(s)), where=n_rel_k > 0)
    disc = 1 / np.log2(pos + 1)
    dcg = ((2**top_s - 1) * disc).sum(1)
    ideal = ((2 ** -np.sort(-shared, 1)[:, :k].astype(float) - 1) * disc).sum(1)
    return {
        "ap": average_precision(rel),
        "ap_k": ap_k,
        "wap_k": wap_k,
        "p_k": top_rel.sum(1) / k,
        "acg_k": top_s.sum(1) / k,
        "ndcg_k": np.divide(dcg, ideal, out=np.zeros(len(s)), where=ideal > 0),
    }


@pytest.mark.parametrize("seed", range(6))
def test_tie_aware_metrics_equal_the_mean_over_every_database_order(seed):
    """The closed forms against brute force: every permutation of a 7-item database, ties in db order."""
    rng = np.random.default_rng(seed)
    n, q, k = 7, 4, int(rng.integers(1, 7))
    dist = rng.integers(0, 3, size=(q, n))
    shared = rng.integers(0, 3, size=(q, n)) * (rng.random((q, n)) < 0.6)
    expected = {name: np.zeros(q) for name in ("ap", "ap_k", "wap_k", "p_k", "acg_k", "ndcg_k")}
    perms = list(itertools.permutations(range(n)))
    for perm in perms:
        for name, value in _db_order_metrics(dist[:, perm], shared[:, perm], k).items():
            expected[name] += value / len(perms)
    g = tie_groups([dist], shared)
    np.testing.assert_allclose(expected_ap(g, n), expected["ap"])
    np.testing.assert_allclose(expected_ap(g, k), expected["ap_k"])
    np.testing.assert_allclose(expected_ap(g, k, weighted=True), expected["wap_k"])
    np.testing.assert_allclose(expected_precision(g, k), expected["p_k"])
    np.testing.assert_allclose(expected_acg(g, k), expected["acg_k"])
    np.testing.assert_allclose(expected_ndcg(g, shared, k), expected["ndcg_k"])


def test_tie_groups_under_two_keys_split_ties_of_the_first():
    dist = np.array([[1, 0, 1, 1]])
    score = np.array([[0.5, 0.0, 0.2, 0.5]])
    gid, n = group_ids([dist, -score])
    assert n == 3 and gid.tolist() == [[1, 0, 2, 1]]


def test_headline_map_does_not_depend_on_database_order():
    rng = np.random.default_rng(1)
    centres = sign(rng.normal(size=(4, 16)))
    db_labels = rng.integers(0, 4, 60)
    db = pack(centres[np.where(rng.random(60) < 0.3, rng.integers(0, 4, 60), db_labels)])  # codes tie across labels
    q_labels = rng.integers(0, 4, 10)
    q = pack(sign(centres[q_labels] + rng.normal(scale=0.8, size=(10, 16))))
    perm = rng.permutation(60)
    a = retrieval_metrics(q, q_labels, db, db_labels)
    b = retrieval_metrics(q, q_labels, db[perm], db_labels[perm])
    for name in ("mAP", "mAP@10", "P@10", "mAP@50"):
        assert a[name] == pytest.approx(b[name], abs=1e-12)
    assert a["mAP_db_order"] != pytest.approx(b["mAP_db_order"], abs=1e-6)  # what the tie-aware figure fixes


def test_multilabel_metrics_by_hand():
    # one query with labels {0, 1}; database: {0,1}, {1}, {2}; ranked exactly in that order
    q = pack(np.ones((1, 8), dtype=np.int8))
    db = pack(np.array([[1] * 8, [1] * 7 + [-1], [1] * 6 + [-1, -1]], dtype=np.int8))
    m = retrieval_metrics(q, np.array([[1, 1, 0]]), db, np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1]]), ks=(2,))
    assert m["mAP"] == pytest.approx(1.0) and m["P@2"] == pytest.approx(1.0)
    assert m["ACG@2"] == pytest.approx(1.5)
    assert m["NDCG@2"] == pytest.approx(1.0)
    assert m["WAP@2"] == pytest.approx((2 / 1 + 3 / 2) / 2)


def test_rerank_orders_a_shell_by_the_asymmetric_score():
    db = pack(np.array([[1, 1, 1, 1, 1, 1, 1, -1], [-1, 1, 1, 1, 1, 1, 1, 1]], dtype=np.int8))
    labels = np.array([0, 1])
    u = np.array([[0.1, 1, 1, 1, 1, 1, 1, 0.9]])  # both items at distance 1; item 1 differs on a weak bit
    q = pack(sign(u))
    plain = retrieval_metrics(q, np.array([1]), db, labels, ks=(1,))
    ties = retrieval_metrics(q, np.array([1]), db, labels, ks=(1,), query_real=u, rerank="ties")
    assert plain["P@1"] == pytest.approx(0.5) and ties["P@1"] == pytest.approx(1.0)
    assert ranking_keys(hamming(q, db), asymmetric_scores(u, db), 1)[0].tolist() == [[-1, -1]]
