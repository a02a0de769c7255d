"""A 20,000 x 20,000 px GeoTIFF made from a real scene is never decoded whole: read decimated, or cut into chips,
in bounded memory (measured in a fresh process: peak RSS)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from large_raster import SCENE, make_large_raster, measure

DECODED_WHOLE_MB = 20_000 * 20_000 * 3 / 2**20  # 1,144 MB

pytestmark = pytest.mark.usefixtures("scenes")


@pytest.fixture(scope="module")
def large(tmp_path_factory):
    return make_large_raster(tmp_path_factory.mktemp("large") / "large.tif", compress="jpeg")


@pytest.mark.parametrize("mode", ["single", "4096"])
def test_large_raster_reads_in_bounded_memory(large, mode):
    got = measure(large, mode, SCENE.with_name("sentinel2_tci.tif"))
    assert got["chips"] == (1 if mode == "single" else 25)
    # What the read added on top of the warmed-up process: GDAL's capped block cache and one chip, not the scene.
    assert got["peak_rss_mb"] - got["rss_before_mb"] < 0.3 * DECODED_WHOLE_MB, got
