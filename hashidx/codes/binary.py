"""Binary codes: sign with sgn(0)=+1, packing to FAISS's uint8 layout, Hamming distance."""

from __future__ import annotations

import numpy as np


def sign(x: np.ndarray) -> np.ndarray:
    """Elementwise sign as int8 in {-1, +1}; zero maps to +1 (np.sign(0) = 0 would break codes)."""
    return np.where(np.asarray(x) >= 0, 1, -1).astype(np.int8)


def pack(codes: np.ndarray) -> np.ndarray:
    """{-1,+1} (n x c) -> uint8 (n x c/8), bit = 1 for +1, the layout FAISS binary indexes take."""
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[1] % 8:
        raise ValueError(f"codes must be n x c with c a multiple of 8, got shape {codes.shape}")
    return np.packbits(codes > 0, axis=1)


def unpack(packed: np.ndarray, bits: int) -> np.ndarray:
    """Inverse of `pack`: uint8 (n x bits/8) -> int8 {-1,+1} (n x bits)."""
    return np.unpackbits(packed, axis=1, count=bits).astype(np.int8) * 2 - 1


def hamming(query: np.ndarray, database: np.ndarray) -> np.ndarray:
    """Hamming distances (q x n, int32) between packed code sets; the numpy reference for FAISS."""
    out = np.empty((len(query), len(database)), dtype=np.int32)
    for i, q in enumerate(query):
        out[i] = np.bitwise_count(np.bitwise_xor(database, q)).sum(axis=1)
    return out
