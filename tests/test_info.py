"""`hashidx info`: every file a run writes is named, counted, and checked against its companions."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from hashidx.cli import main


def _invoke(*args: str):
    return CliRunner().invoke(main, ["--quiet", *args])


@pytest.fixture(scope="module")
def run(ucmd_features, tmp_path_factory):
    out = tmp_path_factory.mktemp("info")
    for args in (
        ["train", str(ucmd_features), "--bits", "16", "--iterations", "2", "-o", str(out / "run")],
        ["train", str(ucmd_features), "--bits", "16", "--iterations", "2", "--seed", "1", "-o", str(out / "other")],
        ["build-index", str(out / "run" / "codes.h5"), "--type", "ivf", "-o", str(out / "db.ivf")],
    ):
        assert _invoke(*args).exit_code == 0
    return out


def _describe(path) -> dict:
    result = _invoke("info", "--json", str(path))
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_each_kind_of_file_is_recognised_with_its_facts(run, ucmd_features):
    features = _describe(ucmd_features)
    assert (features["kind"], features["facts"]["images"], features["facts"]["dim"]) == ("hashidx-features", 100, 1712)
    codes = _describe(run / "run" / "codes.h5")
    assert (
        codes["facts"]
        | {"items": 80, "bits": 16, "method": "ahcl", "classes": 5, "content_vectors": "32 dims, 64 bytes an item"}
        == codes["facts"]
    )
    model = _describe(run / "run" / "model.pt")
    assert (model["kind"], model["facts"]["bits"], model["facts"]["backbone"]) == (
        "hashidx-checkpoint",
        16,
        "efficientnet-lite0",
    )
    index = _describe(run / "db.ivf")
    assert index["facts"] | {"index_type": "ivf", "count": 80, "bits": 16} == index["facts"]
    assert _describe(run / "db.ivf.json")["facts"] == index["facts"]  # the sidecar names the same index
    assert _describe(run / "run" / "split.json")["facts"]["database"] == 80
    assert _describe(run / "run" / "train.json")["facts"]["n_codes"] == 80
    for d in (codes, model, index):
        assert d["companions"] and all(c["status"] == "matches" for c in d["companions"]), d


def test_companions_that_no_longer_belong_are_flagged(run, tmp_path):
    folder = tmp_path / "mixed"
    shutil.copytree(run / "run", folder)
    shutil.copy(run / "other" / "model.pt", folder / "model.pt")  # a retrain replaced the model only
    codes = _describe(folder / "codes.h5")
    assert {c["file"].rsplit("/", 1)[-1]: c["status"] for c in codes["companions"]}["model.pt"] == "differs"
    assert _invoke("info", "--check", str(folder / "codes.h5")).exit_code == 2
    assert _invoke("info", "--check", str(run / "run" / "codes.h5")).exit_code == 0
    # An index whose codes file was rewritten since it was built.
    shutil.copy(run / "db.ivf", tmp_path / "db.ivf")
    sidecar = json.loads((run / "db.ivf.json").read_text())
    sidecar["codes_file"] = str(folder / "codes.h5")
    sidecar["codes_sha256"] = "0" * 64
    (tmp_path / "db.ivf.json").write_text(json.dumps(sidecar))
    text = _invoke("info", str(tmp_path / "db.ivf")).output
    assert "[differs]" in text and "codes file" in text


def test_foreign_and_missing_files_get_one_line_errors(tmp_path):
    junk = tmp_path / "notes.txt"
    junk.write_text("hello")
    for path in (junk, tmp_path / "absent.h5"):
        result = _invoke("info", str(path))
        assert result.exit_code == 1 and result.output.count("\n") == 1 and str(path) in result.output


def test_results_galleries_run_folders_and_added_codes_are_named_truly(run, ucmd_slice, tmp_path):
    """What query, add and train write: each named for what it is, and the model an add was given is the one
    checked (not a model.pt beside the added codes)."""
    model = run / "run" / "model.pt"
    index = tmp_path / "db.faiss"
    assert _invoke("build-index", str(run / "run" / "codes.h5"), "-o", str(index)).exit_code == 0
    split = run / "run" / "split.json"
    for fmt in ("tsv", "jsonl", "geojson", "parquet"):
        args = ["query", str(index), str(split), "--model", str(model), "-k", "3", "--format", fmt]
        extra = ["--html", str(tmp_path / "gallery.html")] if fmt == "tsv" else []
        assert _invoke(*args, *extra, "-o", str(tmp_path / f"r.{fmt}")).exit_code == 0
        facts = _describe(tmp_path / f"r.{fmt}")
        assert facts["kind"] == "hashidx-results" and facts["facts"]["format"] == fmt
        if fmt != "geojson":  # the slice's photos have no footprint: a GeoJSON of them holds no feature
            assert facts["facts"]["results"] == 3 * 20 and facts["facts"]["queries"] == 20
    assert _describe(tmp_path / "gallery.html")["kind"] == "hashidx-gallery"

    folder = _describe(run / "run")
    assert folder["kind"] == "hashidx-run" and folder["facts"]["bits"] == 16
    assert {c["status"] for c in folder["companions"]} == {"present", "matches"}

    beach = sorted((ucmd_slice / "beach").iterdir())[:2]
    assert _invoke("add", str(index), *map(str, beach[:1]), "--model", str(model)).exit_code == 0
    added = _describe(f"{index}.added.h5")
    assert [(c["file"], c["status"]) for c in added["companions"]] == [(str(model.resolve()), "matches")]


def test_a_folder_that_is_not_a_run_is_one_line(tmp_path):
    result = _invoke("info", str(tmp_path))
    assert result.exit_code == 1 and "not a run folder (no train.json or learn.json)" in result.output
