"""Metrics on hand-checked rankings."""

import numpy as np
import pytest

from hashidx.codes.binary import pack, sign
from hashidx.evaluation.metrics import average_precision, precision_within_radius, rank, retrieval_metrics


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
