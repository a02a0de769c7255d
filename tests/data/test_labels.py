"""Label-only database items: the labels file, and AHCL coding them on a real slice through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from hashidx.cli import main
from hashidx.codes.binary import unpack
from hashidx.codes.codefile import CodeFile
from hashidx.data.labels import LabelFile, read_labels
from hashidx.data.split import load_split
from hashidx.errors import HashidxError
from hashidx.evaluation.metrics import retrieval_metrics
from hashidx.features.cache import FeatureCache
from hashidx.methods.checkpoints import load_checkpoint
from hashidx.methods.encoder import Encoder

CLASSES = ("agricultural", "airplane", "beach", "forest", "harbor")


def run(*args: str):
    return CliRunner().invoke(main, ["--quiet", *args])


def test_labels_file_round_trip_and_class_alignment(tmp_path):
    lf = LabelFile(("a", "b", "c"), np.array([1, 0, 1]), ("x", "y"))
    lf.save(tmp_path / "l.h5")
    back = read_labels(tmp_path / "l.h5")
    assert back.paths == lf.paths and back.labels.tolist() == [1, 0, 1] and back.classes == ("x", "y")
    # Aligned to the training data's class order, which may differ and have more classes.
    assert back.aligned(("q", "y", "x"), "l.h5").tolist() == [1, 2, 1]
    with pytest.raises(HashidxError, match="class 'x' is not among"):
        back.aligned(("y", "z"), "l.h5")


def test_labels_list_file_needs_no_images(tmp_path):
    (tmp_path / "l.txt").write_text("nowhere/1.tif\tx\nnowhere/2.tif\ty\n", encoding="utf-8")
    lf = read_labels(tmp_path / "l.txt")
    assert lf.paths == ("nowhere/1.tif", "nowhere/2.tif") and lf.classes == ("x", "y")


@pytest.mark.parametrize(
    "labels, message", [(np.array([0, 5]), "must index 'classes'"), (np.array([[0, 1], [1, 0]]), "must be n integers")]
)
def test_bad_labels_file_is_refused(tmp_path, labels, message):
    import h5py

    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f["labels"] = labels
        f["paths"] = ["a", "b"]
        f["classes"] = ["x", "y"]
        f.attrs["kind"] = "hashidx-labels"
    with pytest.raises(HashidxError, match=message):
        read_labels(tmp_path / "bad.h5")


@pytest.fixture(scope="module")
def label_only_run(ucmd_features, tmp_path_factory):
    """A 16-bit AHCL run whose database adds 100 label-only items (no images exist for them)."""
    out = tmp_path_factory.mktemp("label-only")
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(5), 20)
    rng.shuffle(labels)
    LabelFile(tuple(f"archive/{i:04d}" for i in range(100)), labels, CLASSES).save(out / "archive.h5")
    result = run(
        "train",
        str(ucmd_features),
        "--bits",
        "16",
        "--iterations",
        "6",
        "--labels-only",
        str(out / "archive.h5"),
        "-o",
        str(out / "run"),
    )
    assert result.exit_code == 0, result.output
    assert "180 database codes" in result.output
    return out


def test_label_only_items_get_codes_that_retrieve_their_class(label_only_run, ucmd_features):
    run_dir = label_only_run / "run"
    cf = CodeFile.load(run_dir / "codes.h5")
    split = load_split(run_dir / "split.json")
    assert cf.codes.shape == (180, 2) and cf.ids.tolist() == list(range(180))
    assert cf.paths[:80] == split.database and cf.paths[80] == "archive/0000"
    assert cf.attrs["label_only_items"] == 100
    record = json.loads((run_dir / "train.json").read_text())
    assert record["labels_only"]["items"] == 100 and record["n_codes"] == 180 and record["pool_size"] == 80
    # The real query images, through the trained network, find the label-only items of their own class.
    cache = FeatureCache.load(ucmd_features)
    query_idx, _ = split.indices(cache.dataset)
    head, config = load_checkpoint(run_dir / "model.pt")
    q = Encoder(head, config).encode_features(cache.features[query_idx])
    label_only = retrieval_metrics(q, cache.dataset.labels[query_idx], cf.codes[80:], cf.labels[80:], (10,))
    assert label_only["mAP"] >= 0.8
    # Items of one class outside the pool have one Q row, so their codes settle to one code per class.
    codes = unpack(cf.codes[80:], 16)
    assert all(len(np.unique(codes[cf.labels[80:] == k], axis=0)) <= 2 for k in range(5))


def test_label_only_items_count_in_evaluation(label_only_run):
    result = run("evaluate", str(label_only_run / "run"))
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["n_database"] == 180


@pytest.mark.parametrize(
    "case, message",
    [
        ("unknown-class", "class 'desert' is not among the training data's 5 classes"),
        ("symmetric", "--labels-only needs --method ahcl"),
        ("clash", "also database images"),
    ],
)
def test_label_only_refusals(case, message, ucmd_features, run_dir_split, tmp_path):
    split = load_split(run_dir_split)
    lines = {
        "unknown-class": "x/1.tif\tdesert\n",
        "symmetric": "x/1.tif\tbeach\n",
        "clash": f"{split.database[0]}\tbeach\n",
    }[case]
    (tmp_path / "l.txt").write_text(lines, encoding="utf-8")
    method = "symmetric" if case == "symmetric" else "ahcl"
    result = run(
        "train",
        str(ucmd_features),
        "--method",
        method,
        "--bits",
        "16",
        "--iterations",
        "1",
        "--split",
        str(run_dir_split),
        "--labels-only",
        str(tmp_path / "l.txt"),
        "-o",
        str(tmp_path / "run"),
    )
    assert result.exit_code == 1 and message in result.output
    if case != "symmetric":  # a flag conflict names the flag; a bad file names the file
        assert str(tmp_path / "l.txt") in result.output
    assert not (tmp_path / "run" / "codes.h5").exists()


@pytest.fixture(scope="module")
def run_dir_split(label_only_run):
    return label_only_run / "run" / "split.json"
