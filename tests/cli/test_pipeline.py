"""The real pipeline on a UC Merced slice through the command line, every output reopened and checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from hashidx.cli import main
from hashidx.codes.codefile import CodeFile
from hashidx.data.split import load_split
from hashidx.features.cache import FeatureCache
from hashidx.index import indexes as idx
from hashidx.io.atomic import sha256_file

BITS = 16
ITERATIONS = "6"  # a short schedule: this checks the pipeline, the full one is measured in benchmarks/


def invoke(*args: str) -> str:
    result = CliRunner().invoke(main, ["--quiet", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def run_dir(ucmd_features, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    invoke(
        "train", str(ucmd_features), "--method", "ahcl", "--bits", str(BITS), "--iterations", ITERATIONS, "-o", str(out)
    )
    return out


def test_features_command_writes_a_complete_cache(ucmd_slice, tmp_path):
    out = tmp_path / "f.h5"
    msg = invoke("features", str(ucmd_slice), "--views", "1", "-o", str(out))
    assert "100 images, 5 classes, 1712-d" in msg
    cache = FeatureCache.load(out)
    assert cache.features.shape == (100, 1712) and np.isfinite(cache.features).all()
    assert cache.dataset.classes == ("agricultural", "airplane", "beach", "forest", "harbor")
    assert np.bincount(cache.dataset.labels).tolist() == [20] * 5
    with h5py.File(out) as f:
        assert f.attrs["backbone"] == "efficientnet-lite0" and f.attrs["image_size"] == 224 and f.attrs["views"] == 1
        assert "preprocessing" in f.attrs and "hashidx_version" in f.attrs
        assert f.attrs["layers"] == "avgpool(blocks 10, 15) + avgpool(head)"


def test_train_outputs(run_dir, ucmd_features):
    split = load_split(run_dir / "split.json")
    assert len(split.query) == 20 and len(split.database) == 80  # 20% of each class
    cf = CodeFile.load(run_dir / "codes.h5")
    assert cf.codes.shape == (80, BITS // 8) and cf.codes.dtype == np.uint8
    assert cf.paths == split.database and cf.ids.tolist() == list(range(80))
    assert cf.attrs["model_sha256"] == sha256_file(run_dir / "model.pt")
    assert cf.attrs["split_sha256"] == sha256_file(run_dir / "split.json")
    assert cf.method == "ahcl" and cf.bits == BITS
    ckpt = torch.load(run_dir / "model.pt", weights_only=True)
    assert ckpt["config"]["bits"] == BITS and ckpt["config"]["backbone"] == "efficientnet-lite0"
    json.dumps(ckpt["config"])  # the config is plain JSON
    log = json.loads((run_dir / "train.json").read_text())
    assert len(log["log"]) == int(ITERATIONS) and log["pool_size"] == 80
    assert all(np.isfinite(it["loss"]) for it in log["log"])
    assert log["log"][-1]["loss"] < log["log"][0]["loss"]


@pytest.mark.parametrize("index_type", ["flat", "ivf"])
def test_build_index_query_and_evaluate(run_dir, ucmd_slice, tmp_path, index_type):
    index_path = tmp_path / f"{index_type}.index"
    invoke("build-index", str(run_dir / "codes.h5"), "--type", index_type, "-o", str(index_path))
    index, sidecar = idx.load(index_path)
    assert (
        index.ntotal == 80 and sidecar["bits"] == BITS and sidecar["codes_sha256"] == sha256_file(run_dir / "codes.h5")
    )

    split = load_split(run_dir / "split.json")
    queries = tmp_path / "queries.txt"
    queries.write_text("".join(f"{ucmd_slice / p}\n" for p in split.query), encoding="utf-8")
    results = tmp_path / "results.tsv"
    nprobe = ["--nprobe", str(sidecar["nlist"])] if index_type == "ivf" else []
    invoke(
        "query",
        str(index_path),
        str(queries),
        "--model",
        str(run_dir / "model.pt"),
        "-k",
        "5",
        "-o",
        str(results),
        *nprobe,
    )
    rows = [line.split("\t") for line in results.read_text().splitlines()]
    assert rows[0] == ["query", "rank", "id", "path", "distance", "score", "lon", "lat", "datetime"]
    assert len(rows) == 1 + 20 * 5
    # Queries are found among their own class: the label is the folder of the path.
    same = [r[0].split("/")[-2] == r[3].split("/")[0] for r in rows[1:] if r[1] == "1"]
    assert np.mean(same) >= 0.8

    metrics = json.loads(invoke("evaluate", str(run_dir)))
    assert metrics["mAP"] >= 0.8 and metrics["n_query"] == 20 and metrics["n_database"] == 80
    assert json.loads((run_dir / "eval.json").read_text())["mAP"] == metrics["mAP"]
    # The query command ranks as evaluate does: top-1 distances agree with a numpy ranking of the same codes.
    assert all(int(r[4]) >= 0 for r in rows[1:])


def test_jsonl_results(run_dir, ucmd_slice, tmp_path):
    index_path = tmp_path / "flat.index"
    invoke("build-index", str(run_dir / "codes.h5"), "-o", str(index_path))
    queries = tmp_path / "q.csv"
    first = load_split(run_dir / "split.json").query[0]
    queries.write_text(f"name,path\nq1,{ucmd_slice / first}\n", encoding="utf-8")
    out = tmp_path / "r.jsonl"
    invoke(
        "query",
        str(index_path),
        str(queries),
        "--model",
        str(run_dir / "model.pt"),
        "-k",
        "3",
        "-o",
        str(out),
        "--format",
        "jsonl",
    )
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["rank"] for r in recs] == [1, 2, 3] and {"query", "id", "path", "distance"} <= set(recs[0])


def test_same_seed_same_codes(ucmd_features, run_dir, tmp_path):
    again = tmp_path / "again"
    invoke("train", str(ucmd_features), "--bits", str(BITS), "--iterations", ITERATIONS, "-o", str(again))
    np.testing.assert_array_equal(CodeFile.load(again / "codes.h5").codes, CodeFile.load(run_dir / "codes.h5").codes)
    a = torch.load(again / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(run_dir / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = tmp_path / "other"
    invoke(
        "train", str(ucmd_features), "--bits", str(BITS), "--iterations", ITERATIONS, "--seed", "1", "-o", str(other)
    )
    assert not np.array_equal(CodeFile.load(other / "codes.h5").codes, CodeFile.load(run_dir / "codes.h5").codes)


def test_console_script_reports_errors_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "hashidx", "evaluate", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "train.json" in proc.stderr and "Traceback" not in proc.stderr


def test_a_reader_that_stops_early_is_not_an_error():
    # `hashidx datasets list | head -1`: the pipe closes before hashidx writes.
    proc = subprocess.Popen(
        [sys.executable, "-m", "hashidx", "datasets", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    proc.stdout.close()
    stderr = proc.stderr.read()
    assert proc.wait() == 141 and stderr == ""


def test_train_pool_codes_every_database_item(ucmd_features, tmp_path):
    out = tmp_path / "pool"
    invoke("train", str(ucmd_features), "--bits", "16", "--iterations", "3", "--train-pool", "0.25", "-o", str(out))
    record = json.loads((out / "train.json").read_text())
    assert record["pool_size"] == 20 and record["split"]["n_database"] == 80
    assert CodeFile.load(out / "codes.h5").codes.shape == (80, 2)  # all 80 coded, 20 images trained on


@pytest.mark.parametrize("method, encoding", [("symmetric", "network"), ("itq", "ITQ"), ("lsh", "random hyperplanes")])
def test_other_methods_write_the_same_run_folder(ucmd_features, run_dir, tmp_path, method, encoding):
    out = tmp_path / method
    invoke(
        "train",
        str(ucmd_features),
        "--method",
        method,
        "--bits",
        "16",
        "--iterations",
        "3",
        "--split",
        str(run_dir / "split.json"),
        "-o",
        str(out),
    )
    cf = CodeFile.load(out / "codes.h5")
    assert cf.method == method and cf.codes.shape == (80, 2) and cf.attrs["encoding"].startswith(encoding)
    assert cf.attrs["model_sha256"] == sha256_file(out / "model.pt")
    assert cf.paths == CodeFile.load(run_dir / "codes.h5").paths  # same split, same database order
    assert torch.load(out / "model.pt", weights_only=True)["config"]["method"] == method
    metrics = json.loads(invoke("evaluate", str(out)))
    assert metrics["method"] == method and 0.0 < metrics["mAP"] <= 1.0


def test_query_refuses_a_model_the_codes_did_not_come_from(ucmd_features, ucmd_slice, run_dir, tmp_path):
    index_path = tmp_path / "flat.index"
    invoke("build-index", str(run_dir / "codes.h5"), "-o", str(index_path))
    queries = tmp_path / "q.txt"
    queries.write_text(f"{ucmd_slice / load_split(run_dir / 'split.json').query[0]}\n", encoding="utf-8")
    for bits, message in (("16", "not the model that produced"), ("32", "32-bit model but")):
        other = tmp_path / f"other{bits}"
        invoke("train", str(ucmd_features), "--bits", bits, "--iterations", "2", "--seed", "7", "-o", str(other))
        out = tmp_path / f"r{bits}.tsv"
        result = CliRunner().invoke(
            main,
            ["--quiet", "query", str(index_path), str(queries), "--model", str(other / "model.pt"), "-o", str(out)],
        )
        assert result.exit_code == 1 and message in result.output and not out.exists()
    # The override is explicit.
    invoke(
        "query",
        str(index_path),
        str(queries),
        "--model",
        str(tmp_path / "other16" / "model.pt"),
        "--allow-model-mismatch",
        "-o",
        str(tmp_path / "forced.tsv"),
    )
    assert (tmp_path / "forced.tsv").is_file()


def test_query_with_a_feature_cache_or_a_codes_file(run_dir, ucmd_features, ucmd_slice, tmp_path):
    """The three query inputs agree: image paths, their cached features, and the codes of those features."""
    from hashidx.data.datasets import load_dataset
    from hashidx.methods.checkpoints import load_checkpoint
    from hashidx.methods.encoder import Encoder

    index_path = tmp_path / "flat.index"
    invoke("build-index", str(run_dir / "codes.h5"), "-o", str(index_path))
    split = load_split(run_dir / "split.json")
    ds = load_dataset(ucmd_slice)
    q_idx, _ = split.indices(ds)
    cache = FeatureCache.load(ucmd_features)
    FeatureCache(cache.features[q_idx], ds.subset(q_idx), cache.backbone, cache.image_size, cache.views).save(
        tmp_path / "qfeat.h5"
    )
    head, config = load_checkpoint(run_dir / "model.pt")
    codes = Encoder(head, config).encode_features(cache.features[q_idx])
    CodeFile(
        codes,
        np.arange(len(q_idx)),
        split.query,
        ds.labels[q_idx],
        BITS,
        "ahcl",
        {"model_sha256": sha256_file(run_dir / "model.pt")},
    ).save(tmp_path / "qcodes.h5")
    images = tmp_path / "q.txt"
    images.write_text("".join(f"{ucmd_slice / p}\n" for p in split.query), encoding="utf-8")

    invoke(
        "query",
        str(index_path),
        str(tmp_path / "qfeat.h5"),
        "--model",
        str(run_dir / "model.pt"),
        "-k",
        "5",
        "--rerank",  # codes queries have no network outputs to re-rank with: compare like with like
        "none",
        "-o",
        str(tmp_path / "feat.tsv"),
    )
    msg = invoke("query", str(index_path), str(tmp_path / "qcodes.h5"), "-k", "5", "-o", str(tmp_path / "codes.tsv"))
    assert "100 results for 20 queries" in msg
    invoke(
        "query",
        str(index_path),
        str(images),
        "--model",
        str(run_dir / "model.pt"),
        "-k",
        "5",
        "--rerank",
        "none",
        "-o",
        str(tmp_path / "img.tsv"),
    )
    feat, by_codes = (tmp_path / "feat.tsv").read_text(), (tmp_path / "codes.tsv").read_text()
    assert feat == by_codes
    # Image queries name the files as written; their ranked ids and distances match the cached features'.
    tail = lambda text: [line.split("\t")[1:] for line in text.splitlines()[1:]]  # noqa: E731
    assert tail((tmp_path / "img.tsv").read_text()) == tail(feat)

    # Image and feature queries need the model; codes made by another model are refused.
    result = CliRunner().invoke(main, ["--quiet", "query", str(index_path), str(images), "-o", str(tmp_path / "x.tsv")])
    assert result.exit_code == 1 and "pass --model" in result.output
    CodeFile(
        codes, np.arange(len(q_idx)), split.query, ds.labels[q_idx], BITS, "ahcl", {"model_sha256": "0" * 64}
    ).save(tmp_path / "other.h5")
    result = CliRunner().invoke(
        main, ["--quiet", "query", str(index_path), str(tmp_path / "other.h5"), "-o", str(tmp_path / "x.tsv")]
    )
    assert result.exit_code == 1 and "another model" in result.output and not (tmp_path / "x.tsv").exists()


def test_add_images_to_an_index(run_dir, ucmd_slice, tmp_path):
    """hashidx add: network-encoded codes after the database's ids, named in query results, repeatable."""
    index_path = tmp_path / "db.index"
    invoke("build-index", str(run_dir / "codes.h5"), "--type", "ivf", "-o", str(index_path))
    split = load_split(run_dir / "split.json")
    new = tmp_path / "new"
    for p in split.query[:3]:
        (new / p).parent.mkdir(parents=True, exist_ok=True)
        (new / p).symlink_to(ucmd_slice / p)
    msg = invoke("add", str(index_path), str(new), "--model", str(run_dir / "model.pt"))
    assert "83 codes (3 added by the network)" in msg
    added = CodeFile.load(tmp_path / "db.index.added.h5")
    assert added.ids.tolist() == [80, 81, 82] and added.method == "added"
    assert added.paths == tuple(sorted(split.query[:3]))
    # Resolved files beside the names as given: a gallery finds the pixels wherever the command ran.
    assert [Path(f) for f in added.files] == [(new / p).resolve() for p in added.paths]
    index, sidecar = idx.load(index_path)
    assert index.ntotal == 83 and sidecar["added"] == 3
    # An added image queried by itself comes back first, at distance 0, under its own path.
    queries = tmp_path / "q.txt"
    queries.write_text(f"{new / added.paths[0]}\n", encoding="utf-8")
    invoke(
        "query",
        str(index_path),
        str(queries),
        "--model",
        str(run_dir / "model.pt"),
        "--nprobe",
        str(sidecar["nlist"]),
        "-k",
        "100",
        "-o",
        str(tmp_path / "r.tsv"),
    )
    rows = [line.split("\t") for line in (tmp_path / "r.tsv").read_text().splitlines()[1:]]
    mine = next(r for r in rows if r[2] == "80")
    assert mine[3] == added.paths[0] and mine[4] == "0"
    # A second add appends: ids continue and the added file holds both batches.
    invoke("add", str(index_path), str(queries), "--model", str(run_dir / "model.pt"))
    again = CodeFile.load(tmp_path / "db.index.added.h5")
    assert again.ids.tolist() == [80, 81, 82, 83] and Path(again.files[3]) == (new / added.paths[0]).resolve()
    assert idx.load(index_path)[0].ntotal == 84


