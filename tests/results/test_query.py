"""Batch queries: codes, features and image lists give the same ranked results; a codes query never imports torch."""

import json
import subprocess
import sys

import numpy as np
import pytest

from hashidx.codes.codefile import CodeFile
from hashidx.index.indexes import build_file
from hashidx.methods.runs import train_run
from hashidx.results.query import run_query, write_results


@pytest.fixture(scope="module")
def indexed(ucmd_features, tmp_path_factory):
    out = tmp_path_factory.mktemp("query")
    train_run(ucmd_features, out / "run", bits=16, seed=0)
    build_file(out / "run" / "codes.h5", out / "db.faiss")
    return out


def test_codes_query_ranks_by_distance_then_id(indexed):
    res = run_query(indexed / "db.faiss", indexed / "run" / "codes.h5", k=10)
    db = CodeFile.load(indexed / "run" / "codes.h5")
    assert res.queries == list(db.paths) and res.ids.shape == (len(db.paths), 10)
    for d, i in zip(res.distances.tolist(), res.ids.tolist()):
        assert list(zip(d, i)) == sorted(zip(d, i))
    assert (res.distances[:, 0] == 0).all()
    assert res.paths[int(res.ids[0, 0])] in db.paths


def test_feature_and_image_queries_agree(indexed, ucmd_features, ucmd_slice, tmp_path):
    model = indexed / "run" / "model.pt"
    by_features = run_query(indexed / "db.faiss", ucmd_features, model, k=5)
    names = sorted(p.name for p in (ucmd_slice / "forest").iterdir())[:3]
    (tmp_path / "q.txt").write_text("".join(f"{ucmd_slice / 'forest' / n}\n" for n in names))
    by_images = run_query(indexed / "db.faiss", tmp_path / "q.txt", model, k=5)
    rows = [by_features.queries.index(f"forest/{n}") for n in names]
    assert (by_images.distances == by_features.distances[rows]).mean() > 0.9
    assert by_images.query_labels == ["forest"] * 3  # the class is known from the folder name


def test_results_files_tsv_and_jsonl(indexed, tmp_path):
    res = run_query(indexed / "db.faiss", indexed / "run" / "codes.h5", k=3)
    write_results(res, tmp_path / "r.tsv")
    write_results(res, tmp_path / "r.jsonl", "jsonl")
    tsv = (tmp_path / "r.tsv").read_text().splitlines()
    jsonl = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert tsv[0] == "query\trank\tid\tpath\tdistance" and len(tsv) == 1 + len(jsonl) == 1 + 3 * len(res.queries)
    first = tsv[1].split("\t")
    assert first == [
        jsonl[0]["query"],
        str(jsonl[0]["rank"]),
        str(jsonl[0]["id"]),
        jsonl[0]["path"],
        str(jsonl[0]["distance"]),
    ]


def test_a_codes_query_never_imports_torch(indexed, tmp_path):
    script = (
        f"import sys\nfrom hashidx.results.query import run_query\n"
        f"run_query({str(indexed / 'db.faiss')!r}, {str(indexed / 'run' / 'codes.h5')!r}, k=2)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "hashidx",
            "--quiet",
            "query",
            str(indexed / "db.faiss"),
            str(indexed / "run" / "codes.h5"),
            "-k",
            "2",
            "-o",
            str(tmp_path / "r.tsv"),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert np.loadtxt(tmp_path / "r.tsv", dtype=str, delimiter="\t", skiprows=1).shape[1] == 5
