"""hashidx: asymmetric deep hashing (AHCL) for remote-sensing image retrieval, on FAISS binary indexes.

The package follows the data flow, one subpackage per step: `data` (images, labels, splits) →
`features` (backbones, the feature cache) → `methods` (AHCL, symmetric, ITQ, LSH: features → codes) →
`codes` (the codes file) → `index` (FAISS) → `results` (queries, gallery) → `evaluation` (metrics, bench).

The names below are the Python API. They load on first use, so `import hashidx` stays cheap and a
codes-only query never imports torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from hashidx.version import __version__

# name → "module" or "module:attribute" where the API name differs (the subpackages' own __all__ lists more).
_API = {
    "HashidxError": "hashidx.errors",
    "Dataset": "hashidx.data.datasets",
    "load_dataset": "hashidx.data.datasets",
    "Split": "hashidx.data.split",
    "make_split": "hashidx.data.split",
    "load_split": "hashidx.data.split",
    "save_split": "hashidx.data.split",
    "read_query_file": "hashidx.data.queryfile",
    "backbone_spec": "hashidx.features.backbones",
    "FeatureCache": "hashidx.features.cache",
    "compute_features": "hashidx.features.extract",
    "extract": "hashidx.features.extract",
    "extract_to": "hashidx.features.extract",
    "CodeFile": "hashidx.codes.codefile",
    "pack": "hashidx.codes.binary",
    "unpack": "hashidx.codes.binary",
    "hamming": "hashidx.codes.binary",
    "TrainConfig": "hashidx.methods.training",
    "train_ahcl": "hashidx.methods.ahcl",
    "train_symmetric": "hashidx.methods.symmetric",
    "fit_itq": "hashidx.methods.baselines",
    "fit_lsh": "hashidx.methods.baselines",
    "train_run": "hashidx.methods.runs",
    "load_checkpoint": "hashidx.methods.checkpoints",
    "Encoder": "hashidx.methods.encoder",
    "build_index": "hashidx.index.indexes:build_file",
    "load_index": "hashidx.index.indexes:load",
    "search": "hashidx.index.indexes",
    "add_images": "hashidx.index.add",
    "run_query": "hashidx.results.query",
    "write_results": "hashidx.results.query",
    "write_gallery": "hashidx.results.gallery",
    "evaluate_run": "hashidx.evaluation.evaluate",
    "retrieval_metrics": "hashidx.evaluation.metrics",
    "run_bench": "hashidx.evaluation.bench",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        module, _, attribute = _API[name].partition(":")
        value = getattr(importlib.import_module(module), attribute or name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hashidx' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from hashidx.codes.binary import hamming, pack, unpack
    from hashidx.codes.codefile import CodeFile
    from hashidx.data.datasets import Dataset, load_dataset
    from hashidx.data.queryfile import read_query_file
    from hashidx.data.split import Split, load_split, make_split, save_split
    from hashidx.errors import HashidxError
    from hashidx.evaluation.bench import run_bench
    from hashidx.evaluation.evaluate import evaluate_run
    from hashidx.evaluation.metrics import retrieval_metrics
    from hashidx.features.backbones import backbone_spec
    from hashidx.features.cache import FeatureCache
    from hashidx.features.extract import compute_features, extract, extract_to
    from hashidx.index.add import add_images
    from hashidx.index.indexes import build_file as build_index
    from hashidx.index.indexes import load as load_index
    from hashidx.index.indexes import search
    from hashidx.methods.ahcl import train_ahcl
    from hashidx.methods.baselines import fit_itq, fit_lsh
    from hashidx.methods.checkpoints import load_checkpoint
    from hashidx.methods.encoder import Encoder
    from hashidx.methods.runs import train_run
    from hashidx.methods.symmetric import train_symmetric
    from hashidx.methods.training import TrainConfig
    from hashidx.results.gallery import write_gallery
    from hashidx.results.query import run_query, write_results
