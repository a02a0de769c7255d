"""Scenes cut into chips on the shared real rasters: no-data and alpha borders skipped, footprints on the map."""

from pathlib import Path

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from rasterio.windows import Window

from hashidx.data.chips import Tiling, offsets, scene_windows, tile_items
from hashidx.data.footprints import footprints
from hashidx.data.images import load_image
from hashidx.errors import HashidxError

SCENES = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "scenes"

pytestmark = pytest.mark.usefixtures("scenes")


def valid_share(path: Path, w) -> float:
    """Independently of hashidx: the share of a window's pixels GDAL's full-resolution mask calls valid."""
    with rasterio.open(path) as src:
        return float((src.dataset_mask(window=Window(w.col, w.row, w.width, w.height)) > 0).mean())


@pytest.mark.parametrize(("scene", "size"), [("sentinel2_tci.tif", 128), ("drone_orthophoto.tif", 128)])
def test_border_chips_are_skipped_and_counted(scene, size):
    """The no-data wedge of the Sentinel-2 tile (nodata 0) and the alpha border of the orthophoto."""
    path = SCENES / scene
    kept, skipped = scene_windows(path, Tiling(size))
    with rasterio.open(path) as src:
        grid = len(offsets(src.height, size, size)) * len(offsets(src.width, size, size))
    assert skipped > 0 and len(kept) + skipped == grid
    shares = [valid_share(path, w) for w in kept]
    assert min(shares) >= 0.45  # the decimated mask may differ from the full one by a few border pixels
    kept_at = {(w.col, w.row) for w in kept}
    dropped = [
        (c, r) for r in offsets(src.height, size, size) for c in offsets(src.width, size, size) if (c, r) not in kept_at
    ]
    for c, r in dropped:
        assert valid_share(path, type(kept[0])(c, r, size, size)) < 0.55
    # A skipped chip is mostly no-data: its pixels read as 0 where the mask says so.
    c, r = dropped[0]
    assert load_image(Path(f"{path}#{c},{r},{size},{size}"), 32).mean() < 0.5 * load_image(path, 32).mean() + 0.1


def test_chip_larger_than_the_scene_and_all_nodata_scene(tmp_path):
    with pytest.raises(HashidxError, match=r"landsat_rgb.tif: chip size 1000 px is larger than the 791x718 px scene"):
        tile_items([("l", SCENES / "landsat_rgb.tif")], Tiling(1000))
    empty = tmp_path / "empty.tif"
    with rasterio.open(SCENES / "landsat_rgb.tif") as src:
        profile = src.profile
    with rasterio.open(empty, "w", **profile) as dst:
        dst.write(np.zeros((3, profile["height"], profile["width"]), np.uint8))
    with pytest.raises(HashidxError, match=r"empty.tif: no 256 px chip has 50% valid pixels \(the scene is no-data\)"):
        tile_items([("e", empty)], Tiling(256))
    with pytest.raises(HashidxError, match="--tile 0"):
        Tiling.parse("0")


def test_stride_and_edge_flush_cover_the_scene():
    assert offsets(10, 4, 4) == [0, 4, 6] and offsets(8, 4, 2) == [0, 2, 4] and offsets(4, 4, 4) == [0]
    tiled = tile_items([("naip", SCENES / "naip_2009.tif")], Tiling.parse("256:128"))
    assert len(tiled.items) == len(offsets(724, 256, 128)) * len(offsets(934, 256, 128)) and tiled.n_skipped == 0
    assert tiled.items[1][0] == "naip#128,0,256,256"


def test_footprints_match_pyproj_on_the_window_corners():
    """Chips from two scenes in two UTM zones: each keeps its own CRS; GeoJSON rings are EPSG:4326."""
    items = tile_items([("s2", SCENES / "sentinel2_tci.tif"), ("naip", SCENES / "naip_2019.tif")], Tiling(256)).items
    fp = footprints([p for _, p in items])
    assert fp is not None and set(fp.crs) == {"EPSG:32634", "EPSG:26914"}
    for i, ((_, path), crs, (lon, lat)) in enumerate(zip(items, fp.crs, fp.lonlat)):
        scene, window = str(path).split("#")
        col, row, w, h = map(int, window.split(","))
        with rasterio.open(scene) as src:
            corners = [src.transform @ xy for xy in ((col, row + h), (col + w, row + h), (col + w, row), (col, row))]
        to_wgs84 = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
        want = [to_wgs84.transform(x, y) for x, y in corners]
        ring = fp.ring(i)
        assert ring is not None and ring[0] == ring[-1] and len(ring) == 5
        np.testing.assert_allclose(ring[:4], want, atol=1e-7)
        np.testing.assert_allclose((lon, lat), np.mean(want, axis=0), atol=1e-4)


def test_raster_without_crs_has_no_footprint_and_says_so_once(tmp_path):
    bare = tmp_path / "bare.tif"
    with rasterio.open(SCENES / "landsat_rgb.tif") as src:
        profile, data = src.profile, src.read()
    profile.pop("crs")
    with rasterio.open(bare, "w", **{**profile, "crs": None}) as dst:
        dst.write(data)
    heard: list[str] = []
    assert footprints([Path(f"{bare}#0,0,256,256"), Path(f"{bare}#256,0,256,256")], heard.append) is None
    assert len(heard) == 1 and "bare.tif: raster has no CRS" in heard[0]
