"""Shared fixtures: a small real slice of UC Merced, and its features extracted once per session."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# One ONNX graph cache for the whole session, CLI subprocesses included (they inherit the environment),
# never the user's ~/.cache.
_CACHE = tempfile.mkdtemp(prefix="hashidx-test-cache-")
os.environ["HASHIDX_CACHE_DIR"] = _CACHE


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_CACHE, ignore_errors=True)


UCMD = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "UCMerced_LandUse" / "Images"
SLICE_CLASSES = ("agricultural", "airplane", "beach", "forest", "harbor")


def require_ucmd() -> Path:
    """The real dataset; in CI its absence is a failure, elsewhere a skip."""
    if not UCMD.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{UCMD} is missing: CI must run the real-data tests with ../shared beside the checkout")
        pytest.skip(f"real data not found at {UCMD}")
    return UCMD


SHARED = UCMD.parents[1]


def require_shared(folder: Path) -> Path:
    """A folder of ../shared/datasets; in CI its absence is a failure, elsewhere a skip."""
    if not folder.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{folder} is missing: CI must run the real-data tests with ../shared beside the checkout")
        pytest.skip(f"real data not found at {folder}")
    return folder


@pytest.fixture(scope="session")
def scenes() -> Path:
    """The shared whole scenes: drone orthophoto, NAIP in three years, Sentinel-2 TCI, Landsat."""
    return require_shared(SHARED / "scenes")


@pytest.fixture(scope="session")
def eurosat() -> Path:
    """The 200 shared EuroSAT-MS Sentinel-2 chips (13 bands)."""
    return require_shared(SHARED / "EuroSAT_MS")


@pytest.fixture(scope="session")
def ucmd_slice(tmp_path_factory) -> Path:
    """5 classes x 20 real UC Merced images as a class-folder dataset (symlinks to the originals)."""
    root = require_ucmd()
    out = tmp_path_factory.mktemp("ucmd5")
    for cls in SLICE_CLASSES:
        (out / cls).mkdir()
        for img in sorted((root / cls).iterdir())[:20]:
            (out / cls / img.name).symlink_to(img)
    return out


@pytest.fixture(scope="session")
def ucmd_features(ucmd_slice, tmp_path_factory) -> Path:
    """The slice's EfficientNet-Lite0 features (real backbone, real images), cached for the session."""
    from hashidx.data.datasets import load_dataset
    from hashidx.features.extract import compute_features

    path = tmp_path_factory.mktemp("features") / "ucmd5.h5"
    compute_features(load_dataset(ucmd_slice), "efficientnet-lite0").save(path)
    return path


@pytest.fixture(scope="session")
def itq_index(ucmd_features, tmp_path_factory) -> Path:
    """The index of an ITQ run at 32 bits on the slice's features (RUN/ beside it): an archive nobody labelled."""
    from click.testing import CliRunner

    from hashidx.cli import main

    out = tmp_path_factory.mktemp("itq")
    for args in (
        ["train", ucmd_features, "--method", "itq", "--bits", "32", "-o", out / "run"],
        ["build-index", out / "run" / "codes.h5", "-o", out / "base.faiss"],
    ):
        result = CliRunner().invoke(main, ["--quiet", *map(str, args)])
        assert result.exit_code == 0, result.output
    return out / "base.faiss"


NAIP_YEARS = (2009, 2014, 2019)


def make_stac_catalog(out: Path, scenes: Path, broken: bool = False) -> Path:
    import pystac
    import rasterio

    """A self-contained STAC catalog: a 'naip' collection with one dated item per year, its GeoTIFF asset named
    by relative href, bands by common name; `broken` adds an item whose asset is not there."""
    from pystac.extensions.eo import Band, EOExtension
    from rasterio.warp import transform_bounds

    catalog = pystac.Catalog("archive", "NAIP over three years")
    extent = pystac.Extent(pystac.SpatialExtent([[-180, -90, 180, 90]]), pystac.TemporalExtent([[None, None]]))
    collection = pystac.Collection("naip", "NAIP", extent)
    catalog.add_child(collection)
    for year in (*NAIP_YEARS, *((1999,) if broken else ())):
        tif = out / "data" / f"naip_{year}.tif"
        tif.parent.mkdir(parents=True, exist_ok=True)
        source = scenes / f"naip_{year if year in NAIP_YEARS else NAIP_YEARS[0]}.tif"
        with rasterio.open(source) as src:
            w, s, e, n = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
        if year != 1999:
            shutil.copy(source, tif)
        ring = [[w, s], [e, s], [e, n], [w, n], [w, s]]
        when = dt.datetime(year, 6, 1, tzinfo=dt.timezone.utc)
        props = {"landcover": "cropland" if year != 2014 else "mixed"}
        item = pystac.Item(f"naip-{year}", {"type": "Polygon", "coordinates": [ring]}, [w, s, e, n], when, props)
        asset = pystac.Asset(str(tif), media_type=pystac.MediaType.COG, roles=["data"])
        item.add_asset("image", asset)
        EOExtension.ext(asset, add_if_missing=True).bands = [
            Band.create(name=name, common_name=common)
            for name, common in (("R", "red"), ("G", "green"), ("B", "blue"), ("N", "nir"))
        ]
        item.add_asset("thumbnail", pystac.Asset("thumb.png", media_type=pystac.MediaType.PNG, roles=["thumbnail"]))
        collection.add_item(item)
    catalog.normalize_hrefs(str(out))
    catalog.make_all_asset_hrefs_relative()
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    return out / "catalog.json"


@pytest.fixture(scope="session")
def stac_archive(scenes, tmp_path_factory) -> Path:
    """A STAC catalog of the NAIP years (catalog/), its scenes cut into 256 px chips, coded by ITQ (an archive
    nobody labelled: run/) and indexed (index.faiss)."""
    from click.testing import CliRunner

    from hashidx.cli import main

    root = tmp_path_factory.mktemp("stac")
    catalog = make_stac_catalog(root / "catalog", scenes)
    for args in (
        ["features", catalog, "--bands", "red,green,blue", "--tile", "256", "--views", "1", "-o", root / "f.h5"],
        ["train", root / "f.h5", "--method", "itq", "--bits", "32", "-o", root / "run"],
        ["build-index", root / "run" / "codes.h5", "-o", root / "index.faiss"],
    ):
        result = CliRunner().invoke(main, ["--quiet", *map(str, args)])
        assert result.exit_code == 0, result.output
    return root
