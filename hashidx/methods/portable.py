"""A frozen-feature model without torch: its head as numpy arrays, remembered per checkpoint in the user cache.

Queries, adds and services encode with these arrays whatever loaded the checkpoint, so the codes a process gives
do not depend on whether it imported torch. The first torch load of a checkpoint stores its head's arrays and
config under the sha256 of the checkpoint's bytes; a later process with the same bytes reads them back with
numpy alone (no pickle), which with a trusted ONNX graph of the backbone (features.runtime) keeps torch out of
a query's cold start.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from hashidx.errors import HashidxError
from hashidx.features.content import ContentProjection
from hashidx.features.runtime import cache_dir
from hashidx.io.atomic import atomic_path, sha256_file
from hashidx.version import __version__

PORTABLE_FORMAT = 2  # 2: with the content projection
# State-dict names of each head kind (methods.head.HashHead, methods.baselines.LinearHash), in the order used.
KINDS = {
    "hash": ("feature_mean", "feature_std", "hash.0.weight", "hash.0.bias", "hash.3.weight", "hash.3.bias"),
    "linear": ("mean", "projection"),
}


@dataclass(frozen=True)
class HeadArrays:
    """A hash head's eval-mode forward pass in numpy: standardise → linear → ReLU → linear → tanh for AHCL and the
    symmetric method, x − mean projected for ITQ and LSH; and the model's content projection, where it has one."""

    kind: str
    arrays: dict[str, np.ndarray]
    content: ContentProjection | None = None

    @classmethod
    def of(cls, head: Any, content: ContentProjection | None = None) -> HeadArrays:
        """The arrays of a torch head on frozen features (a fine-tuned network has no such head)."""
        state = {name: t.detach().cpu().numpy().astype(np.float32) for name, t in head.state_dict().items()}
        for kind, names in KINDS.items():
            # The class head (classifier.*) trains the codes and takes no part in encoding.
            if set(names) == {n for n in state if not n.startswith("classifier.")}:
                return cls(kind, {n: state[n] for n in names}, content)
        raise HashidxError(f"not a head on frozen features (weights {', '.join(list(state)[:4])}, ...)")

    @property
    def out_dim(self) -> int:
        """Bits: the width of the outputs u."""
        if self.kind == "linear":
            return int(self.arrays["projection"].shape[1])
        return int(self.arrays["hash.3.weight"].shape[0])

    def embed(self, features: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Continuous outputs u for a feature matrix (u in (−1, 1) for a hash head), the same bits whatever
        threads the process has: OpenBLAS's products differ in the last bits with its thread count (measured:
        3e-5 apart between one and two threads), and Ray gives its workers one. On one BLAS thread they are
        the same everywhere; a 4,096-row batch takes 0.11 s instead of 0.06 s."""
        with threadpool_limits(1, "blas"):
            return self._embed(features, batch_size)

    def _embed(self, features: np.ndarray, batch_size: int) -> np.ndarray:
        a = self.arrays
        features = np.asarray(features, dtype=np.float32)
        out = np.empty((len(features), self.out_dim), np.float32)
        for lo in range(0, len(features), batch_size):
            x = features[lo : lo + batch_size]
            if self.kind == "linear":
                out[lo : lo + len(x)] = (x - a["mean"]) @ a["projection"]
                continue
            hidden = np.maximum(
                ((x - a["feature_mean"]) / a["feature_std"]) @ a["hash.0.weight"].T + a["hash.0.bias"], 0
            )
            out[lo : lo + len(x)] = np.tanh(hidden @ a["hash.3.weight"].T + a["hash.3.bias"])
        return out


@dataclass(frozen=True)
class WithContent:
    """A head whose outputs are u followed by the content vector: one pass over each chunk's features gives both,
    on whatever engine worker holds them."""

    head: HeadArrays

    @property
    def out_dim(self) -> int:
        assert self.head.content is not None
        return self.head.out_dim + self.head.content.dims

    def embed(self, features: np.ndarray) -> np.ndarray:
        assert self.head.content is not None
        return np.hstack([self.head.embed(features), self.head.content.apply(features).astype(np.float32)])


def _stored(digest: str) -> Path:
    return cache_dir() / "models" / f"{digest}-{PORTABLE_FORMAT}-{__version__}.npz"


def recall(path: str | Path) -> tuple[HeadArrays, dict[str, Any]] | None:
    """The head arrays and config remembered for this checkpoint's bytes, or None (never loaded with torch here, a
    fine-tuned network, or an unreadable cache entry: the caller loads the checkpoint with torch)."""
    try:
        stored = _stored(sha256_file(path))
        with np.load(stored, allow_pickle=False) as npz:
            config = json.loads(str(npz["config"]))
            kind = str(npz["kind"])
            arrays = {name: np.asarray(npz[f"array:{name}"]) for name in KINDS[kind]}
            content = ContentProjection.from_arrays(
                {n.removeprefix("array:"): npz[n] for n in npz.files if n.startswith("array:content.")}
            )
    except (OSError, ValueError, KeyError):
        return None
    return HeadArrays(kind, arrays, content), config


def remember(path: str | Path, head: HeadArrays, config: dict[str, Any]) -> None:
    """Store a checkpoint's head arrays and config for `recall` (best effort: a read-only cache costs only speed)."""
    try:
        with atomic_path(_stored(sha256_file(path))) as tmp, open(tmp, "wb") as fh:
            stored = {**head.arrays, **(head.content.arrays() if head.content is not None else {})}
            entries: dict[str, Any] = {f"array:{name}": value for name, value in stored.items()}
            entries.update(config=np.asarray(json.dumps(config)), kind=np.asarray(head.kind))
            np.savez(fh, **entries)
    except (OSError, HashidxError):
        pass
