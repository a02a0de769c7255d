"""The feature cache: backbone features of a dataset with the labels and provenance that travel with them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from hashidx.data.datasets import Dataset, labels_of
from hashidx.data.footprints import Footprints
from hashidx.data.rasters import RGB, Radiometry
from hashidx.features.backbones import backbone_spec, recorded_layers, weights_label
from hashidx.io.atomic import atomic_path
from hashidx.io.h5 import STR, read_h5, strings
from hashidx.version import __version__

FEATURES_FORMAT = 1
PREPROCESSING = (
    "the recorded bands (RGB: each file's own), bilinear resize to image_size x image_size, the recorded scaling "
    "to [0,1] (8-bit: /255), (x-mean)/std; "
    "features averaged over `views` orientations (1: as is, 4: rotations, 8: rotations x flip)"
)


@dataclass
class FeatureCache:
    """Backbone features of a dataset, with the labels and provenance that travel with them."""

    features: np.ndarray  # or, to save a streamed extraction, the h5py dataset it was appended to
    dataset: Dataset
    backbone: str
    image_size: int
    views: int = 1
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) left out by --on-error skip
    weights: str = "imagenet"  # the backbone's weights: imagenet, none or a state-dict file
    layers: str = ""  # what each vector is made of (BackboneSpec.layers); "" = the backbone's current layers
    runtime: str = "torch"  # what ran the backbone: torch or onnx (equal within runtime.TOLERANCE)
    radiometry: Radiometry = RGB  # bands and scaling every image was read with

    def __post_init__(self) -> None:
        self.layers = self.layers or backbone_spec(self.backbone).layers

    def save(self, path: str | Path) -> None:
        spec = backbone_spec(self.backbone)
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            if isinstance(self.features, h5py.Dataset):  # rows on disk (a streamed extraction): copied in blocks
                rows, dim = self.features.shape
                out = f.create_dataset("features", shape=(rows, dim), dtype=np.float32)
                step = max(1, (64 << 20) // (4 * max(dim, 1)))
                for lo in range(0, rows, step):
                    out[lo : lo + step] = self.features[lo : lo + step]
            else:
                f.create_dataset("features", data=self.features)
            f.create_dataset("labels", data=self.dataset.labels)
            f.create_dataset("paths", data=list(self.dataset.paths), dtype=STR)
            f.create_dataset("classes", data=list(self.dataset.classes), dtype=STR)
            if self.dataset.geo is not None:
                self.dataset.geo.save(f)
            f.attrs.update(
                {
                    "kind": "hashidx-features",
                    "format": FEATURES_FORMAT,
                    "backbone": self.backbone,
                    "weights": weights_label(spec, self.weights),
                    "weights_source": self.weights,
                    "image_size": self.image_size,
                    "views": self.views,
                    "layers": self.layers,
                    "runtime": self.runtime,
                    "preprocessing": PREPROCESSING,
                    "mean": spec.mean,
                    "std": spec.std,
                    "root": str(self.dataset.root.resolve()),
                    "hashidx_version": __version__,
                    "skipped": json.dumps(self.skipped),
                    **self.radiometry.attrs(),
                }
            )

    @classmethod
    def load(cls, path: str | Path, rows: slice = slice(None)) -> FeatureCache:
        """The cache, or only its `rows` (a slice): what reads a big query file block by block."""
        with read_h5(
            path, "hashidx-features", "feature cache", "make one with 'hashidx features DATA -o FEATURES.h5'"
        ) as f:
            ds = Dataset(
                Path(f.attrs["root"]),
                strings(f["paths"], rows),
                labels_of(f["labels"][rows]),
                strings(f["classes"]),
                Footprints.load(f, rows),
            )
            features = f["features"][rows]
            if features.ndim != 2 or len(features) != len(ds.paths) or features.dtype.kind != "f":
                raise ValueError(
                    f"'features' is {features.dtype} {features.shape} for {len(ds.paths)} paths, expected float n x d"
                )
            return cls(
                features,
                ds,
                str(f.attrs["backbone"]),
                int(f.attrs["image_size"]),
                int(f.attrs.get("views", 1)),
                [tuple(x) for x in json.loads(f.attrs.get("skipped", "[]"))],
                str(f.attrs.get("weights_source", "imagenet")),
                recorded_layers(str(f.attrs["backbone"]), f.attrs.get("layers")),
                str(f.attrs.get("runtime", "torch")),
                Radiometry.from_attrs(f.attrs),
            )
