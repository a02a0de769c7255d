"""An archive with no labels, searchable at once: scenes → features → ITQ → index → query, and the supervised
methods' refusal."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from hashidx.cli import main

pytestmark = pytest.mark.realdata


def run(*args):
    return CliRunner().invoke(main, ["--quiet", *map(str, args)])


def test_scenes_with_no_labels_get_codes_an_index_and_answers(scenes, tmp_path):
    (tmp_path / "archive.txt").write_text(f"{scenes / 'naip_2009.tif'}\n{scenes / 'naip_2014.tif'}\n")
    result = run("features", tmp_path / "archive.txt", "--tile", "128", "--bands", "1,2,3", "--views", "1",
                 "-o", tmp_path / "f.h5")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "96 images, no classes" in result.output and "96 with footprints" in result.output

    refused = run("train", tmp_path / "f.h5", "--method", "ahcl", "-o", tmp_path / "ahcl")
    assert refused.exit_code == 1 and "have no labels" in refused.output and "--method itq" in refused.output
    assert refused.output.count("\n") == 1 and not (tmp_path / "ahcl").exists()

    assert run("train", tmp_path / "f.h5", "--method", "itq", "--bits", "32", "-o", tmp_path / "run").exit_code == 0
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert split["query"] == [] and len(split["database"]) == 96
    assert run("build-index", tmp_path / "run" / "codes.h5", "-o", tmp_path / "db.faiss").exit_code == 0

    chip = f"{scenes / 'naip_2019.tif'}#384,256,128,128"
    (tmp_path / "q.txt").write_text(chip + "\n")
    result = run("query", tmp_path / "db.faiss", tmp_path / "q.txt", "--model", tmp_path / "run" / "model.pt",
                 "--bands", "1,2,3", "-k", "3", "--format", "geojson", "-o", tmp_path / "r.geojson")  # fmt: skip
    assert result.exit_code == 0, result.output
    features = json.loads((tmp_path / "r.geojson").read_text())["features"]
    assert len(features) == 3 and all(f["geometry"]["type"] == "Polygon" for f in features)
    # the same ground in 2009 or 2014 is among the three nearest of a 2019 chip
    assert any(f["properties"]["path"].endswith("#384,256,128,128") for f in features), features