def test_multi_label_train_evaluate_and_query(ucmd_features, tmp_path):
    """--labels through the CLI: a multi-label AHCL run, its tie-aware multi-label metrics with and without
    re-ranking, and query results whose labels are label sets."""
    from ..data.test_multilabel import TABLE

    run = tmp_path / "run"
    invoke("train", str(ucmd_features), "--labels", str(TABLE), "--bits", "16", "--iterations", "3", "-o", str(run))
    plain = json.loads(invoke("evaluate", str(run), "--rerank", "none"))
    reranked = json.loads(invoke("evaluate", str(run)))
    assert plain["multilabel"] and plain["rerank"] == "none" and reranked["rerank"] == 400
    for m in (plain, reranked):
        assert 0 < m["mAP"] <= 1 and 0 < m["NDCG@100"] <= 1 and m["ACG@100"] > 0 and m["WAP@10"] > 0
    invoke("build-index", str(run / "codes.h5"), "-o", str(tmp_path / "db.faiss"))
    invoke(
        "query",
        str(tmp_path / "db.faiss"),
        str(ucmd_features),
        "--model",
        str(run / "model.pt"),
        "-k",
        "3",
        "--format",
        "jsonl",
        "-o",
        str(tmp_path / "r.jsonl"),
    )
    rows = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert len(rows) == 3 * 100 and all(isinstance(r["score"], float) for r in rows)
