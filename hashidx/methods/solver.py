"""The discrete database-code step of AHCL/ADSH: bit-wise exact minimisation with the network fixed.

Objective (V in {-1,+1}^{n x c}, U the network outputs for the sampled rows Ω):
    J(V) = ||U Vᵀ − c·S||² + λ·||V_Ω − U||²
         = tr(V UᵀU Vᵀ) + tr(Vᵀ Q) + const,   Q = −2c·SᵀU − 2λ·Ū.
With the other bits fixed, column k's best value is sgn(−(Q_k + 2·V_{≠k} U_{≠k}ᵀ U_k)) row by row.
"""

from __future__ import annotations

import numpy as np

from hashidx.codes.binary import sign
from hashidx.methods.similarity import ROW_CHUNK, RowGroups, row_groups


def linear_rows(u: np.ndarray, sim, rows: np.ndarray, lam_u: np.ndarray | None, lam: float) -> np.ndarray:
    """Q[rows] = −2c·(SᵀU)[rows] − 2λ·Ū[rows]; `lam_u` holds Ū's rows there (U's row for an Ω row) or None."""
    q = -2.0 * u.shape[1] * sim.t_rows(u, rows)
    if lam_u is not None:
        q -= 2.0 * lam * lam_u
    return q


def linear_term(u: np.ndarray, omega: np.ndarray, sim, lam: float) -> np.ndarray:
    """Q whole (n x c): for small problems and tests."""
    q = linear_rows(u, sim, np.arange(sim.shape[1]), None, lam)
    q[omega] -= 2.0 * lam * u
    return q


def update_bit(v: np.ndarray, q: np.ndarray, gram: np.ndarray, k: int) -> None:
    """Set column k of V (float, in place) to its exact minimiser with the other bits fixed; O(n·c)."""
    # V_{≠k} U_{≠k}ᵀ U_k = V·G[:, k] − V_k·G[k, k], with G = UᵀU
    cross = v @ gram[:, k] - v[:, k] * gram[k, k]
    v[:, k] = sign(-(q[:, k] + 2.0 * cross))


def _sweep_rows(
    v: np.ndarray, u: np.ndarray, sim, rows: np.ndarray, lam_u: np.ndarray | None, lam: float, chunk: int
) -> np.ndarray:
    """New codes of V[rows] after one sweep over the bits, a block of rows at a time."""
    gram = u.T.astype(np.float64) @ u
    out = np.empty((len(rows), v.shape[1]), dtype=np.int8)
    for lo in range(0, len(rows), chunk):
        q = linear_rows(u, sim, rows[lo : lo + chunk], None if lam_u is None else lam_u[lo : lo + chunk], lam)
        block = v[rows[lo : lo + chunk]].astype(np.float64)
        for k in range(u.shape[1]):
            update_bit(block, q, gram, k)
        out[lo : lo + chunk] = block
    return out


def update_codes(
    v: np.ndarray,
    u: np.ndarray,
    omega: np.ndarray,
    sim,
    lam: float,
    chunk: int = ROW_CHUNK,
    groups: RowGroups | None = None,
) -> np.ndarray:
    """One sweep over the bits of V (n x c, {-1,+1}); O(g·c²) time for g distinct rows, memory O(n·c) int8.

    A row's new bits depend only on its own row of Q and its old bits, so rows are swept in cache-
    sized blocks with the same result as the whole matrix. Outside Ω, Q's row depends only on the
    row's key (its label), so rows sharing key and code share their update: one representative
    per group is swept, then Ω's rows (each with its own λ term) are swept individually.
    """
    groups = groups or row_groups(v, sim.row_keys())
    out = _sweep_rows(v, u, sim, groups.first, None, lam, chunk)[groups.inverse]
    out[omega] = _sweep_rows(v, u, sim, omega, u, lam, chunk)
    return out


def objective(v: np.ndarray, u: np.ndarray, omega: np.ndarray, s: np.ndarray, lam: float) -> float:
    """J(V) with a dense S: the reference the solver is tested against."""
    bits = u.shape[1]
    v = v.astype(np.float64)
    return float(((u @ v.T - bits * s) ** 2).sum() + lam * ((v[omega] - u) ** 2).sum())
