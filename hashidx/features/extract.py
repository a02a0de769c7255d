"""Images to backbone features, and the HDF5 feature cache."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from hashidx.data.datasets import Dataset
from hashidx.data.footprints import footprints
from hashidx.data.images import DECODE_WORKERS, decode_items, keep_readable, load_image
from hashidx.data.rasters import RGB, Radiometry
from hashidx.engines.base import Engine, Stage
from hashidx.engines.local import LocalEngine
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
    runtime: str = ""  # what ran the network, as the workers report it ("" before any chunk)

    @classmethod
    def empty(cls, dim: int) -> Extraction:
        return cls(np.empty((0, dim), dtype=np.float32), np.empty(0, dtype=np.int64), [], 0)


@dataclass
class Encoded:
    """One chunk through a network: output rows of its readable images, their positions, and (position, reason)
    of the unreadable ones (the driver decides whether those fail the job)."""

    positions: np.ndarray
    rows: np.ndarray
    errors: list[tuple[int, str]]
    runtime: str


class BackboneWorker:
    """Decodes a chunk of (position, path) and runs the frozen backbone (and the hash head, where given) on it."""

    def __init__(self, extractor: FeatureExtractor, stage: BackboneStage):
        self.extractor, self.stage = extractor, stage
        self.decode = functools.partial(load_image, size=stage.image_size, radiometry=stage.radiometry)

    def load(self, chunk: Sequence[tuple[int, Path]]) -> list[tuple[int, np.ndarray | HashidxError]]:
        return decode_items(self.decode, chunk)

    def run(self, decoded: list[tuple[int, np.ndarray | HashidxError]]) -> Encoded:
        errors: list[tuple[int, str]] = []
        ok, arrays = keep_readable(decoded, "skip", errors)
        dim = self.stage.head.out_dim if self.stage.head is not None else self.extractor.spec.feature_dim
        rows = np.empty((0, dim), np.float32)
        if arrays:
            rows = self.extractor(np.stack(arrays).transpose(0, 3, 1, 2), self.stage.views)
            if self.stage.head is not None:
                rows = np.asarray(self.stage.head.embed(rows))
        return Encoded(np.asarray(ok, dtype=np.int64), rows, errors, self.extractor.runtime)


@dataclass
class BackboneStage:
    """The recipe of a BackboneWorker: what the local loop and every engine worker build and run alike.

    `head` (a module with .embed and .out_dim: methods.head) turns each chunk's features into network outputs u
    where the worker is; `extractor`, an already built backbone, is reused in this process and never shipped.
    """

    backbone: str
    weights: str
    runtime: str
    radiometry: Radiometry
    image_size: int
    views: int
    head: Any = None
    extractor: FeatureExtractor | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.extractor is None and self.weights not in ("imagenet", "none"):
            # Read here once, so that a bad --weights file fails in one line before any worker starts.
            from hashidx.features.networks import load_state_file

            load_state_file(self.weights, self.backbone)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "extractor": None}

    def build(self, threads: int | None = None, device: str = "cpu") -> BackboneWorker:
        if self.extractor is not None and threads is None and device == self.extractor.device:
            return BackboneWorker(self.extractor, self)
        from hashidx.features.runtime import set_threads

        set_threads(threads)
        spec = backbone_spec(self.backbone)
        # The head stays on the CPU: a matrix product per chunk, on features the backbone hands back there.
        extractor = FeatureExtractor(spec, self.weights, self.runtime, self.radiometry.channels, device)
        return BackboneWorker(extractor, self)


def _rows(blocks: list[np.ndarray], dim: int) -> np.ndarray:
    return np.concatenate(blocks) if blocks else np.empty((0, dim), np.float32)


def _positions(blocks: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(blocks) if blocks else np.empty(0, np.int64)


def collect(
    paths: Sequence[Path],
    stage: Stage,
    dim: int,
    engine: Engine | None = None,
    batch_size: int = 8,
    desc: str = "features",
    on_error: str = "fail",
    resume: Extraction | None = None,
    checkpoint: Callable[[Extraction], None] | None = None,
    every: int = 32,
    keep: bool = True,
) -> Extraction:
    """Images through `stage`'s workers on `engine` (default: this process), `batch_size` per chunk, gathered in
    input order under one progress bar: the loop every network pass of hashidx shares.

    on_error="fail" stops at the first unreadable image (its path in the error); "skip" leaves it out
    and records it. `resume` continues a partial extraction. Every `every` batches `checkpoint`
    receives the rows added since its previous call (features and kept hold only those; skipped
    and done are the totals): what makes an interrupted extraction resumable. With keep=False the rows live
    only in what `checkpoint` writes (it also gets the last ones), so memory stays bounded whatever the
    number of images; the result then holds the kept positions and no rows.
    """
    if on_error not in ON_ERROR:
        raise HashidxError(f"--on-error {on_error}: choose fail or skip")
    if not keep and checkpoint is None:
        raise ValueError("collect(keep=False) needs a checkpoint to hand the rows to")
    state = resume or Extraction.empty(dim)
    stored_rows, stored_kept = [state.features] if keep else [], [state.kept]  # checkpointed (or resumed)
    new_rows: list[np.ndarray] = []
    new_kept: list[np.ndarray] = []
    skipped = list(state.skipped)
    starts = range(state.done, len(paths), batch_size)
    chunks = ([(i, paths[i]) for i in range(start, min(start + batch_size, len(paths)))] for start in starts)
    outputs = (engine or LocalEngine()).map(stage, chunks)
    runtime = ""
    for b, (start, enc) in enumerate(progress(zip(starts, outputs), desc, total=len(starts), unit="batch"), 1):
        if enc.errors and on_error != "skip":
            raise HashidxError(enc.errors[0][1])
        skipped += enc.errors
        runtime = enc.runtime
        if len(enc.positions):
            new_rows.append(enc.rows)
            new_kept.append(enc.positions)
        done = min(start + batch_size, len(paths))
        due = b % every == 0 if done < len(paths) else not keep  # a kept extraction returns its last rows instead
        if checkpoint is not None and due:
            checkpoint(Extraction(_rows(new_rows, dim), _positions(new_kept), skipped, done))
            stored_rows += new_rows if keep else []
            stored_kept += new_kept
            new_rows, new_kept = [], []
    # One concatenation at the end: the rows are never copied per batch.
    features = _rows(stored_rows + new_rows, dim) if keep else np.empty((0, dim), np.float32)
    return Extraction(features, _positions(stored_kept + new_kept), skipped, len(paths), runtime)


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
    engine: Engine | None = None,
    head: Any = None,
) -> Extraction:
    """Backbone features of image files, averaged over `views` orientations (`collect` with a BackboneStage).

    `workers` threads decode the next batches while the backbone runs (0: decode in line); an `engine` (ray)
    runs decoding and backbone on its own workers instead. Every image is read with `radiometry`'s bands and
    scaling. With `head`, the rows are the head's outputs u on the features, computed chunk by chunk.
    """
    stage = BackboneStage(
        extractor.spec.name, extractor.weights, extractor.runtime, radiometry, image_size, views, head, extractor
    )
    dim = head.out_dim if head is not None else extractor.spec.feature_dim
    return collect(
        paths, stage, dim, engine or LocalEngine(workers), batch_size, desc, on_error, resume, checkpoint, every
    )


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

    def load(self, features: bool = True) -> Extraction | None:
        """The progress saved for this very extraction, or None; without `features`, only where it stands."""
        try:
            with h5py.File(self.path, "r") as f:
                if f.attrs.get("kind") != self.KIND or f.attrs.get("identity") != self.identity:
                    return None
                rows = int(f.attrs["rows"])
                return Extraction(
                    f["features"][: rows if features else 0],
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


def _extraction(
    ds: Dataset,
    backbone: str,
    image_size: int | None,
    views: int,
    batch_size: int,
    on_error: str,
    partial: str | Path | None,
    checkpoint_every: int,
    weights: str,
    runtime: str,
    radiometry: Radiometry,
    engine: Engine | None,
    keep: bool = True,
) -> tuple[Extraction, Dataset, int]:
    """The extraction compute_features and extract_to share: (state, the dataset with its footprints, image size)."""
    spec = backbone_spec(backbone)
    size = image_size or spec.image_size
    engine = engine or LocalEngine()
    # A remote engine's workers build their own backbone: the driver only writes.
    extractor = None if engine.remote else FeatureExtractor(spec, weights, runtime, radiometry.channels)
    stage = BackboneStage(backbone, weights, runtime, radiometry, size, check_views(views), extractor=extractor)
    paths = [ds.absolute(i) for i in range(len(ds))]
    ds = dataclasses.replace(ds, geo=footprints(paths, warn, ds.catalog))
    resume, save = None, None
    if partial is not None:
        keeper = _Partial(Path(partial), _identity(ds, backbone, size, check_views(views), weights, radiometry))
        resume = keeper.load(features=keep) if keeper.path.exists() else None
        keeper.start(resume, spec.feature_dim)
        save = keeper.append
    if checkpoint_every < 1:
        raise HashidxError(f"--checkpoint-every {checkpoint_every}: use a number of batches >= 1")
    state = collect(
        paths, stage, spec.feature_dim, engine, batch_size, "features", on_error, resume, save, checkpoint_every, keep
    )
    if len(state.kept) == 0:
        raise HashidxError(f"none of the {len(ds)} images of {ds.root} could be read; first: {state.skipped[0][1]}")
    state.runtime = state.runtime or (extractor.runtime if extractor else runtime)
    return state, ds, size


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
    engine: Engine | None = None,
) -> FeatureCache:
    """Run the frozen backbone (with `weights`: imagenet, none or a state-dict file; on `runtime` onnx or
    torch) over every image (or chip) of `ds`, read with `radiometry` (data.rasters.fit_radiometry chooses it),
    in this process or on `engine`'s workers (the same features either way, in the same order).

    With `partial` (a path), progress is saved there as it goes, and an earlier interrupted run of
    the same extraction (same images, backbone, size, views) is continued instead of restarted.
    """
    state, ds, size = _extraction(
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
        engine,
    )
    return _cache(state.features, state, ds, backbone, size, views, weights, radiometry)


def _cache(
    rows: Any,
    state: Extraction,
    ds: Dataset,
    backbone: str,
    size: int,
    views: int,
    weights: str,
    radiometry: Radiometry,
) -> FeatureCache:
    """The cache of an extraction's kept images; `rows` are its features in memory or on disk (the .partial)."""
    skipped = [(ds.paths[i], reason) for i, reason in state.skipped]
    return FeatureCache(
        rows,
        ds.subset(state.kept),
        backbone,
        size,
        views,
        skipped,
        weights,
        runtime=state.runtime,
        radiometry=radiometry,
    )


