"""Evaluate a run: encode the split's query images with the network, rank the learned database codes."""

from __future__ import annotations

import json
import time
from pathlib import Path

from hashidx.codes.codefile import CodeFile
from hashidx.data.datasets import load_dataset
from hashidx.data.split import load_split
from hashidx.errors import HashidxError
from hashidx.evaluation.metrics import retrieval_metrics
from hashidx.features.cache import FeatureCache
from hashidx.io.atomic import sha256_file, write_json
from hashidx.methods.checkpoints import load_checkpoint
from hashidx.methods.encoder import Encoder

TIE_RULE = "ties at equal Hamming distance keep database order (stable sort)"


def read_run(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "train.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HashidxError(f"{run_dir}: no train.json; pass a folder written by 'hashidx train -o RUN_DIR'") from None
    except ValueError as exc:
        raise HashidxError(f"{run_dir / 'train.json'}: invalid JSON ({exc}); rerun 'hashidx train'") from None


def evaluate_run(
    run_dir: str | Path,
    split_path: str | Path | None = None,
    ks: tuple[int, ...] = (10, 50, 100),
    with_curve: bool = False,
) -> dict:
    """Metrics (hashidx.evaluation.metrics) of the run's query images against its database codes; saved as eval.json."""
    run_dir = Path(run_dir)
    record = read_run(run_dir)
    split = load_split(split_path or run_dir / "split.json")
    head, config = load_checkpoint(run_dir / "model.pt")
    encoder = Encoder(head, config)
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
    t0 = time.perf_counter()
    if encoder.finetuned:
        # A fine-tuned backbone has no feature cache: the query images pass the whole network.
        ds = load_dataset(record["data"])
        query_idx, _ = split.indices(ds)
        query_codes = encoder.encode_images([ds.absolute(i) for i in query_idx])[0]
        query_labels = ds.labels[query_idx]
    else:
        cache = FeatureCache.load(record["features"])
        encoder.check_features(cache, record["features"])
        query_idx, _ = split.indices(cache.dataset)
        query_codes = encoder.encode_features(cache.features[query_idx])
        query_labels = cache.dataset.labels[query_idx]
    t_encode = time.perf_counter() - t0
    out = retrieval_metrics(query_codes, query_labels, db.codes, db.labels, ks, with_curve=with_curve)
    out.update(
        {
            "bits": db.bits,
            "method": db.method,
            "n_query": len(query_idx),
            "n_database": len(db.codes),
            "tie_rule": TIE_RULE,
            "query_head_s": t_encode,
        }
    )
    write_json(run_dir / "eval.json", out)
    return out
