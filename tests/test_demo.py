"""`hashidx demo` with no arguments: the generated set through the whole pipeline."""

import json

from click.testing import CliRunner

from hashidx.cli import main
from hashidx.demo import DEMO_CLASSES


def test_demo_runs_end_to_end(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["--quiet", "demo"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{") :])
    assert summary["n_query"] + summary["n_database"] == 20 * len(DEMO_CLASSES)
    assert summary["mAP"] > 0.7  # separable textures: far above chance (1/6)
    out = tmp_path / "hashidx-demo"
    for name in (
        "run/model.pt",
        "run/codes.h5",
        "run/train.json",
        "index.faiss",
        "index.faiss.json",
        "results.tsv",
        "gallery.html",
    ):
        assert (out / name).is_file(), name
