"""A training run folder: features + split in, model.pt, codes.h5, split.json, train.json out."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from hashidx.codes.binary import pack
from hashidx.codes.codefile import CodeFile
from hashidx.data.chips import Tiling
from hashidx.data.datasets import Dataset
from hashidx.data.footprints import Footprints
from hashidx.data.labels import read_label_table, read_labels, relabel
from hashidx.data.rasters import Radiometry
from hashidx.data.split import Split, load_split, make_split, save_split
from hashidx.engines.base import Engine
from hashidx.errors import HashidxError
from hashidx.features.backbones import DEFAULT_BACKBONE, backbone_spec, weights_label
from hashidx.features.cache import FeatureCache
from hashidx.features.content import ContentProjection
from hashidx.features.extract import DEFAULT_VIEWS, extract_to
from hashidx.features.runtime import DEFAULT_RUNTIME
from hashidx.io.atomic import check_room, output_folder, sha256_file, write_json
from hashidx.io.locks import writing
from hashidx.io.threads import use_torch_threads
from hashidx.methods.ahcl import train_ahcl
from hashidx.methods.baselines import fit_itq, fit_lsh
from hashidx.methods.checkpoints import save_checkpoint
from hashidx.methods.encoder import Encoder
from hashidx.methods.finetune import CROP, RESIZE, finetune_network, load_crops, resolve_device
from hashidx.methods.inputs import dataset_inputs
from hashidx.methods.symmetric import train_symmetric
from hashidx.methods.training import Checkpointing, TrainConfig
from hashidx.version import __version__

METHODS = ("ahcl", "symmetric", "itq", "lsh")
ENCODING = {
    "ahcl": "learned by the discrete solver (no database image through the network)",
    "symmetric": "network: sgn(F(x)) of every database image",
    "itq": "ITQ projection of every database image's features",
    "lsh": "random hyperplanes on every database image's features",
}


def is_feature_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in (".h5", ".hdf5")


def load_or_extract(
    source: str | Path,
    out_dir: Path,
    backbone: str = DEFAULT_BACKBONE,
    image_size: int | None = None,
    views: int = DEFAULT_VIEWS,
    batch_size: int = 8,
    on_error: str = "fail",
    reuse: bool = False,
    weights: str = "imagenet",
    runtime: str = DEFAULT_RUNTIME,
    inputs: tuple[Dataset, Radiometry] | None = None,
    engine: Engine | None = None,
) -> tuple[FeatureCache, Path]:
    """Features of DATA (extracted into RUN_DIR/features.h5, resuming an interrupted extraction) or of a cache.

    `inputs` is DATA as methods.inputs.dataset_inputs reads it (chips, bands, scaling). With `reuse` (a resumed
    run), a complete RUN_DIR/features.h5 of the same images and settings is kept.
    """
    if is_feature_file(source):
        return FeatureCache.load(source), Path(source).resolve()
    path = out_dir / "features.h5"
    ds, radiometry = inputs or dataset_inputs(source)
    if reuse and path.is_file():
        cache = FeatureCache.load(path)
        size = image_size or backbone_spec(backbone).image_size
        same = (cache.backbone, cache.image_size, cache.views, cache.dataset.root, cache.weights, cache.layers) == (
            backbone,
            size,
            views,
            ds.root.resolve(),
            weights,
            backbone_spec(backbone).layers,
        )
        same = same and cache.radiometry.same_as(radiometry)
        if same and sorted(cache.dataset.paths + tuple(p for p, _ in cache.skipped)) == sorted(ds.paths):
            return cache, path.resolve()
    cache = extract_to(
        ds,
        path,
        backbone,
        image_size,
        views,
        batch_size,
        on_error,
        weights=weights,
        runtime=runtime,
        radiometry=radiometry,
        engine=engine,
    )
    return cache, path.resolve()


def frozen_model_config(
    cache: FeatureCache, method: str, config: TrainConfig, classes: tuple[str, ...], multilabel: bool, **more: object
) -> dict:
    """What model.pt records of a head on a feature cache's backbone: enough to read and encode any later image
    the way the cache's images were (`more`: what else the command records)."""
    return {
        "method": method,
        "bits": config.bits,
        "backbone": cache.backbone,
        "image_size": cache.image_size,
        "views": cache.views,
        "weights": cache.weights,
        "layers": cache.layers,
        "runtime": cache.runtime,
        **cache.radiometry.attrs(),
        "feature_dim": int(cache.features.shape[1]),
        "classes": list(classes),
        "multilabel": multilabel,
        "hidden": config.hidden,
        "dropout": config.dropout,
        "feature_normalisation": "standardise with the training pool's mean/std (buffers in state_dict)",
        "seed": config.seed,
        **more,
        "hashidx_version": __version__,
    }


