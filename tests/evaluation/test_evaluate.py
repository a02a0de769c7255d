"""Evaluating a run folder: the figures equal the metrics computed by hand from its files."""

import json

import numpy as np
import pytest

from hashidx.codes.codefile import CodeFile
from hashidx.data.split import load_split
from hashidx.errors import HashidxError
from hashidx.evaluation.evaluate import evaluate_run
from hashidx.evaluation.metrics import retrieval_metrics
from hashidx.features.cache import FeatureCache
from hashidx.methods.checkpoints import load_checkpoint
from hashidx.methods.encoder import Encoder
from hashidx.methods.runs import train_run


def test_evaluate_run_equals_metrics_of_its_own_files(ucmd_features, tmp_path):
    run = tmp_path / "run"
    train_run(ucmd_features, run, bits=16, seed=0)
    out = evaluate_run(run)
    cache = FeatureCache.load(ucmd_features)
    query_idx, _ = load_split(run / "split.json").indices(cache.dataset)
    encoder = Encoder(*load_checkpoint(run / "model.pt"))
    db = CodeFile.load(run / "codes.h5")
    expect = retrieval_metrics(
        encoder.encode_features(cache.features[query_idx]), cache.dataset.labels[query_idx], db.codes, db.labels
    )
    assert {k: out[k] for k in expect} == pytest.approx(expect)
    assert out["n_query"] == len(query_idx) == 20 and out["n_database"] == 80
    assert json.loads((run / "eval.json").read_text())["mAP"] == out["mAP"]


def test_codes_from_another_model_are_refused(ucmd_features, tmp_path):
    train_run(ucmd_features, tmp_path / "a", bits=16, seed=0)
    train_run(ucmd_features, tmp_path / "b", bits=16, seed=1)
    (tmp_path / "a" / "codes.h5").write_bytes((tmp_path / "b" / "codes.h5").read_bytes())
    with pytest.raises(HashidxError, match="codes.h5 was not made with this model.pt"):
        evaluate_run(tmp_path / "a")
    assert not np.isnan(evaluate_run(tmp_path / "b")["mAP"])
