"""Evaluate a run: encode the split's query images with the network, rank the learned database codes."""

from __future__ import annotations

import json
import time
from pathlib import Path

from hashidx.codes.binary import pack, sign
from hashidx.codes.codefile import CodeFile
from hashidx.data.datasets import load_dataset
from hashidx.data.labels import read_label_table, table_labels
from hashidx.data.split import load_split
from hashidx.engines.base import Engine
from hashidx.errors import HashidxError
from hashidx.evaluation.metrics import retrieval_metrics
from hashidx.features.cache import FeatureCache
from hashidx.features.runtime import DEFAULT_RUNTIME
from hashidx.io.atomic import sha256_file, write_json
from hashidx.methods.encoder import load_encoder
from hashidx.results.rerank import DEFAULT_RERANK

TIE_RULE = (
    "tie-aware: expected value over random orders of items with equal ranking keys (McSherry & Najork 2008); "
    "mAP_db_order breaks ties by Hamming distance in database order"
)


# What evaluate reads from train.json, and the types it must have.
_RUN_FIELDS: dict[str, tuple[type, ...]] = {"data": (str,), "features": (str, type(None)), "labels": (str, type(None))}


def read_run(run_dir: Path) -> dict:
    path = run_dir / "train.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HashidxError(f"{run_dir}: no train.json; pass a folder written by 'hashidx train -o RUN_DIR'") from None
    except ValueError as exc:
        raise HashidxError(f"{path}: invalid JSON ({exc}); rerun 'hashidx train'") from None
    if not isinstance(record, dict):
        raise HashidxError(f"{path}: not a training record (a JSON object); rerun 'hashidx train'")
    for key, types in _RUN_FIELDS.items():
        if key not in record or not isinstance(record[key], types):
            raise HashidxError(f"{path}: '{key}' is missing or malformed; rerun 'hashidx train'")
    return record


def evaluate_run(
    run_dir: str | Path,
    split_path: str | Path | None = None,
    ks: tuple[int, ...] = (10, 50, 100),
    with_curve: bool = False,
    rerank: str | int = DEFAULT_RERANK,
    labels: str | Path | None = None,
    runtime: str = DEFAULT_RUNTIME,
    engine: Engine | None = None,
) -> dict:
    """Metrics (hashidx.evaluation.metrics) of the run's query images against its database codes; saved as eval.json.

    The queries pass through the network, so their outputs u can re-rank by uᵀv (`rerank`: none, ties or
    K′). `labels` (a multi-label table or list; default: the one the run trained with, if any) sets the
    labels of queries and database items alike. `runtime` runs a fine-tuned network's query passes, here or on
    `engine`'s workers (a frozen model's queries come from the feature cache: the head alone runs, here).
    """
    run_dir = Path(run_dir)
    record = read_run(run_dir)
    split = load_split(split_path or run_dir / "split.json")
    encoder = load_encoder(run_dir / "model.pt", runtime)
    db = CodeFile.load(run_dir / "codes.h5")
    if db.attrs.get("model_sha256") and db.attrs["model_sha256"] != sha256_file(run_dir / "model.pt"):
        raise HashidxError(
            f"{run_dir}: codes.h5 was not made with this model.pt (an interrupted 'hashidx train'?); "
            "rerun the train command (with --resume if it saved progress)"
        )
    if db.bits != encoder.bits:
        raise HashidxError(
            f"{run_dir / 'codes.h5'}: {db.bits}-bit codes but model.pt is {encoder.bits}-bit; retrain the run"
        )
    if rerank == "features" and (encoder.content is None or db.content is None):
        raise HashidxError(
            f"{run_dir}: --rerank features needs the model's content projection and content vectors in codes.h5, "
            "which runs of this hashidx write on frozen features; retrain, or use --rerank ties or a K′"
        )
    query_content = None
    t0 = time.perf_counter()
    if encoder.finetuned:
        # A fine-tuned backbone has no feature cache: the query images pass the whole network.
        ds = load_dataset(record["data"])
        query_idx, _ = split.indices(ds)
        query_real = encoder.embed_images([ds.absolute(i) for i in query_idx], engine=engine)[0]
    else:
        cache = FeatureCache.load(record["features"])
        encoder.check_features(cache, record["features"])
        ds = cache.dataset
        query_idx, _ = split.indices(ds)
        query_real = encoder.embed_features(cache.features[query_idx])
        query_content = encoder.content_of(cache.features[query_idx])
    query_codes = pack(sign(query_real))
    t_encode = time.perf_counter() - t0
    query_labels, db_labels = ds.labels[query_idx], db.labels
    labels = labels or record.get("labels")  # a multi-label run is evaluated on the labels it trained with
    if labels is not None:
        table = read_label_table(labels)
        query_labels = table_labels(table, [ds.paths[i] for i in query_idx], labels)
        db_labels = table_labels(table, db.paths, labels)
    if query_labels.ndim != db_labels.ndim:
        raise HashidxError(
            f"{run_dir}: the queries' labels and the codes' labels differ in kind (one multi-label); "
            "pass --labels FILE to evaluate both with the same annotations"
        )
    t0 = time.perf_counter()
    out = retrieval_metrics(
        query_codes,
        query_labels,
        db.codes,
        db_labels,
        ks,
        with_curve=with_curve,
        query_real=query_real,
        rerank=rerank,
        query_content=query_content,
        db_content=db.content,
    )
    t_rank = time.perf_counter() - t0
    out.update(
        {
            "bits": db.bits,
            "method": db.method,
            "n_query": len(query_idx),
            "n_database": len(db.codes),
            "multilabel": bool(db_labels.ndim == 2),
            "rerank": rerank,
            "tie_rule": TIE_RULE,
            "query_head_s": t_encode,
            "rank_s": t_rank,
        }
    )
    write_json(run_dir / "eval.json", out)
    return out
