"""--help: each command's own options first, then the raster and Ray options once each, under their headings."""

from __future__ import annotations

from click.testing import CliRunner

from hashidx.cli import main


def test_shared_options_are_grouped_under_headings():
    text = CliRunner().invoke(main, ["features", "--help"], terminal_width=100).output
    options, rasters, engine = text.index("Options:"), text.index("Rasters ("), text.index("Engine (")
    assert options < rasters < engine
    assert text.count("\n  --ray-address auto") == 1 and text.index("\n  --ray-address auto") > engine
    assert text.count("\n  --tile SIZE") == 1 and rasters < text.index("\n  --tile SIZE") < engine


def test_every_build_index_type_is_explained():
    text = CliRunner().invoke(main, ["build-index", "--help"]).output
    assert all(word in text for word in ("flat:", "ivf:", "hnsw:"))
