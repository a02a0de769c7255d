"""hashidx: asymmetric deep hashing (AHCL) for remote-sensing image retrieval, on FAISS binary indexes.

The package follows the data flow, one subpackage per step: `data` (images, labels, splits) →
`features` (backbones, the feature cache) → `methods` (AHCL, symmetric, ITQ, LSH: features → codes) →
`codes` (the codes file) → `index` (FAISS) → `results` (queries, gallery) → `evaluation` (metrics, bench).

The names under TYPE_CHECKING below are the Python API. They load on first use, so `import hashidx`
stays cheap and a codes-only query never imports torch.
"""

from typing import TYPE_CHECKING

from hashidx.io.lazy import lazy_exports
from hashidx.io.threads import sleep_when_idle
from hashidx.version import __version__

# Before any OpenMP runtime loads (torch and FAISS are imported later, on first use): idle threads sleep, so
# that concurrent hashidx processes do not take each other's cores (hashidx.io.threads).
sleep_when_idle()

# The Python API; each name loads its module on first use (hashidx.io.lazy). The subpackages export more.
if TYPE_CHECKING:
    from hashidx.codes.binary import hamming, pack, unpack
    from hashidx.codes.codefile import CodeFile
    from hashidx.data.chips import Tiling
    from hashidx.data.datasets import Dataset, load_dataset
    from hashidx.data.queryfile import read_query_file
    from hashidx.data.rasters import Radiometry, fit_radiometry
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
    from hashidx.results.query import Searcher, run_query, write_results

_api, __getattr__, __dir__ = lazy_exports(__name__)
__all__ = ["__version__", *_api]
