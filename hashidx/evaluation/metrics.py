"""Retrieval metrics over a ranking with ties, in expectation over the order of tied items.

One definition, used by `evaluate` and `bench` (formulas in docs/metrics.md):
- A query ranks the whole database by a key: the Hamming distance, or with re-ranking the distance and
  the asymmetric score uᵀv. Items with equal keys tie. The headline figures are *tie-aware*: their
  expected value when tied items come in random order (McSherry & Najork, ECIR 2008), so they do not
  depend on the order the database is stored in.
- Labels are class indices (n,) or multi-hot rows (n x C). An item is relevant when it shares at
  least one label with the query; `shared` counts the labels it shares (1 for a relevant single-label item).
- mAP: mean over queries of average precision over the whole ranking (the ADSH/AHCL authors'
  definition); a query with no relevant item scores 0. `mAP_db_order` breaks ties in database order
  instead (the authors' script, up to its unstable argsort), so older figures stay comparable.
- mAP@k: AP over the top k, normalised by the relevant items in the top k. P@k: relevant items in
  the top k over k. ACG@k: mean `shared` of the top k. NDCG@k: DCG with gain 2^shared − 1 and
  discount 1/log2(1+position), over the DCG of the ideal order. WAP@k: AP@k with precision replaced
  by ACG (Zhao et al., CVPR 2015); equal to mAP@k for single-label data.
- P@H≤r: precision of the items within Hamming radius r (order-free); a query with nothing inside scores 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hashidx.codes.binary import hamming, unpack
from hashidx.results.rerank import k_prime

P_AT_K_CUTOFFS = (1, 5, 10, 20, 50, 100, 200, 500, 1000)
# Queries ranked at a time: bounds memory at a few (chunk x n) arrays whatever the query count.
QUERY_CHUNK = 256


def rank(dist: np.ndarray) -> np.ndarray:
    """Database order per query by Hamming distance, ties broken by database order."""
    return np.argsort(dist, axis=1, kind="stable")


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


def shared_labels(query_labels: np.ndarray, db_labels: np.ndarray) -> np.ndarray:
    """Labels each database item shares with each query (q x n, int32): 0/1 for class indices."""
    if db_labels.ndim == 1:
        return (query_labels[:, None] == db_labels[None, :]).astype(np.int32)
    return (query_labels.astype(np.int32) @ db_labels.astype(np.int32).T).astype(np.int32)


@dataclass
class TieGroups:
    """Per query, its ranking's tie groups in ranked order (q x G; empty groups have size 0).

    size: items; rel: relevant items; shared: sum of shared labels; gain: sum of 2^shared − 1.
    """

    size: np.ndarray
    rel: np.ndarray
    shared: np.ndarray
    gain: np.ndarray

    @property
    def before(self) -> np.ndarray:
        """Items ranked ahead of each group."""
        return np.cumsum(self.size, axis=1) - self.size


def group_ids(keys: Sequence[np.ndarray]) -> tuple[np.ndarray, int]:
    """Each item's tie group (q x n) under lexicographic `keys` (most significant first), and the group count.

    A single non-negative integer key (a Hamming distance) is its own group id: no sort needed.
    """
    if len(keys) == 1 and keys[0].dtype.kind in "iu":
        return keys[0].astype(np.int64), int(keys[0].max()) + 1
    order = np.lexsort(tuple(reversed(keys)), axis=1)
    changed = np.zeros(order.shape, dtype=bool)
    for key in keys:
        s = np.take_along_axis(key, order, 1)
        changed[:, 1:] |= s[:, 1:] != s[:, :-1]
    gid = np.empty(order.shape, dtype=np.int64)
    np.put_along_axis(gid, order, np.cumsum(changed, axis=1), 1)
    return gid, int(gid.max()) + 1


def tie_groups(keys: Sequence[np.ndarray], shared: np.ndarray) -> TieGroups:
    """Group statistics of rankings by `keys` (each q x n) for `shared` label counts (q x n)."""
    gid, n_groups = group_ids(keys)
    flat = (gid + n_groups * np.arange(len(gid))[:, None]).ravel()

    def total(weights: np.ndarray | None) -> np.ndarray:
        return np.bincount(flat, weights, minlength=len(gid) * n_groups).reshape(len(gid), n_groups)

    s = shared.ravel().astype(np.float64)
    return TieGroups(total(None), total((s > 0).astype(np.float64)), total(s), total(np.exp2(s) - 1))


def _harmonic(n: int) -> np.ndarray:
    """H[j] = Σ_{i≤j} 1/i for j = 0..n."""
    return np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, n + 1))])


def _log_factorial(n: int) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1)))])


def _within(g: TieGroups, k: int) -> np.ndarray:
    """Positions of each group that fall inside the top k."""
    return np.clip(k - g.before, 0, g.size)


def _shell_sum(a: np.ndarray, b: np.ndarray, t: np.ndarray, m: np.ndarray, harmonic: np.ndarray) -> np.ndarray:
    """Σ_{i=1..m} (a + b(i−1)) / (t+i), in closed form with harmonic numbers."""
    return m * b + (a - b * (t + 1)) * (harmonic[t + m] - harmonic[t])


def expected_ap(g: TieGroups, k: int, weighted: bool = False) -> np.ndarray:
    """Per-query expected AP@k (WAP@k when `weighted`) over random orders of tied items.

    AP@k = Σ_{p≤k} rel(p)·prec(p) / Rel@k, where prec(p) is the precision at p (WAP: the mean shared
    labels of the top p). A tie group of n items, r relevant, s shared labels in all, after t items
    whose shared labels sum to A: position t+i holds a relevant item with probability r/n, and given
    that, each earlier slot of the group a relevant one with probability (r−1)/(n−1), so it adds
    (a + b(i−1)) / (t+i) with a = (rA + s)/n, b = s(r−1)/(n(n−1)). The group cut by position k leaves
    h of its relevant items inside with hypergeometric probability; Rel@k depends on h, so the
    expectation is summed over h.
    """
    n = g.size.astype(np.int64)
    r = g.rel
    s = g.shared if weighted else g.rel
    t = g.before.astype(np.int64)
    harmonic = _harmonic(int(n.sum(axis=1).max(initial=0)) + 1)
    a_before = np.cumsum(s, axis=1) - s
    inside = t + n <= k
    safe_n = np.maximum(n, 1)
    a = (r * a_before + s) / safe_n
    b = np.where(n > 1, s * (r - 1) / (safe_n * np.maximum(n - 1, 1)), 0.0)
    whole = np.where(inside & (r > 0), _shell_sum(a, b, t, n, harmonic), 0.0).sum(axis=1)
    rel_whole = np.where(inside, r, 0.0).sum(axis=1)
    # The one group cut by k, if any: t < k < t+n.
    cut = (t < k) & (t + n > k)
    has_cut = cut.any(axis=1)
    j = cut.argmax(axis=1)
    rows = np.arange(len(n))

    def at(x: np.ndarray) -> np.ndarray:
        return np.where(has_cut, x[rows, j], 0)

    cn, cr, cs, ct = at(n).astype(np.int64), at(r).astype(np.int64), at(s), at(t).astype(np.int64)
    ca = at(a_before)
    m = np.where(has_cut, k - ct, 0)
    h = np.arange(int(np.minimum(m, cr).max(initial=0)) + 1)[None, :]
    lf = _log_factorial(int(cn.max(initial=0)) + 1)
    valid = (h <= np.minimum(m, cr)[:, None]) & (m[:, None] - h <= (cn - cr)[:, None])
    hc = np.where(valid, h, 0)
    log_p = (
        lf[cr][:, None]
        - lf[hc]
        - lf[np.maximum(cr[:, None] - hc, 0)]
        + lf[np.maximum((cn - cr)[:, None], 0)]
        - lf[np.maximum(m[:, None] - hc, 0)]
        - lf[np.maximum((cn - cr)[:, None] - m[:, None] + hc, 0)]
        - (lf[cn] - lf[m] - lf[np.maximum(cn - m, 0)])[:, None]
    )
    p = np.where(valid, np.exp(log_p), 0.0)
    safe_m, safe_r = np.maximum(m, 1)[:, None], np.maximum(cr, 1)[:, None]
    per_rel = (ca[:, None] + cs[:, None] / safe_r) / safe_m  # a / h
    per_pair = np.where(m[:, None] > 1, cs[:, None] / (safe_r * safe_m * np.maximum(m[:, None] - 1, 1)), 0.0)
    tm = (ct + m)[:, None]
    d_h = harmonic[tm] - harmonic[ct[:, None]]
    c_h = hc * per_rel * d_h + hc * (hc - 1) * per_pair * (m[:, None] - (ct[:, None] + 1) * d_h)
    denom = rel_whole[:, None] + hc
    value = np.divide(whole[:, None] + c_h, denom, out=np.zeros(denom.shape), where=denom > 0)
    return (p * value).sum(axis=1)


def expected_precision(g: TieGroups, k: int) -> np.ndarray:
    """Per-query expected P@k: each group's relevant share times its positions inside the top k."""
    return (g.rel / np.maximum(g.size, 1) * _within(g, k)).sum(axis=1) / k


