"""Images to backbone features, and the HDF5 feature cache."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import h5py
import numpy as np
import torch

from . import __version__
from .atomic import atomic_path
from .backbones import FeatureExtractor, backbone_spec, check_views
from .datasets import Dataset
from .h5 import STR, read_h5, strings
from .images import load_image
from .progress import progress

FEATURES_FORMAT = 1
# Aerial scenes have no canonical orientation; averaging over 8 orientations is the measured
# best (README) at 8 backbone passes per image.
DEFAULT_VIEWS = 8
PREPROCESSING = ("RGB, bilinear resize to image_size x image_size, scale to [0,1], (x-mean)/std; "
                 "features averaged over `views` orientations (1: as is, 4: rotations, 8: rotations x flip)")


def image_batches(paths: Sequence[Path], size: int, batch_size: int) -> Iterator[torch.Tensor]:
    """Decoded, resized NCHW float batches of `paths`, in order."""
    for start in range(0, len(paths), batch_size):
        chunk = [load_image(p, size) for p in paths[start:start + batch_size]]
        yield torch.from_numpy(np.stack(chunk)).permute(0, 3, 1, 2).contiguous()


def extract(paths: Sequence[Path], extractor: FeatureExtractor, image_size: int, views: int = 1,
            batch_size: int = 8, desc: str = "features") -> np.ndarray:
    """Backbone features (n x d float32) for image files, averaged over `views` orientations."""
    out = np.empty((len(paths), extractor.spec.feature_dim), dtype=np.float32)
    n_batches = -(-len(paths) // batch_size)
    row = 0
    for batch in progress(image_batches(paths, image_size, batch_size), desc, total=n_batches, unit="batch"):
        out[row:row + len(batch)] = extractor(batch, views).numpy()
        row += len(batch)
    return out


@dataclass
class FeatureCache:
    """Backbone features of a dataset, with the labels and provenance that travel with them."""

    features: np.ndarray
    dataset: Dataset
    backbone: str
    image_size: int
    views: int = 1

    def save(self, path: str | Path) -> None:
        spec = backbone_spec(self.backbone)
        with atomic_path(path) as tmp:
            with h5py.File(tmp, "w") as f:
                f.create_dataset("features", data=self.features)
                f.create_dataset("labels", data=self.dataset.labels)
                f.create_dataset("paths", data=list(self.dataset.paths), dtype=STR)
                f.create_dataset("classes", data=list(self.dataset.classes), dtype=STR)
                f.attrs.update({"kind": "hashidx-features", "format": FEATURES_FORMAT, "backbone": self.backbone,
                                "weights": spec.weights, "image_size": self.image_size, "views": self.views,
                                "preprocessing": PREPROCESSING, "mean": spec.mean, "std": spec.std,
                                "root": str(self.dataset.root.resolve()), "hashidx_version": __version__})

    @classmethod
    def load(cls, path: str | Path) -> "FeatureCache":
        with read_h5(path, "hashidx-features", "feature cache", f"make one with 'hashidx features DATA -o {path}'") as f:
            ds = Dataset(Path(f.attrs["root"]), strings(f["paths"]), f["labels"][:].astype(np.int64), strings(f["classes"]))
            return cls(f["features"][:], ds, str(f.attrs["backbone"]), int(f.attrs["image_size"]),
                       int(f.attrs.get("views", 1)))


def compute_features(ds: Dataset, backbone: str, image_size: int | None = None, views: int = DEFAULT_VIEWS,
                     batch_size: int = 8) -> FeatureCache:
    """Run the frozen backbone over every image of `ds`."""
    spec = backbone_spec(backbone)
    size = image_size or spec.image_size
    extractor = FeatureExtractor(spec)
    feats = extract([ds.absolute(i) for i in range(len(ds))], extractor, size, check_views(views), batch_size)
    return FeatureCache(feats, ds, backbone, size, views)