def write_features(
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
    engine: Engine | None = None,
) -> None:
    """compute_features, written to `output` in bounded memory (what `hashidx features` runs).

    The rows never pile up in memory: every `checkpoint_every` batches they are appended to OUTPUT.partial
    (which a rerun resumes from), and the cache is then copied from it block by block; 10⁷ chips of 1,712-d
    features are 68 GB.
    """
    partial = partial_path(output)
    # The cache and its .partial twin side by side, before minutes of backbone passes.
    check_room(output, 2 * len(ds) * backbone_spec(backbone).feature_dim * 4 + (1 << 20), "the feature cache")
    with writing(output):  # one extraction per output: two would append to one .partial file
        state, ds, size = _extraction(
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
            engine,
            keep=False,
        )
        with h5py.File(partial, "r") as f:
            rows = f["features"]
            if len(rows) != len(state.kept) or not np.array_equal(f["kept"][:], state.kept):
                raise HashidxError(f"{partial}: progress file out of step with this extraction; delete it and rerun")
            _cache(rows, state, ds, backbone, size, views, weights, radiometry).save(output)
        partial.unlink(missing_ok=True)


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
    engine: Engine | None = None,
) -> FeatureCache:
    """write_features, then the cache read back whole (what training on it needs)."""
    write_features(
        ds,
        output,
        backbone,
        image_size,
        views,
        batch_size,
        on_error,
        checkpoint_every,
        weights,
        runtime,
        radiometry,
        engine,
    )
    return FeatureCache.load(output)