def expected_acg(g: TieGroups, k: int) -> np.ndarray:
    """Per-query expected ACG@k: mean shared labels of the top k."""
    return (g.shared / np.maximum(g.size, 1) * _within(g, k)).sum(axis=1) / k


def expected_ndcg(g: TieGroups, shared: np.ndarray, k: int) -> np.ndarray:
    """Per-query expected NDCG@k: each group's mean gain times the discounts of its positions in the top k."""
    discount = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))])
    t = g.before.astype(np.int64)
    lo, hi = np.minimum(t, k), np.minimum(t + g.size.astype(np.int64), k)
    dcg = (g.gain / np.maximum(g.size, 1) * (discount[hi] - discount[lo])).sum(axis=1)
    best = -np.sort(-shared, axis=1)[:, :k]
    ideal = ((np.exp2(best) - 1) / np.log2(np.arange(2, best.shape[1] + 2))).sum(axis=1)
    return np.divide(dcg, ideal, out=np.zeros_like(dcg), where=ideal > 0)


def precision_within_radius(dist: np.ndarray, relevant: np.ndarray, radius: int) -> np.ndarray:
    inside = dist <= radius
    n_inside = inside.sum(axis=1)
    hits = (inside & relevant).sum(axis=1)
    return np.divide(hits, n_inside, out=np.zeros(len(dist)), where=n_inside > 0)


