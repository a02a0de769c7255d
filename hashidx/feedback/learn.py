"""AHCL from a user's marks: the concepts marked become classes, the marked items get learned database codes, and
every other archive item is re-encoded through the new head from its cached backbone features (no image is read).

The marked items are few, so the head trains in seconds; unmarked items drawn at random join as unlike the concepts
(the archive is mostly not any one concept), which is what lets a concept with positives only be learned at all.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from torch import nn

from hashidx.codes.binary import pack, sign
from hashidx.codes.codefile import CodeFile, positions
from hashidx.data.footprints import Footprints
from hashidx.errors import HashidxError
from hashidx.features.cache import FeatureCache
from hashidx.features.content import ContentProjection
from hashidx.feedback.marks import Marks, read_marks, write_marks
from hashidx.index import indexes as idx
from hashidx.io.atomic import sha256_file, write_json
from hashidx.io.locks import writing
from hashidx.methods.ahcl import train_ahcl
from hashidx.methods.checkpoints import save_checkpoint
from hashidx.methods.portable import HeadArrays
from hashidx.methods.runs import frozen_model_config
from hashidx.methods.training import TrainConfig, frozen_network
from hashidx.version import __version__


@dataclass(frozen=True)
class LearnSettings:
    """How a model is learned from marks. The iterations, epochs and the unmarked sample were chosen in
    benchmarks/feedback.py on validation seeds; λ and γ are AHCL's defaults."""

    iterations: int = 10
    epochs: int = 2
    background: int = 50  # unmarked archive items drawn as unlike every concept, each learn
    lam: float = 200.0
    gamma: float = 20.0
    lr: float = 1e-3
    seed: int = 0

    def train_config(self, bits: int) -> TrainConfig:
        return TrainConfig(
            bits=bits,
            iterations=self.iterations,
            epochs=self.epochs,
            lam=self.lam,
            gamma=self.gamma,
            lr=self.lr,
            lr_steps=(max(1, self.iterations * 2 // 3),),
            seed=self.seed,
        )


DEFAULT_SETTINGS = LearnSettings()


@dataclass
class ArchiveFeatures:
    """The indexed items that have cached backbone features: their ids, rows, names and footprints."""

    ids: np.ndarray  # int64, ascending
    features: np.ndarray  # float32 (n x d), row i is item ids[i]
    paths: tuple[str, ...]
    labels: np.ndarray  # the cache's own labels of these rows (-1 or empty rows where it has none)
    geo: Footprints | None
    cache: FeatureCache  # the cache's provenance (backbone, views, radiometry) with no rows
    source: Path
    missing: int = 0  # indexed items the cache has no features for: left out of a learned index

    def rows(self, ids: np.ndarray, source: str | Path = "marks") -> np.ndarray:
        where, found = positions(self.ids, ids)
        if not found.all():
            raise HashidxError(
                f"{source}: item {int(np.asarray(ids)[~found][0])} has no cached features in {self.source}; mark "
                "items of the archive whose features were extracted (hashidx features)"
            )
        return where

    def label_names(self) -> list[str | None]:
        from hashidx.data.labels import label_names

        return label_names(self.labels, self.cache.dataset.classes)

    def duplicates(self, ids: np.ndarray) -> np.ndarray:
        """Every item whose features equal one of `ids`'s, bit for bit: the same pixels indexed twice."""
        if len(ids) == 0:
            return np.empty(0, np.int64)
        keys = np.ascontiguousarray(self.features).view(np.dtype((np.void, self.features.shape[1] * 4))).ravel()
        return self.ids[np.isin(keys, keys[self.rows(ids)])]


def default_features(index_path: str | Path) -> Path:
    """The feature cache the index's codes were trained from (its run's train.json names it)."""
    sidecar = idx.load_sidecar(index_path)
    codes = idx.codes_file_of(index_path, sidecar)
    record = codes.parent / "train.json"
    try:
        found = json.loads(record.read_text(encoding="utf-8")).get("features")
    except (OSError, ValueError):
        found = None
    if not found or not Path(found).is_file():
        raise HashidxError(
            f"{index_path}: no feature cache is recorded for its codes ({record} names none that exists); pass "
            "--features FEATURES.h5 made by 'hashidx features' over the same images"
        )
    return Path(found)


def archive_features(index_path: str | Path, features_path: str | Path | None = None) -> ArchiveFeatures:
    """The index's items matched by name to a feature cache's rows."""
    source = Path(features_path) if features_path is not None else default_features(index_path)
    cache = FeatureCache.load(source)
    sidecar = idx.load_sidecar(index_path)
    row_of = {p: i for i, p in enumerate(cache.dataset.paths)}
    ids, rows = [], []
    total = 0
    for codes_path in idx.code_files_of(index_path, sidecar):
        cf = CodeFile.load(codes_path)
        total += len(cf.ids)
        for i, p in zip(cf.ids.tolist(), cf.paths):
            if p in row_of:
                ids.append(i)
                rows.append(row_of[p])
    if not ids:
        raise HashidxError(
            f"{source}: none of the index's items are in this feature cache; pass the cache its codes were made from"
        )
    order = np.argsort(ids, kind="stable")
    ids_a, rows_a = np.asarray(ids, np.int64)[order], np.asarray(rows, np.int64)[order]
    ds = cache.dataset
    return ArchiveFeatures(
        ids_a,
        np.ascontiguousarray(cache.features[rows_a], dtype=np.float32),
        tuple(ds.paths[r] for r in rows_a),
        ds.labels[rows_a],
        None if ds.geo is None else ds.geo.subset(rows_a),
        replace(cache, features=cache.features[:0]),
        source,
        total - len(ids_a),
    )


@dataclass
class Learned:
    """A head learned from marks and the codes of every archive item (aligned with ArchiveFeatures.ids)."""

    head: nn.Module
    config: dict
    codes: np.ndarray  # packed (n x bytes)
    marked: np.ndarray  # ids whose codes the solver learned
    log: dict
    content: ContentProjection | None = None  # orders the items of one code (results.rerank "features")

    def embed(self, features: np.ndarray) -> np.ndarray:
        return HeadArrays.of(self.head).embed(features)


def mark_labels(marks: Marks, concepts: tuple[str, ...], ids: np.ndarray) -> np.ndarray:
    """Multi-hot rows over the concepts for `ids`: each concept marked positive. A negative or an unmarked item has
    no label at all: unlike every item (Jaccard 0) rather than one big "other" class, whose pairs would swamp the
    similar/dissimilar balance r of the few positives (measured: the head then maps every item to one code)."""
    col = {c: k for k, c in enumerate(concepts)}
    where = {int(i): r for r, i in enumerate(ids.tolist())}
    y = np.zeros((len(ids), len(concepts)), np.uint8)
    for m in marks.rows:
        if m.positive:
            y[where[m.item], col[m.concept]] = 1
    return y


def learn_model(
    archive: ArchiveFeatures, marks: Marks, bits: int, settings: LearnSettings = DEFAULT_SETTINGS, source: str = "marks"
) -> Learned:
    """AHCL on the marked items (plus the unmarked sample), then every archive item through the new head."""
    t0 = time.perf_counter()
    marks.check(archive.ids, source)
    concepts = marks.learnable(source)
    marked = marks.items
    rng = np.random.default_rng(settings.seed)
    free = np.setdiff1d(archive.ids, marked)
    extra = np.sort(rng.choice(free, min(settings.background, len(free)), replace=False))
    train_ids = np.concatenate([marked, extra])
    labels = mark_labels(marks, concepts, train_ids)
    n_classes = len(concepts)
    config = settings.train_config(bits)
    feats = archive.features[archive.rows(train_ids, source)]
    net = frozen_network(feats, n_classes, config)
    # A few dozen marked rows estimate the features' spread badly; the archive's own spread is known.
    sample = archive.features[rng.choice(len(archive.ids), min(len(archive.ids), 5000), replace=False)]
    net.module.set_normalisation(sample)  # type: ignore[operator]
    head, v, log = train_ahcl(net, labels, n_classes, config)
    t1 = time.perf_counter()
    codes = pack(sign(HeadArrays.of(head).embed(archive.features)))
    codes[archive.rows(train_ids)] = pack(v)
    model_config = frozen_model_config(
        archive.cache,
        "ahcl",
        config,
        concepts,
        True,
        learned_from={"marks": len(marks), "concepts": list(concepts), "other_sample": len(extra)},
        feature_normalisation="standardise with the archive's mean/std over a sample of up to 5,000 items "
        "(buffers in state_dict)",
    )
    log.update(train_s=t1 - t0, encode_s=time.perf_counter() - t1, trained_items=len(train_ids))
    content = ContentProjection.fit(sample, seed=settings.seed)  # the archive's spread, as the head's standardising
    return Learned(head.eval(), model_config, codes, train_ids, log, content)


def write_learned(
    learned: Learned,
    archive: ArchiveFeatures,
    marks: Marks,
    out_dir: str | Path,
    base_index: str | Path,
    settings: LearnSettings,
) -> dict:
    """model.pt, codes.h5, index.faiss (+ .json), marks.tsv and learn.json, in a folder that appears whole or not at
    all: written under a temporary name beside OUT_DIR and renamed into place."""
    out = Path(out_dir)
    if out.exists():
        raise HashidxError(f"{out}: already exists; learn into a new folder (the old model stays for undo)")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    base_sidecar = idx.load_sidecar(base_index)
    with writing(out):
        if out.exists():  # again under the lock: another learn into OUT_DIR may have just finished
            raise HashidxError(f"{out}: already exists; learn into a new folder (the old model stays for undo)")
        try:
            tmp.mkdir(parents=True)
            save_checkpoint(tmp / "model.pt", learned.head, learned.config, learned.content)
            cls = learned.config["classes"]
            CodeFile(
                learned.codes,
                archive.ids,
                archive.paths,
                archive.labels,
                learned.config["bits"],
                "ahcl",
                {
                    "model_sha256": sha256_file(tmp / "model.pt"),
                    "encoding": "learned by the discrete solver for marked items; the learned head on cached "
                    "features for the rest (no image through the backbone)",
                    "backbone": learned.config["backbone"],
                    # The archive's own classes, where its feature cache knew them; the model's are the concepts.
                    "classes": json.dumps(list(archive.cache.dataset.classes)),
                    "concepts": json.dumps(cls),
                    "image_root": str(archive.cache.dataset.root),
                    "marked_items": len(learned.marked),
                },
                geo=archive.geo,
                content=None if learned.content is None else learned.content.apply(archive.features),
            ).save(tmp / "codes.h5")
            kind = base_sidecar.get("index_type", "flat")
            index, params = idx.build(
                learned.codes, archive.ids, kind, base_sidecar.get("nlist"), base_sidecar.get("nprobe")
            )
            idx.save(
                index,
                tmp / "index.faiss",
                params,
                tmp / "codes.h5",
                {"method": "ahcl", "model_sha256": sha256_file(tmp / "model.pt")},
                recorded_folder=out,
            )
            write_marks(marks, tmp / "marks.tsv")
            record = {
                "base_index": str(Path(base_index).resolve()),
                "features": str(archive.source.resolve()),
                "items": len(archive.ids),
                "left_out_without_features": archive.missing,
                "concepts": learned.config["learned_from"]["concepts"],
                "marks": len(marks),
                "settings": asdict(settings),
                "bits": learned.config["bits"],
                "log": learned.log["iterations"],
                "times_s": {k: learned.log[k] for k in ("train_s", "encode_s")},
                "hashidx_version": __version__,
            }
            write_json(tmp / "learn.json", record)
            os.replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return record


def learn_run(
    index: str | Path,
    marks_path: str | Path,
    out_dir: str | Path,
    features: str | Path | None = None,
    bits: int | None = None,
    settings: LearnSettings = DEFAULT_SETTINGS,
) -> dict:
    """`hashidx learn`: marks + the index's archive features → a new model and index in OUT_DIR."""
    marks = read_marks(marks_path)
    archive = archive_features(index, features)
    learned = learn_model(archive, marks, bits or int(idx.load_sidecar(index)["bits"]), settings, str(marks_path))
    return write_learned(learned, archive, marks, out_dir, index, settings)
