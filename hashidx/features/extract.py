"""Images to backbone features, and the HDF5 feature cache."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from hashidx.data.datasets import Dataset
from hashidx.data.footprints import footprints
from hashidx.data.images import DECODE_WORKERS, decode_ahead, keep_readable, load_image
from hashidx.data.rasters import RGB, Radiometry
from hashidx.errors import HashidxError
from hashidx.features.backbones import FeatureExtractor, backbone_spec, check_views
from hashidx.features.cache import FeatureCache
from hashidx.features.runtime import DEFAULT_RUNTIME
from hashidx.io.atomic import atomic_path, check_room
from hashidx.io.locks import writing
from hashidx.io.progress import progress, warn

# Aerial scenes have no canonical orientation; averaging over 8 orientations is the measured
# best (README) at 8 backbone passes per image.
DEFAULT_VIEWS = 8


ON_ERROR = ("fail", "skip")


@dataclass
class Extraction:
    """Features of the images at positions `kept`; `skipped` = (position, reason) of unreadable ones."""

    features: np.ndarray
    kept: np.ndarray
    skipped: list[tuple[int, str]]
    done: int  # positions [0, done) are processed

    @classmethod
    def empty(cls, dim: int) -> Extraction:
        return cls(np.empty((0, dim), dtype=np.float32), np.empty(0, dtype=np.int64), [], 0)


def extract(
    paths: Sequence[Path],
    extractor: FeatureExtractor,
    image_size: int,
    views: int = 1,
    batch_size: int = 8,
    desc: str = "features",
    on_error: str = "fail",
    resume: Extraction | None = None,
    checkpoint: Callable[[Extraction], None] | None = None,
    every: int = 32,
    workers: int = DECODE_WORKERS,
    radiometry: Radiometry = RGB,
) -> Extraction:
    """Backbone features of image files, averaged over `views` orientations.

    on_error="fail" stops at the first unreadable image (its path in the error); "skip" leaves it out
    and records it. `resume` continues a partial extraction. Every `every` batches `checkpoint`
    receives the rows added since its previous call (features and kept hold only those; skipped
    and done are the totals): what makes an interrupted extraction resumable. `workers` threads decode
    the next batches while the backbone runs (0: decode in line). Every image is read with `radiometry`'s
    bands and scaling.
    """
    if on_error not in ON_ERROR:
        raise HashidxError(f"--on-error {on_error}: choose fail or skip")
    state = resume or Extraction.empty(extractor.spec.feature_dim)
    feats, kept, skipped = [state.features], [state.kept], list(state.skipped)
    reported = len(feats)  # batches in `feats` already passed to checkpoint (or resumed from)
    starts = range(state.done, len(paths), batch_size)
    chunks = [range(start, min(start + batch_size, len(paths))) for start in starts]
    decode = functools.partial(load_image, size=image_size, radiometry=radiometry)
    decoded = decode_ahead(paths, decode, chunks, workers)
    for b, (start, batch_items) in enumerate(progress(zip(starts, decoded), desc, total=len(starts), unit="batch"), 1):
        ok, arrays = keep_readable(batch_items, on_error, skipped)
        if arrays:
            batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
            feats.append(extractor(batch, views).numpy())
            kept.append(np.asarray(ok, dtype=np.int64))
        done = min(start + batch_size, len(paths))
        if checkpoint is not None and b % every == 0 and done < len(paths):
            new_rows = feats[reported:] or [np.empty((0, extractor.spec.feature_dim), np.float32)]
            checkpoint(
                Extraction(
                    np.concatenate(new_rows), np.concatenate(kept[reported:] or [np.empty(0, np.int64)]), skipped, done
                )
            )
            reported = len(feats)
    # One concatenation at the end: the rows are never copied per batch.
    return Extraction(np.concatenate(feats), np.concatenate(kept), skipped, len(paths))


def partial_path(output: str | Path) -> Path:
    """Where an extraction into `output` keeps its progress until it finishes."""
    return Path(f"{output}.partial")


def _identity(
    ds: Dataset, backbone: str, size: int, views: int, weights: str = "imagenet", radiometry: Radiometry = RGB
) -> str:
    # The layers are part of it: a partial file of another feature layout (another width) restarts.
    tag = backbone if weights == "imagenet" else f"{backbone}@{weights}"
    look = json.dumps(radiometry.attrs(), sort_keys=True)
    h = hashlib.sha256(
        "\n".join(
            [str(ds.root.resolve()), tag, backbone_spec(backbone).layers, str(size), str(views), look, *ds.paths]
        ).encode()
    )
    return h.hexdigest()


class _Partial:
    """OUTPUT.partial: rows appended in place as the extraction goes; kind hashidx-features-partial, never a cache.

    `rows` and `done` are updated only after the rows they count are written. A kill inside an
    append can leave a file that does not open; it is then ignored and the extraction restarts.
    """

    KIND = "hashidx-features-partial"

    def __init__(self, path: Path, identity: str):
        self.path, self.identity = path, identity

    def load(self) -> Extraction | None:
        """The progress saved for this very extraction, or None."""
        try:
            with h5py.File(self.path, "r") as f:
                if f.attrs.get("kind") != self.KIND or f.attrs.get("identity") != self.identity:
                    return None
                rows = int(f.attrs["rows"])
                return Extraction(
                    f["features"][:rows],
                    f["kept"][:rows],
                    [tuple(x) for x in json.loads(f.attrs["skipped"])],
                    int(f.attrs["done"]),
                )
        except (OSError, KeyError, ValueError):
            return None

    def start(self, resumed: Extraction | None, dim: int) -> None:
        """A fresh file, unless resuming (then the file already holds the resumed rows)."""
        if resumed is not None:
            return
        with atomic_path(self.path) as tmp, h5py.File(tmp, "w") as f:
            f.create_dataset("features", shape=(0, dim), maxshape=(None, dim), dtype=np.float32, chunks=(256, dim))
            f.create_dataset("kept", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(4096,))
            f.attrs.update({"kind": self.KIND, "identity": self.identity, "rows": 0, "done": 0, "skipped": "[]"})

    def append(self, new: Extraction) -> None:
        with h5py.File(self.path, "a") as f:
            rows = int(f.attrs["rows"])
            for name, data in (("features", new.features), ("kept", new.kept)):
                f[name].resize(rows + len(data), axis=0)
                f[name][rows:] = data
            f.flush()
            f.attrs.update({"rows": rows + len(new.kept), "done": new.done, "skipped": json.dumps(new.skipped)})


def compute_features(
    ds: Dataset,
    backbone: str,
    image_size: int | None = None,
    views: int = DEFAULT_VIEWS,
    batch_size: int = 8,
    on_error: str = "fail",
    partial: str | Path | None = None,
    checkpoint_every: int = 32,
    weights: str = "imagenet",
    runtime: str = DEFAULT_RUNTIME,
    radiometry: Radiometry = RGB,
) -> FeatureCache:
    """Run the frozen backbone (with `weights`: imagenet, none or a state-dict file; on `runtime` onnx or
    torch) over every image (or chip) of `ds`, read with `radiometry` (data.rasters.fit_radiometry chooses it).

    With `partial` (a path), progress is saved there as it goes, and an earlier interrupted run of
    the same extraction (same images, backbone, size, views) is continued instead of restarted.
    """
    spec = backbone_spec(backbone)
    size = image_size or spec.image_size
    extractor = FeatureExtractor(spec, weights, runtime, radiometry.channels)
    paths = [ds.absolute(i) for i in range(len(ds))]
    ds = dataclasses.replace(ds, geo=footprints(paths, warn))
    resume, save = None, None
    if partial is not None:
        keeper = _Partial(Path(partial), _identity(ds, backbone, size, check_views(views), weights, radiometry))
        resume = keeper.load() if keeper.path.exists() else None
        keeper.start(resume, spec.feature_dim)
        save = keeper.append
    if checkpoint_every < 1:
        raise HashidxError(f"--checkpoint-every {checkpoint_every}: use a number of batches >= 1")
    state = extract(
        paths,
        extractor,
        size,
        check_views(views),
        batch_size,
        on_error=on_error,
        resume=resume,
        checkpoint=save,
        every=checkpoint_every,
        radiometry=radiometry,
    )
    if len(state.kept) == 0:
        raise HashidxError(f"none of the {len(ds)} images of {ds.root} could be read; first: {state.skipped[0][1]}")
    return FeatureCache(
        state.features,
        ds.subset(state.kept),
        backbone,
        size,
        views,
        [(ds.paths[i], reason) for i, reason in state.skipped],
        weights,
        runtime=extractor.runtime,
        radiometry=radiometry,
    )


def extract_to(
    ds: Dataset,
    output: str | Path,
    backbone: str,
    image_size: int | None = None,
    views: int = DEFAULT_VIEWS,
    batch_size: int = 8,
    on_error: str = "fail",
    checkpoint_every: int = 32,
    weights: str = "imagenet",
    runtime: str = DEFAULT_RUNTIME,
    radiometry: Radiometry = RGB,
) -> FeatureCache:
    """compute_features, saved to `output`; progress is kept in OUTPUT.partial until then, so a rerun resumes."""
    partial = partial_path(output)
    # The cache and its .partial twin side by side, before minutes of backbone passes.
    check_room(output, 2 * len(ds) * backbone_spec(backbone).feature_dim * 4 + (1 << 20), "the feature cache")
    with writing(output):  # one extraction per output: two would append to one .partial file
        cache = compute_features(
            ds,
            backbone,
            image_size,
            views,
            batch_size,
            on_error,
            partial,
            checkpoint_every,
            weights,
            runtime,
            radiometry,
        )
        cache.save(output)
        partial.unlink(missing_ok=True)
    return cache