def pr_sums(dist: np.ndarray, relevant: np.ndarray, bits: int) -> np.ndarray:
    """Per radius 0..bits (rows): Σ precision over queries with a non-empty ball, their count, Σ recall.

    Sums, so that query blocks add up; `pr_curve` turns them into means.
    """
    n_rel = np.maximum(relevant.sum(axis=1), 1)
    out = np.zeros((bits + 1, 3))
    for r in range(bits + 1):
        inside = dist <= r
        hits = (inside & relevant).sum(axis=1)
        n_inside = inside.sum(axis=1)
        has = n_inside > 0
        out[r] = (hits[has] / n_inside[has]).sum(), has.sum(), (hits / n_rel).sum()
    return out


def pr_curve(sums: np.ndarray, n_queries: int) -> dict[str, list]:
    """Mean precision and recall of the Hamming ball of each radius, from `pr_sums` over all queries.

    Precision averages over the queries whose ball is not empty; radii where every ball is empty
    (precision undefined) are left out.
    """
    kept = np.flatnonzero(sums[:, 1] > 0)
    return {
        "radius": kept.tolist(),
        "precision": (sums[kept, 0] / sums[kept, 1]).tolist(),
        "recall": (sums[kept, 2] / n_queries).tolist(),
    }


RERANK_MODES = ("none", "ties")  # or an integer K′: the K′ nearest by Hamming, re-ranked


