"""Asymmetric re-ranking of Hamming candidates by uᵀv: the query's real outputs against database codes.

uᵀv is what AHCL's loss fits to c·S, so it orders items that Hamming distance ties, and (over the K′
nearest) weighs each differing bit by how sure the network was of it. Modes match the evaluation's
(`hashidx.evaluation.metrics.ranking_keys`): "none", "ties", an integer K′, or "features": the default K′,
then the cosine of content vectors (features.content) among items of equal uᵀv, which share a code.
"""

from __future__ import annotations

import numpy as np

from hashidx.codes.binary import unpack
from hashidx.errors import HashidxError
from hashidx.features.content import content_similarity

_NO_ID = np.iinfo(np.int64).max
# The K′ nearest by Hamming re-ranked by uᵀv: chosen on validation splits carved from the UC Merced
# database (benchmarks/validate_ucmd.py --rerank; docs/choices-measured.md).
DEFAULT_RERANK: str | int = 400


MODES = ("none", "ties", "features")


def parse_rerank(value: str | int) -> str | int:
    """none, ties, features, or K′ (a positive integer) from a command-line value."""
    if isinstance(value, int) or str(value).isdigit():
        depth = int(value)
        if depth < 1:
            raise HashidxError(f"--rerank {value}: K′ must be a positive number of candidates")
        return depth
    if value not in MODES:
        raise HashidxError(
            f"--rerank {value!r}: use none, ties, features, or a number K′ of Hamming candidates to re-rank"
        )
    return str(value)


def k_prime(mode: str | int) -> int | None:
    """How many Hamming-nearest a mode ranks by uᵀv alone (its K′; "features" takes the default), or None for
    none and ties."""
    if mode == "features":
        return int(DEFAULT_RERANK)
    return None if isinstance(mode, str) else int(mode)


def candidates_for(k: int, mode: str | int) -> int:
    """How many Hamming neighbours (plus their tie shell) the re-ranking needs for k results."""
    depth = k_prime(mode)
    return k if depth is None else max(k, depth)


def rerank(
    dist: np.ndarray,
    ids: np.ndarray,
    codes: np.ndarray,
    query_real: np.ndarray,
    k: int,
    mode: str | int,
    query_content: np.ndarray | None = None,
    content: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The top k of each row of candidates (id −1 = empty), re-ranked by uᵀv: (distances, ids, scores).

    `codes` are the candidates' packed codes (q x width x bytes). "ties": by (distance, −score, id).
    K′: every candidate by (−score, id); pass the K′ nearest and their whole tie shell. "features": by
    (−score, −cosine of `query_content` (q x dims) with the candidates' `content` (q x width x dims), id).
    """
    v = unpack(codes.reshape(-1, codes.shape[-1]), query_real.shape[1]).reshape(*ids.shape, -1)
    scores = np.einsum("qc,qwc->qw", query_real.astype(np.float64), v.astype(np.float64))
    empty = ids < 0
    id_key = np.where(empty, _NO_ID, ids)
    score_key = np.where(empty, np.inf, -scores)
    if mode == "ties":
        order = np.lexsort((id_key, score_key, np.where(empty, np.iinfo(dist.dtype).max, dist)), axis=1)
    elif mode == "features":
        assert query_content is not None and content is not None
        order = np.lexsort((id_key, -content_similarity(query_content, content), score_key), axis=1)
    else:
        order = np.lexsort((id_key, score_key), axis=1)
    order = order[:, :k]
    take = np.take_along_axis
    out_ids = take(ids, order, 1)
    return take(dist, order, 1), out_ids, np.where(out_ids < 0, np.nan, take(scores, order, 1))
