"""The discrete database-code step of AHCL/ADSH: bit-wise exact minimisation with the network fixed.

Objective (V in {-1,+1}^{n x c}, U the network outputs for the sampled rows Ω):
    J(V) = ||U Vᵀ − c·S||² + λ·||V_Ω − U||²
         = tr(V UᵀU Vᵀ) + tr(Vᵀ Q) + const,   Q = −2c·SᵀU − 2λ·Ū.
With the other bits fixed, column k's best value is sgn(−(Q_k + 2·V_{≠k} U_{≠k}ᵀ U_k)) row by row.
"""

from __future__ import annotations

import numpy as np

from .codes import sign


def linear_term(u: np.ndarray, omega: np.ndarray, sim, lam: float) -> np.ndarray:
    """Q = −2c·SᵀU − 2λ·Ū (n x c); Ū is zero outside Ω, so only Ω's rows get the λ term."""
    q = -2.0 * u.shape[1] * sim.t_matmul(u)
    q[omega] -= 2.0 * lam * u
    return q


def update_bit(v: np.ndarray, q: np.ndarray, gram: np.ndarray, k: int) -> None:
    """Set column k of V (float, in place) to its exact minimiser with the other bits fixed; O(n·c)."""
    # V_{≠k} U_{≠k}ᵀ U_k = V·G[:, k] − V_k·G[k, k], with G = UᵀU
    cross = v @ gram[:, k] - v[:, k] * gram[k, k]
    v[:, k] = sign(-(q[:, k] + 2.0 * cross))


def update_codes(v: np.ndarray, u: np.ndarray, omega: np.ndarray, sim, lam: float) -> np.ndarray:
    """One sweep over the bits of V (n x c, {-1,+1}); O(n·c²) time, O(n·c) memory."""
    q = linear_term(u, omega, sim, lam)
    gram = u.T.astype(np.float64) @ u
    v = v.astype(np.float64)
    for k in range(u.shape[1]):
        update_bit(v, q, gram, k)
    return v.astype(np.int8)


def objective(v: np.ndarray, u: np.ndarray, omega: np.ndarray, s: np.ndarray, lam: float) -> float:
    """J(V) with a dense S: the reference the solver is tested against."""
    bits = u.shape[1]
    v = v.astype(np.float64)
    return float(((u @ v.T - bits * s) ** 2).sum() + lam * ((v[omega] - u) ** 2).sum())
