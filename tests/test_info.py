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
    assert codes["facts"] | {"items": 80, "bits": 16, "method": "ahcl", "classes": 5} == codes["facts"]
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