def ranking_keys(
    dist: np.ndarray, scores: np.ndarray | None, rerank: str | int, content: np.ndarray | None = None
) -> list[np.ndarray]:
    """The sort keys (most significant first) of a ranking by Hamming distance, re-ranked by `scores` = uᵀv.

    "none": distance only. "ties": the score orders items at equal distance. An integer K′: the items
    within the K′-th smallest distance (the whole shell there, so the set does not depend on storage
    order) are ranked by score alone, ahead of the rest, which keep their distance order. "features": the
    default K′, and among the candidates of equal score the `content` cosine (results.rerank).
    """
    if rerank == "none" or scores is None:
        return [dist]
    if rerank == "ties":
        return [dist, -scores]
    depth = k_prime(rerank)
    assert depth is not None  # none and ties returned above
    depth = min(depth, dist.shape[1])
    radius = np.partition(dist, depth - 1, axis=1)[:, depth - 1 : depth]
    candidate = dist <= radius
    keys = [np.where(candidate, -1, dist), np.where(candidate, -scores, 0.0)]
    if rerank == "features":
        assert content is not None
        keys.append(np.where(candidate, -content, 0.0))
    return keys


def asymmetric_scores(query_real: np.ndarray, db_codes: np.ndarray) -> np.ndarray:
    """uᵀv of real query outputs (q x bits) against packed database codes, computed once per distinct code
    so that identical codes score identically (and tie)."""
    distinct, inverse = np.unique(db_codes, axis=0, return_inverse=True)
    v = unpack(distinct, query_real.shape[1]).astype(np.float64)
    return (query_real.astype(np.float64) @ v.T)[:, inverse.ravel()]


def retrieval_metrics(
    query_codes: np.ndarray,
    query_labels: np.ndarray,
    db_codes: np.ndarray,
    db_labels: np.ndarray,
    ks: tuple[int, ...] = (10, 50, 100),
    radius: int = 2,
    with_curve: bool = False,
    query_real: np.ndarray | None = None,
    rerank: str | int = "none",
    query_content: np.ndarray | None = None,
    db_content: np.ndarray | None = None,
) -> dict:
    """All metrics of the module docstring for packed query/database codes and labels (class indices or
    multi-hot). With `query_real` (the queries' network outputs u), `rerank` orders by uᵀv as `ranking_keys` says.
    """
    multilabel = db_labels.ndim == 2
    n_db, bits = db_codes.shape[0], db_codes.shape[1] * 8
    cutoffs = [k for k in P_AT_K_CUTOFFS if k <= n_db] if with_curve else []
    sums: dict[str, float] = {}
    pr = np.zeros((bits + 1, 3))

    def add(name: str, values: np.ndarray) -> None:
        sums[name] = sums.get(name, 0.0) + float(values.sum())

    for lo in range(0, len(query_codes), QUERY_CHUNK):
        dist = hamming(query_codes[lo : lo + QUERY_CHUNK], db_codes)
        shared = shared_labels(query_labels[lo : lo + QUERY_CHUNK], db_labels)
        relevant = shared > 0
        scores = None if query_real is None else asymmetric_scores(query_real[lo : lo + QUERY_CHUNK], db_codes)
        content = None
        if rerank == "features" and query_content is not None and db_content is not None:
            content = query_content[lo : lo + QUERY_CHUNK].astype(np.float32) @ db_content.astype(np.float32).T
        g = tie_groups(ranking_keys(dist, scores, rerank, content), shared)
        add("mAP", expected_ap(g, n_db))
        add("mAP_db_order", average_precision(np.take_along_axis(relevant, rank(dist), axis=1)))
        for k in ks:
            k_eff = min(k, n_db)
            add(f"mAP@{k}", expected_ap(g, k_eff))
            add(f"P@{k}", expected_precision(g, k_eff))
            if multilabel:
                add(f"NDCG@{k}", expected_ndcg(g, shared, k_eff))
                add(f"ACG@{k}", expected_acg(g, k_eff))
                add(f"WAP@{k}", expected_ap(g, k_eff, weighted=True))
        add(f"P@H<={radius}", precision_within_radius(dist, relevant, radius))
        for k in cutoffs:
            add(f"curve P@{k}", expected_precision(g, k))
        if with_curve:
            pr += pr_sums(dist, relevant, bits)
    n_q = max(len(query_codes), 1)
    out: dict = {name: total / n_q for name, total in sums.items() if not name.startswith("curve ")}
    if with_curve:
        out["pr_curve"] = pr_curve(pr, n_q)
        out["p_at_k_curve"] = {"k": cutoffs, "precision": [sums[f"curve P@{k}"] / n_q for k in cutoffs]}
    return out