def pool_positions(n_db: int, train_pool: float | None, seed: int) -> np.ndarray:
    """Database positions whose images train the network: N items, a fraction, or all."""
    if train_pool is None:
        return np.arange(n_db)
    size = int(round(train_pool * n_db)) if train_pool <= 1 else int(train_pool)
    if not 1 <= size <= n_db:
        raise HashidxError(f"--train-pool {train_pool} gives {size} images; use 1..{n_db} or a fraction in (0, 1]")
    return np.sort(np.random.default_rng(seed + 1).choice(n_db, size, replace=False))


def train_run(
    source: str | Path,
    out_dir: str | Path,
    method: str = "ahcl",
    bits: int = 32,
    split_path: str | Path | None = None,
    query_fraction: float = 0.2,
    seed: int = 0,
    split_seed: int = 0,
    train_pool: float | None = None,
    backbone: str = DEFAULT_BACKBONE,
    image_size: int | None = None,
    views: int = DEFAULT_VIEWS,
    batch_size: int = 8,
    config: TrainConfig | None = None,
    labels_only: str | Path | None = None,
    on_error: str = "fail",
    resume: bool = False,
    finetune: bool = False,
    weights: str = "imagenet",
    device: str = "auto",
    augment: bool = False,
    checkpoint_every: int = 1,
    labels: str | Path | None = None,
    runtime: str = DEFAULT_RUNTIME,
    bands: str | None = None,
    scale: str | None = None,
    tiling: Tiling | None = None,
    engine: Engine | None = None,
) -> dict:
    """Train `method` and write the run folder; returns the train.json record.

    `labels` (a multi-label table or `path<TAB>label1,label2` list) replaces the class-folder labels of
    DATA's images: similar pairs share a label, and the split is stratified over the label sets.

    `labels_only` (AHCL only) names a labels file of extra database items with no pixels: they get
    solver-learned codes after the split's database images, and ids that continue theirs.
    AHCL and symmetric save their state to RUN_DIR/resume.pt every `checkpoint_every` outer iterations (removed
    when the run completes); `resume` continues from it, to the same outputs as an uninterrupted run.
    `finetune` trains the backbone too, end to end on the pool's images (DATA must be images), starting
    from `weights` (imagenet, none or a state-dict file), on `device` (auto: CUDA when available).
    `runtime` (onnx or torch) runs the frozen backbone passes: feature extraction, and the fine-tuned
    symmetric network's database encoding. `bands`, `scale` and `tiling` say how DATA's rasters are read
    (methods.inputs.dataset_inputs); the model records the bands and scaling for every later image. `engine`
    (ray) runs the feature extraction and a fine-tuned symmetric network's database pass on its workers.
    """
    if method not in METHODS:
        raise HashidxError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    use_torch_threads()  # hashidx.io.threads: what keeps concurrent trainings from slowing each other
    if labels_only is not None and labels is not None:
        raise HashidxError("--labels-only takes single-label items; it cannot be combined with --labels yet")
    if labels_only is not None and method != "ahcl":
        raise HashidxError(f"--labels-only needs --method ahcl: {method} codes a database item from its pixels")
    if bits <= 0 or bits % 8:
        raise HashidxError(f"--bits {bits}: code length must be a positive multiple of 8 (16, 32, 64...)")
    if finetune and method not in ("ahcl", "symmetric"):
        raise HashidxError(f"--finetune trains a hash network; {method} has none (use ahcl or symmetric)")
    if is_feature_file(source) and (bands or scale or tiling):
        raise HashidxError(
            f"{source}: --bands, --scale and --tile say how images are read; a feature cache was read already "
            "(drop them, or pass the images)"
        )
    if finetune and is_feature_file(source):
        raise HashidxError(
            f"{source}: --finetune trains the backbone on pixels; pass the image dataset "
            "(class folders or a list file), not a feature cache"
        )
    out = Path(out_dir)
    # One writer per run folder; a failed run leaves no folder it created behind, unless it can resume.
    with writing(out), output_folder(out, keep="resume.pt"):
        t0 = time.perf_counter()
        inputs = (
            None
            if is_feature_file(source)
            else dataset_inputs(source, bands, scale, tiling, split_seed, labels_required=False)
        )
        if finetune:
            assert inputs is not None
            cache, features_path, (ds, radiometry) = None, None, inputs
            torch_device = resolve_device(device)
        else:
            cache, features_path = load_or_extract(
                source, out, backbone, image_size, views, batch_size, on_error, resume, weights, runtime, inputs, engine
            )
            ds, radiometry = cache.dataset, cache.radiometry
        if labels is not None:
            ds = relabel(ds, read_label_table(labels), labels)
        if not ds.labelled and method in ("ahcl", "symmetric"):
            raise HashidxError(
                f"{source}: the images have no labels (no class folders); --method {method} learns from classes: "
                "use --method itq for an unsupervised run, give --labels, or mark items and run 'hashidx learn'"
            )
        t_features = time.perf_counter() - t0
        # model.pt and resume.pt (weights, SGD momentum and more), each a few times the network; say so now,
        # not after the training.
        weights_n = (20_000_000 if finetune else 0) + backbone_spec(
            cache.backbone if cache else backbone
        ).feature_dim * ((config or TrainConfig()).hidden)
        check_room(out, 16 * weights_n + len(ds) * 64, "the run")
        # The split has its own seed so that changing the training seed keeps the evaluation protocol.
        split: Split = load_split(split_path) if split_path else make_split(ds, query_fraction, split_seed)
        query_idx, db_idx = split.indices(ds)
        save_split(replace(split, image_root=str(Path(ds.root).resolve())), out / "split.json")
        pool = pool_positions(len(db_idx), train_pool, seed)
        config = replace(config or TrainConfig(), bits=bits, seed=seed).resolved(method, ds.labels.ndim == 2, finetune)
        db_labels, db_paths = ds.labels[db_idx], split.database
        if labels_only is not None:
            extra = read_labels(labels_only)
            clash = set(extra.paths).intersection(split.database)
            if clash:
                raise HashidxError(
                    f"{labels_only}: {len(clash)} item(s) are also database images, e.g. {next(iter(clash))!r}; "
                    "list only items without features"
                )
            db_labels = np.concatenate([db_labels, extra.aligned(ds.classes, labels_only)])
            db_paths = split.database + extra.paths
        skipped = [] if cache is None else list(cache.skipped)
        if finetune:
            spec = backbone_spec(backbone)
            model_config = {
                "method": method,
                "bits": bits,
                "backbone": backbone,
                "image_size": CROP,
                "resize": RESIZE,
                "views": 1,
                "feature_dim": spec.feature_dim,
                "layers": spec.layers,
                "classes": list(ds.classes),
                "multilabel": ds.labels.ndim == 2,
                "finetune": True,
                "weights": weights_label(spec, weights),
                "augment": augment,
                "preprocessing": f"resize to {RESIZE}x{RESIZE}, centre crop {CROP}, (x-mean)/std of the backbone",
                **radiometry.attrs(),
                "seed": seed,
                "hashidx_version": __version__,
            }
            pixels, kept, bad = load_crops(
                [ds.absolute(i) for i in db_idx[pool]], on_error, desc="load pool images", radiometry=radiometry
            )
            skipped += [(ds.paths[db_idx[pool[i]]], reason) for i, reason in bad]
            pool = pool[kept]  # an unreadable pool image still gets an AHCL code from its label
            if len(pool) == 0:
                raise HashidxError(f"{source}: none of the pool's images could be read; first: {bad[0][1]}")
            network = finetune_network(
                backbone, weights, pixels, len(ds.classes), config, torch_device, augment, radiometry.channels
            )
            t_features = time.perf_counter() - t0  # here: loading the pool's images and the backbone
            look = json.dumps(radiometry.attrs(), sort_keys=True)
            data_id = hashlib.sha256(
                "\n".join([str(ds.root.resolve()), backbone, weights, str(augment), look, *ds.paths]).encode()
            ).hexdigest()
        else:
            assert cache is not None and features_path is not None  # the frozen path always has its feature cache
            model_config = frozen_model_config(cache, method, config, ds.classes, ds.labels.ndim == 2)
            network = cache.features[db_idx[pool]]
            data_id = sha256_file(features_path)
        fingerprint = json.dumps(
            {
                "method": method,
                "config": config.to_json(),
                "features": data_id,
                "split": sha256_file(out / "split.json"),
                "pool": pool.tolist(),
                "labels_only": None if labels_only is None else sha256_file(labels_only),
                "labels": None if labels is None else sha256_file(labels),
            }
        )
        if checkpoint_every < 1:
            raise HashidxError(f"--checkpoint-every {checkpoint_every}: use a number of iterations >= 1")
        checkpointing = Checkpointing(
            out / "resume.pt", hashlib.sha256(fingerprint.encode()).hexdigest(), resume, checkpoint_every
        )
        t1 = time.perf_counter()
        if method == "ahcl":
            head, v, log = train_ahcl(network, db_labels, len(ds.classes), config, pool, checkpointing)
            t_train, t_db = time.perf_counter() - t1, 0.0
            codes = pack(v)
        else:
            if method == "symmetric":
                head, log = train_symmetric(network, db_labels[pool], len(ds.classes), config, checkpointing)
            else:
                assert isinstance(network, np.ndarray)  # itq and lsh are refused with --finetune above
                head, log = (fit_itq if method == "itq" else fit_lsh)(network, bits, seed), {"iterations": []}
            t_train = time.perf_counter() - t1
            if finetune:
                # Symmetric codes need every database image through the whole fine-tuned network.
                codes = Encoder(head, model_config, runtime).encode_images(
                    [ds.absolute(i) for i in db_idx], engine=engine
                )[0]
            else:
                assert cache is not None
                # The head's share of database encoding; the backbone's share was the feature extraction.
                codes = Encoder(head, model_config).encode_features(cache.features[db_idx])
            t_db = time.perf_counter() - t1 - t_train
        content, db_content = None, None
        if not finetune and config.content_dims:
            assert cache is not None
            # Order inside a code (results.rerank "features"): the pool fits the projection, every database image
            # with features gets its vector; label-only items have none (zeros: no content preference).
            content = ContentProjection.fit(cache.features[db_idx[pool]], config.content_dims, seed)
            db_content = np.zeros((len(db_labels), content.dims), np.float16)
            db_content[: len(db_idx)] = content.apply(cache.features[db_idx])
        save_checkpoint(out / "model.pt", head, model_config, content)
        geo = None
        if ds.geo is not None:
            geo = Footprints.concat([ds.geo.subset(db_idx), Footprints.unknown(len(db_labels) - len(db_idx))])
        CodeFile(
            codes,
            np.arange(len(db_labels), dtype=np.int64),
            db_paths,
            db_labels,
            bits,
            method,
            {
                "model_sha256": sha256_file(out / "model.pt"),
                "split_sha256": sha256_file(out / "split.json"),
                "encoding": ENCODING[method],
                "backbone": model_config["backbone"],
                "label_only_items": len(db_labels) - len(db_idx),
                "classes": json.dumps(list(ds.classes)),
                # Where the database paths are relative to: galleries show their pixels from here.
                "image_root": str(ds.root.resolve()),
            },
            geo=geo,
            content=db_content,
        ).save(out / "codes.h5")
        record = {
            "command": sys.argv,
            "method": method,
            "bits": bits,
            "seed": seed,
            "features": None if features_path is None else str(features_path),
            "data": str(ds.root.resolve()),
            "finetune": None
            if not finetune
            else {
                "weights": model_config["weights"],
                "device": str(torch_device),
                "augment": augment,
                "mixed_precision": torch_device.type == "cuda",
            },
            "backbone": model_config["backbone"],
            "image_size": model_config["image_size"],
            "views": model_config["views"],
            "split": {
                "seed": split.seed,
                "query_fraction": split.query_fraction,
                "n_query": len(query_idx),
                "n_database": len(db_idx),
            },
            "labels": None if labels is None else str(Path(labels).resolve()),
            "labels_only": None
            if labels_only is None
            else {"file": str(labels_only), "items": len(db_labels) - len(db_idx)},
            "n_codes": len(db_labels),
            "pool_size": len(pool),
            "config": config.to_json(),
            "skipped_images": [{"path": p, "error": e} for p, e in skipped],
            "times_s": {
                "features": t_features,
                "train": t_train,
                "database_head": t_db,
                "total": time.perf_counter() - t0,
            },
            "log": log["iterations"],
            **({"settling": log["settling"]} if "settling" in log else {}),
            "hashidx_version": __version__,
        }
        write_json(out / "train.json", record)
        checkpointing.path.unlink(missing_ok=True)  # the run is whole: nothing left to resume
        return record
