"""Retrieval metrics over a Hamming ranking.

One definition, used by `evaluate` and `bench`:
- The ranking of a query is the whole database sorted by Hamming distance; ties at equal distance
  keep database order (stable sort), so results are reproducible.
- An item is relevant when it shares a label with the query.
- mAP: mean over queries of average precision over the full ranking (the ADSH/AHCL authors'
  definition); a query with no relevant item scores 0.
- mAP@k: the same, with AP taken over the top k only (normalised by the relevant items in the top k).
- P@k: relevant items in the top k, divided by k.
- P@H≤r: precision of the items within Hamming radius r; a query with nothing inside scores 0.
"""

from __future__ import annotations

import numpy as np

from hashidx.codes.binary import hamming

P_AT_K_CUTOFFS = (1, 5, 10, 20, 50, 100, 200, 500, 1000)


def rank(dist: np.ndarray) -> np.ndarray:
    """Database order per query by Hamming distance, ties broken by database order."""
    return np.argsort(dist, axis=1, kind="stable")


def _sorted_relevance(dist: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    return np.take_along_axis(relevant, rank(dist), axis=1)


def average_precision(rel_sorted: np.ndarray, k: int | None = None) -> np.ndarray:
    """Per-query AP of relevance rows already in ranked order, over the top k (None = all)."""
    rel = rel_sorted[:, :k].astype(np.float64)
    hits = rel.cumsum(axis=1)
    positions = np.arange(1, rel.shape[1] + 1)
    n_rel = rel.sum(axis=1)
    ap = (hits / positions * rel).sum(axis=1)
    return np.divide(ap, n_rel, out=np.zeros_like(ap), where=n_rel > 0)


def precision_at_k(rel_sorted: np.ndarray, k: int) -> np.ndarray:
    return rel_sorted[:, :k].sum(axis=1) / float(k)


def precision_within_radius(dist: np.ndarray, relevant: np.ndarray, radius: int) -> np.ndarray:
    inside = dist <= radius
    n_inside = inside.sum(axis=1)
    hits = (inside & relevant).sum(axis=1)
    return np.divide(hits, n_inside, out=np.zeros(len(dist)), where=n_inside > 0)


def pr_curve(dist: np.ndarray, relevant: np.ndarray, bits: int) -> dict[str, list]:
    """Mean precision and recall of the Hamming ball of each radius 0..bits.

    Precision averages over the queries whose ball is not empty; radii where every ball is empty
    (precision undefined) are left out.
    """
    n_rel = np.maximum(relevant.sum(axis=1), 1)
    radius: list[int] = []
    precision: list[float] = []
    recall: list[float] = []
    for r in range(bits + 1):
        inside = dist <= r
        hits = (inside & relevant).sum(axis=1)
        n_inside = inside.sum(axis=1)
        has = n_inside > 0
        if has.any():
            radius.append(r)
            precision.append(float((hits[has] / n_inside[has]).mean()))
            recall.append(float((hits / n_rel).mean()))
    return {"radius": radius, "precision": precision, "recall": recall}


def retrieval_metrics(
    query_codes: np.ndarray,
    query_labels: np.ndarray,
    db_codes: np.ndarray,
    db_labels: np.ndarray,
    ks: tuple[int, ...] = (10, 50, 100),
    radius: int = 2,
    with_curve: bool = False,
) -> dict:
    """All metrics of the module docstring for packed query/database codes and integer labels."""
    dist = hamming(query_codes, db_codes)
    relevant = query_labels[:, None] == db_labels[None, :]
    rel_sorted = _sorted_relevance(dist, relevant)
    out: dict = {"mAP": float(average_precision(rel_sorted).mean())}
    for k in ks:
        k_eff = min(k, db_codes.shape[0])
        out[f"mAP@{k}"] = float(average_precision(rel_sorted, k_eff).mean())
        out[f"P@{k}"] = float(precision_at_k(rel_sorted, k_eff).mean())
    out[f"P@H<={radius}"] = float(precision_within_radius(dist, relevant, radius).mean())
    if with_curve:
        out["pr_curve"] = pr_curve(dist, relevant, db_codes.shape[1] * 8)
        cutoffs = [k for k in P_AT_K_CUTOFFS if k <= db_codes.shape[0]]
        out["p_at_k_curve"] = {
            "k": cutoffs,
            "precision": [float(precision_at_k(rel_sorted, k).mean()) for k in cutoffs],
        }
    return out
