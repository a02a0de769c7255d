"""Periods of acquisition time: what --since/--until accept, and the times rasters carry in their metadata."""

from __future__ import annotations

import numpy as np
import pytest

from hashidx.data.footprints import footprints, iso_time
from hashidx.errors import HashidxError
from hashidx.results.period import Period


def test_years_months_days_and_times_bound_a_period():
    year = Period.parse("2014", "2014")
    assert year is not None and year.contains("2014-01-01T00:00:00Z") and year.contains("2014-12-31T23:59:59Z")
    assert not year.contains("2015-01-01T00:00:00Z") and not year.contains("2013-12-31T23:59:59Z")
    feb = Period.parse(None, "2016-02")
    assert feb is not None and feb.contains("2016-02-29T12:00:00Z") and not feb.contains("2016-03-01T00:00:00Z")
    day = Period.parse("2019-06-01", "2019-06-01")
    assert day is not None and day.contains("2019-06-01T23:00:00Z") and not day.contains("")  # unknown: outside
    assert Period.parse(None, None) is None
    with pytest.raises(HashidxError, match="--since last week: give a year"):
        Period.parse("last week", None)
    with pytest.raises(HashidxError, match="swap them"):
        Period.parse("2019", "2014")


def test_times_are_utc_iso_from_tiff_tags_and_offsets():
    assert iso_time("2014:06:01 10:30:00") == "2014-06-01T10:30:00Z"  # TIFF's own layout, no zone: UTC
    assert iso_time("2014-06-01T12:30:00+02:00") == "2014-06-01T10:30:00Z"
    assert iso_time("yesterday") == ""


def test_a_rasters_acquisition_time_comes_from_its_metadata(scenes, tmp_path):
    rasterio = pytest.importorskip("rasterio")
    dated = tmp_path / "dated.tif"
    with rasterio.open(scenes / "landsat_rgb.tif") as src:
        profile, pixels = src.profile, src.read()
    with rasterio.open(dated, "w", **profile) as dst:
        dst.write(pixels)
        dst.update_tags(TIFFTAG_DATETIME="2021:07:14 09:05:00")
    fp = footprints([dated, scenes / "landsat_rgb.tif"])
    assert fp is not None and fp.when == ("2021-07-14T09:05:00Z", "")
    assert np.isfinite(fp.lonlat).all()
