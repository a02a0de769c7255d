"""Evaluating a run folder: the figures equal the metrics computed by hand from its files."""

import json

import numpy as np
import pytest

from hashidx.codes.binary import pack, sign
from hashidx.codes.codefile import CodeFile
from hashidx.data.split import load_split
from hashidx.errors import HashidxError
from hashidx.evaluation.evaluate import evaluate_run
from hashidx.evaluation.metrics import retrieval_metrics
from hashidx.features.cache import FeatureCache
from hashidx.methods.checkpoints import load_checkpoint
from hashidx.methods.encoder import Encoder
from hashidx.methods.runs import train_run
from hashidx.methods.training import TrainConfig
from hashidx.results.rerank import DEFAULT_RERANK

from ..data.test_multilabel import TABLE as UCMD_TABLE


def test_evaluate_run_equals_metrics_of_its_own_files(ucmd_features, tmp_path):
    run = tmp_path / "run"
    train_run(ucmd_features, run, bits=16, seed=0)
    out = evaluate_run(run)
    cache = FeatureCache.load(ucmd_features)
    query_idx, _ = load_split(run / "split.json").indices(cache.dataset)
    encoder = Encoder(*load_checkpoint(run / "model.pt"))
    db = CodeFile.load(run / "codes.h5")
    u = encoder.embed_features(cache.features[query_idx])
    expect = retrieval_metrics(
        pack(sign(u)), cache.dataset.labels[query_idx], db.codes, db.labels, query_real=u, rerank=DEFAULT_RERANK
    )
    assert {k: out[k] for k in expect} == pytest.approx(expect) and out["rerank"] == DEFAULT_RERANK
    assert out["n_query"] == len(query_idx) == 20 and out["n_database"] == 80
    assert json.loads((run / "eval.json").read_text())["mAP"] == out["mAP"]


def test_tie_aware_map_equals_a_monte_carlo_over_database_orders(ucmd_features, tmp_path):
    """On a real run, the closed form against the mean of db-order mAP over 300 random database orders."""
    run = tmp_path / "run"
    train_run(ucmd_features, run, bits=8, seed=0, config=TrainConfig(iterations=1))  # short: classes still collide
    cache = FeatureCache.load(ucmd_features)
    query_idx, _ = load_split(run / "split.json").indices(cache.dataset)
    q = Encoder(*load_checkpoint(run / "model.pt")).encode_features(cache.features[query_idx])
    db = CodeFile.load(run / "codes.h5")
    q_labels = cache.dataset.labels[query_idx]
    exact = retrieval_metrics(q, q_labels, db.codes, db.labels)
    rng = np.random.default_rng(0)
    draws = []
    for _ in range(300):
        perm = rng.permutation(len(db.codes))
        draws.append(retrieval_metrics(q, q_labels, db.codes[perm], db.labels[perm], ks=(10,))["mAP_db_order"])
    assert np.std(draws) > 0  # the database order moves the db-order figure: ties across classes exist
    assert exact["mAP"] == pytest.approx(np.mean(draws), abs=4 * np.std(draws) / np.sqrt(len(draws)) + 1e-9)


def test_evaluate_a_multi_label_run(ucmd_slice, ucmd_features, tmp_path):
    """--labels end to end: a multi-label run is scored on the annotations it trained with, NDCG and all."""
    run = tmp_path / "run"
    table = UCMD_TABLE
    rec = train_run(ucmd_features, run, bits=16, seed=0, config=TrainConfig(iterations=3), labels=table)
    assert rec["labels"] == str(table.resolve())
    out = evaluate_run(run, rerank="none")
    assert out["multilabel"] and {"NDCG@100", "ACG@100", "WAP@100", "mAP_db_order"} <= set(out)
    assert 0 < out["NDCG@100"] <= 1 and 0 < out["mAP"] <= 1 and out["ACG@100"] > 0
    assert CodeFile.load(run / "codes.h5").labels.shape[1] == 17


def test_codes_from_another_model_are_refused(ucmd_features, tmp_path):
    train_run(ucmd_features, tmp_path / "a", bits=16, seed=0)
    train_run(ucmd_features, tmp_path / "b", bits=16, seed=1)
    (tmp_path / "a" / "codes.h5").write_bytes((tmp_path / "b" / "codes.h5").read_bytes())
    with pytest.raises(HashidxError, match="codes.h5 was not made with this model.pt"):
        evaluate_run(tmp_path / "a")
    assert not np.isnan(evaluate_run(tmp_path / "b")["mAP"])
