"""Rasters through GDAL on the shared real files: band choice, the recorded dataset-wide scaling, bad rasters."""

from pathlib import Path

import numpy as np
import pytest
import rasterio

from hashidx.data.images import load_image
from hashidx.data.rasters import RGB, Radiometry, fit_radiometry, read_raster
from hashidx.errors import HashidxError

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
SCENES = SHARED / "scenes"
EUROSAT = SHARED / "EuroSAT_MS"

pytestmark = pytest.mark.usefixtures("scenes", "eurosat")


@pytest.fixture(scope="module")
def eurosat_files():
    return sorted(EUROSAT.glob("*/*.tif"))


def test_naip_needs_bands_and_reads_the_chosen_ones_at_8_bit():
    naip = SCENES / "naip_2009.tif"
    with pytest.raises(HashidxError, match=r"naip_2009.tif: 4-band raster \(gray, undefined x3\); choose .*--bands"):
        load_image(naip, 64)
    radiometry, _ = fit_radiometry([naip], "4,1,2,3")
    assert radiometry.bands == (4, 1, 2, 3) and radiometry.how == "8-bit /255"
    assert radiometry.scale == ((0.0, 255.0),) * 4 and radiometry.channels == 4
    chip = Path(f"{naip}#128,64,224,224")  # a window at its own size: no resampling, values as stored
    got = read_raster(chip, 224, radiometry)
    with rasterio.open(naip) as src:
        want = src.read([4, 1, 2, 3], window=rasterio.windows.Window(128, 64, 224, 224)).transpose(1, 2, 0)
    np.testing.assert_allclose(got, want / 255.0, atol=1e-6)


def test_eurosat_scaling_is_the_percentiles_of_the_sampled_images(eurosat_files):
    files = eurosat_files[::10]  # 20 files: fewer than the sample, so every one of them counts
    radiometry, _ = fit_radiometry(files, "4,3,2")
    with_all = np.concatenate([rasterio.open(f).read([4, 3, 2]).reshape(3, -1) for f in files], axis=1).astype(
        np.float64
    )
    lo, hi = np.percentile(with_all, (2, 98), axis=1)
    np.testing.assert_allclose(np.asarray(radiometry.scale), np.stack([lo, hi], axis=1))
    assert radiometry.how.startswith("percentiles 2-98 per band over 20 images (uint16)")
    # One fixed scaling: a pixel value reads the same in every image, whatever that image's own range.
    pixels = load_image(files[0], 64, radiometry)
    with rasterio.open(files[0]) as src:
        raw = src.read([4, 3, 2]).transpose(1, 2, 0).astype(np.float64)
    np.testing.assert_allclose(pixels, np.clip((raw - lo) / (hi - lo), 0, 1), atol=1e-5)


def test_all_13_bands_and_band_names(eurosat_files, tmp_path):
    radiometry, _ = fit_radiometry(eurosat_files[:5], "4,3,2,1,5-13")
    assert radiometry.bands == (4, 3, 2, 1, *range(5, 14)) and len(radiometry.scale) == 13
    assert load_image(eurosat_files[0], 32, radiometry).shape == (32, 32, 13)
    named = tmp_path / "named.tif"
    with rasterio.open(eurosat_files[0]) as src:
        profile, data = src.profile, src.read()
    with rasterio.open(named, "w", **profile) as dst:
        dst.write(data)
        for i, name in enumerate(["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", *["B09", "B10"]]):
            dst.set_band_description(i + 1, name)
    assert fit_radiometry([named], "B04,B03,B02", "0:3000")[0].bands == (4, 3, 2)
    with pytest.raises(HashidxError, match=r"named.tif: band 14 out of range, the file has 13 band\(s\)"):
        fit_radiometry([named], "14,3,2")
    with pytest.raises(HashidxError, match=r"'B99' is not a band of .*named.tif"):
        fit_radiometry([named], "B99")


def test_a_multispectral_dataset_defaults_to_the_measured_false_colour(eurosat_files, tmp_path):
    """Without --bands, 13 Sentinel-2 bands are read as near-infrared, red, green (8,4,3), recorded and said once;
    a file whose band names say which bands those are gets them by name; a 4-band file of unnamed bands (NAIP) is
    still refused where it is read."""
    radiometry, notes = fit_radiometry(eurosat_files[:5])
    assert radiometry.bands == (8, 4, 3) and len(radiometry.scale) == 3 and radiometry.how.startswith("percentiles")
    assert (
        len(notes) == 1 and "13-band raster read as false colour: near-infrared, red, green = bands 8,4,3" in notes[0]
    )
    assert "--bands 4,3,2" in notes[0]
    assert load_image(eurosat_files[0], 32, radiometry).shape == (32, 32, 3)
    named = tmp_path / "named.tif"
    with rasterio.open(eurosat_files[0]) as src:
        profile, data = src.profile, src.read([2, 3, 4, 8, 12])
    with rasterio.open(named, "w", **{**profile, "count": 5}) as dst:
        dst.write(data)
        for i, name in enumerate(["blue", "green", "red", "nir", "swir16"]):
            dst.set_band_description(i + 1, name)
    radiometry, notes = fit_radiometry([named])
    assert radiometry.bands == (4, 3, 2) and "(by the bands' names)" in notes[0]
    assert fit_radiometry([named], "3,2,1")[0].bands == (3, 2, 1)  # --bands still chooses
    with pytest.raises(HashidxError, match=r"naip_2009.tif: 4-band raster \(gray, undefined x3\); choose"):
        load_image(SCENES / "naip_2009.tif", 64, fit_radiometry([SCENES / "naip_2009.tif"])[0])


def test_explicit_scale_and_recorded_attrs_round_trip(eurosat_files):
    radiometry, _ = fit_radiometry(eurosat_files[:3], "4,3,2", "0:3000")
    assert radiometry.scale == ((0.0, 3000.0),) * 3 and radiometry.how == "given (--scale)"
    assert Radiometry.from_attrs(radiometry.attrs()) == radiometry
    assert Radiometry.from_attrs({}) == RGB  # files from before bands were recorded
    with pytest.raises(HashidxError, match="--scale 5:1"):
        fit_radiometry(eurosat_files[:3], "4,3,2", "5:1")


def test_rgb_jpeg_datasets_keep_todays_decoding(ucmd_slice):
    paths = sorted(ucmd_slice.glob("*/*.jpg"))[:4]
    assert fit_radiometry(paths) == (RGB, [])


def test_alpha_and_single_band_defaults(tmp_path):
    drone, _ = fit_radiometry([SCENES / "drone_orthophoto.tif"])
    assert drone == RGB  # R, G, B of an RGBA file; alpha is its mask
    grey = tmp_path / "grey.tif"
    with rasterio.open(SCENES / "landsat_rgb.tif") as src:
        profile, band = src.profile, src.read(2)
    profile.update(count=1)
    with rasterio.open(grey, "w", **profile) as dst:
        dst.write(band, 1)
    radiometry, notes = fit_radiometry([grey])
    assert radiometry == RGB and "single-band raster, read as grey (band 1 as R, G and B)" in notes[0]
    a = load_image(grey, 32)
    assert np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 1], a[..., 2])


def test_corrupt_geotiff_is_one_line_naming_the_file(tmp_path):
    bad = tmp_path / "cut.tif"
    bad.write_bytes((SCENES / "naip_2014.tif").read_bytes()[:20_000])
    with pytest.raises(HashidxError, match=r"cut.tif: cannot read raster") as err:
        load_image(Path(f"{bad}#0,0,256,256"), 64, Radiometry((1, 2, 3), ((0, 255),) * 3))
    assert "\n" not in str(err.value)
