"""Archives in, maps out: a STAC catalog of the shared NAIP scenes (dated items, relative hrefs) through features,
train, build-index, query with a period, add and export; 16-bit and float rasters joining an index of an 8-bit
UC Merced model with a recorded scaling; GeoParquet read back by geopandas and GDAL."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from hashidx.cli import main

from ..conftest import NAIP_YEARS as YEARS
from ..conftest import make_stac_catalog

rasterio = pytest.importorskip("rasterio")
pystac = pytest.importorskip("pystac")


def cli(*args) -> str:
    result = CliRunner().invoke(main, ["--quiet", *map(str, args)])
    assert result.exit_code == 0, result.output
    return result.output


def failing(*args) -> str:
    result = CliRunner().invoke(main, ["--quiet", *map(str, args)])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.fixture(scope="module")
def stac_index(stac_archive):
    return stac_archive, stac_archive / "catalog" / "catalog.json"


def tsv(path: Path) -> list[dict[str, str]]:
    lines = path.read_text().splitlines()
    return [dict(zip(lines[0].split("\t"), line.split("\t"))) for line in lines[1:]]


def test_a_stac_catalog_indexes_queries_by_period_and_exports(stac_index, tmp_path):
    root, catalog = stac_index
    with h5py.File(root / "run" / "codes.h5") as f:
        items = {x.decode() for x in f["footprints/item"][:]}
        times = {x.decode() for x in f["footprints/datetime"][:]}
        collections = {x.decode() for x in f["footprints/collection"][:]}
    assert items == {f"naip-{y}" for y in YEARS} and collections == {"naip"}
    assert times == {f"{y}-06-01T00:00:00Z" for y in YEARS}
    info = cli("info", root / "run" / "codes.h5")
    assert "3 items of naip" in info and "2009-06-01T00:00:00Z to 2019-06-01T00:00:00Z" in info

    query = tmp_path / "q.txt"
    query.write_text(f"{catalog.parent / 'data' / 'naip_2009.tif'}#256,256,256,256\n")
    model = root / "run" / "model.pt"
    cli("query", root / "index.faiss", query, "--model", model, "-k", "36", "-o", tmp_path / "all.tsv")
    cli("query", root / "index.faiss", query, "--model", model, "-k", "10", "--since", "2014-01-01", "-o",
        tmp_path / "late.tsv")  # fmt: skip
    every, late = tsv(tmp_path / "all.tsv"), tsv(tmp_path / "late.tsv")
    assert {r["datetime"] for r in every} == {f"{y}-06-01T00:00:00Z" for y in YEARS}
    assert late and all(r["datetime"] >= "2014" for r in late)
    # The period filters and keeps the order: the later items' ids in the order the unfiltered search gave them.
    assert [r["id"] for r in late] == [r["id"] for r in every if r["datetime"] >= "2014"][: len(late)]
    cli("query", root / "index.faiss", query, "--model", model, "--until", "2009", "-k", "5", "-o", tmp_path / "e.tsv")
    assert {r["datetime"] for r in tsv(tmp_path / "e.tsv")} == {"2009-06-01T00:00:00Z"}
    assert "no indexed item was acquired" in failing(
        "query", root / "index.faiss", query, "--model", model, "--until", "2001", "-o", tmp_path / "none.tsv"
    )
    assert not (tmp_path / "none.tsv").exists()

    # The catalog as QUERIES: every item's chips, bands by common name.
    cli("query", root / "index.faiss", catalog, "--model", model, "--bands", "red,green,blue", "--tile", "256",
        "-k", "1", "-o", tmp_path / "self.tsv")  # fmt: skip
    rows = tsv(tmp_path / "self.tsv")
    assert len(rows) == 36 and all(r["distance"] == "0" for r in rows)


def geoparquet_checked(path: Path, n: int):
    """The file as geopandas reads it (EPSG:4326 polygons), its `geo` metadata, and GDAL's reading where its
    Parquet driver is built in."""
    import geopandas
    import pyarrow.parquet as pq
    import pyogrio

    frame = geopandas.read_parquet(path)
    assert len(frame) == n and frame.crs is not None and frame.crs.equals("OGC:CRS84")
    geo = json.loads(pq.read_metadata(path).metadata[b"geo"])
    assert geo["version"] == "1.1.0" and geo["columns"]["geometry"]["encoding"] == "WKB"
    assert geo["columns"]["geometry"]["geometry_types"] == ["Polygon"]
    if "Parquet" in pyogrio.list_drivers():
        via_gdal = pyogrio.read_dataframe(path)
        assert len(via_gdal) == n and via_gdal.geometry.geom_type.eq("Polygon").all()
    return frame


def test_export_and_geoparquet_results_open_in_geopandas(stac_index, tmp_path):
    root, catalog = stac_index
    cli("export", root / "index.faiss", "-o", tmp_path / "items.parquet")
    items = geoparquet_checked(tmp_path / "items.parquet", 36)
    assert set(items["stac_item"]) == {f"naip-{y}" for y in YEARS} and set(items["collection"]) == {"naip"}
    assert items["datetime"].dt.year.isin(YEARS).all() and items["code"].str.len().eq(8).all()
    assert items.geometry.is_valid.all() and (items.to_crs("EPSG:26914").geometry.area > 250**2).all()
    # Each footprint holds its chip's centre.
    assert items.geometry.contains(geopandas_points(items), align=False).all()
    assert "GeoParquet 1.1.0 of an index's items" in cli("info", tmp_path / "items.parquet")

    query = tmp_path / "q.txt"
    query.write_text(f"{catalog.parent / 'data' / 'naip_2019.tif'}#0,0,256,256\n")
    out = tmp_path / "r.parquet"
    cli("query", root / "index.faiss", query, "--model", root / "run" / "model.pt", "-k", "5", "--format",
        "geoparquet", "--since", "2019", "-o", out)  # fmt: skip
    results = geoparquet_checked(out, 5)
    assert (results["datetime"].dt.year == 2019).all() and list(results["rank"]) == [1, 2, 3, 4, 5]
    assert "geoparquet" in cli("info", out)


def geopandas_points(frame):
    import geopandas

    return geopandas.GeoSeries(geopandas.points_from_xy(frame["lon"], frame["lat"]), crs=frame.crs, index=frame.index)


def test_a_broken_href_is_named_by_its_item(scenes, tmp_path):
    catalog = make_stac_catalog(tmp_path / "catalog", scenes, broken=True)
    line = failing("features", catalog, "--bands", "red,green,blue", "-o", tmp_path / "f.h5")
    assert "STAC item 'naip-1999'" in line and "not found" in line and "fix its href" in line
    assert not (tmp_path / "f.h5").exists()


def test_labels_come_from_an_item_property_and_the_asset_from_its_key(scenes, tmp_path):
    catalog = make_stac_catalog(tmp_path / "catalog", scenes)
    out = cli("features", catalog, "--bands", "image", "--label-property", "landcover", "--views", "1", "-o",
              tmp_path / "f.h5")  # fmt: skip
    assert "3 images, 2 classes" in out
    with h5py.File(tmp_path / "f.h5") as f:
        classes = [c.decode() for c in f["classes"][:]]
        labels = [classes[i] for i in f["labels"][:]]
    assert labels == ["cropland", "mixed", "cropland"]  # the items in catalog order: 2009, 2014, 2019
    line = failing("features", catalog, "--bands", "image", "--label-property", "season", "-o", tmp_path / "g.h5")
    assert "STAC item 'naip-2009' has no property 'season'" in line and "landcover" in line
    line = failing("features", scenes, "--label-property", "landcover", "-o", tmp_path / "h.h5")
    assert "is not a STAC catalog" in line


def raster(path: Path, scenes: Path, dtype: str, transform=None, crs="EPSG:26914", gcps=None) -> Path:
    """A 512 px crop of NAIP 2019 as `dtype` (uint16: x12 + 100; float: reflectance-like 0-0.3; complex: one band
    of R + iG)."""
    with rasterio.open(scenes / "naip_2019.tif") as src:
        pixels = src.read([1, 2, 3], window=((0, 512), (0, 512)))
        grid = src.transform
    if dtype == "uint16":
        pixels = pixels.astype("uint16") * 12 + 100
    elif dtype.startswith("float"):
        pixels = pixels.astype(dtype) / 255 * 0.3
    elif dtype.startswith("complex"):
        pixels = (pixels[:1] + 1j * pixels[1:2]).astype(dtype)
    profile = {"driver": "GTiff", "width": 512, "height": 512, "count": len(pixels), "dtype": dtype}
    if gcps is None:
        profile.update(crs=crs, transform=transform if transform is not None else grid)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(pixels)
        if gcps is not None:
            dst.gcps = (gcps(grid), rasterio.crs.CRS.from_string(crs))
    return path


def test_16bit_and_float_rasters_join_an_8bit_uc_merced_index_with_a_recorded_scaling(itq_index, scenes, tmp_path):
    from affine import Affine
    from rasterio.control import GroundControlPoint

    index = tmp_path / "base.faiss"
    for f in itq_index.parent.glob("base.faiss*"):
        shutil.copy(f, tmp_path / f.name)
    model = itq_index.parent / "run" / "model.pt"
    u16 = raster(tmp_path / "u16.tif", scenes, "uint16")
    # A rotated grid (20°) and a raster georeferenced by ground control points only.
    with rasterio.open(u16) as src:
        rotated = src.transform * Affine.rotation(20)
    f32 = raster(tmp_path / "f32.tif", scenes, "float32", transform=rotated)
    gcp = raster(
        tmp_path / "gcp.tif",
        scenes,
        "uint8",
        gcps=lambda t: [
            GroundControlPoint(row=r, col=c, x=(t * (c, r))[0], y=(t * (c, r))[1]) for r in (0, 512) for c in (0, 512)
        ],
    )
    assert "--scale auto" in failing("add", index, u16, "--model", model, "--tile", "256")
    cli("add", index, u16, "--model", model, "--tile", "256", "--scale", "auto")
    cli("add", index, f32, "--model", model, "--tile", "256", "--scale", "0:0.3")
    cli("add", index, gcp, "--model", model, "--tile", "256")
    complex_line = failing("add", index, raster(tmp_path / "slc.tif", scenes, "complex64"), "--model", model)
    assert "complex64 pixels" in complex_line and "amplitude" in complex_line

    with h5py.File(f"{index}.added.h5") as f:
        sources = json.loads(f.attrs["sources"])
        corners = f["footprints/corners"][:]
        crs = {x.decode() for x in f["footprints/crs"][:]}
    assert [s["items"] for s in sources] == [4, 4, 4] and crs == {"EPSG:26914"}
    assert sources[0]["scaling"].startswith("percentiles 2-98") and "uint16" in sources[0]["scaling"]
    assert sources[1]["scale"] == [[0, 0.3]] * 3 and sources[2]["scaling"] == "the model's"
    info = cli("info", f"{index}.added.h5")
    assert "u16.tif: 4 items (ids" in info and "given (--scale) [0:0.3, 0:0.3, 0:0.3]" in info

    from pyproj import Transformer

    to_lonlat = Transformer.from_crs("EPSG:26914", "EPSG:4326", always_xy=True)
    # Each chip's outline is its pixel corners through the file's own georeferencing, rotated or by GCPs.
    for row, (path, grid) in zip((4, 8), ((f32, rotated), (gcp, None))):
        with rasterio.open(path) as src:
            t = grid if grid is not None else rasterio.transform.from_gcps(src.gcps[0])
        want = [to_lonlat.transform(*(t * xy)) for xy in ((0, 0), (256, 0), (256, 256), (0, 256))]
        np.testing.assert_allclose(corners[row].reshape(4, 2), want, atol=1e-6)
    # The rotated chip is not an axis-aligned box: its corners differ in both longitude and latitude.
    rot = corners[4].reshape(4, 2)
    assert abs(rot[0, 1] - rot[1, 1]) > 1e-4 and abs(rot[0, 0] - rot[3, 0]) > 1e-4


def test_labels_come_from_label_extension_items(scenes, tmp_path):
    """Scene-level labels kept apart from the imagery: one label item per scene, linked to it as its source."""
    from pystac.extensions.label import LabelClasses, LabelExtension, LabelType

    catalog_path = make_stac_catalog(tmp_path / "catalog", scenes)
    catalog = pystac.Catalog.from_file(str(catalog_path))
    collection = next(iter(catalog.get_children()))
    for item in list(collection.get_items()):
        landcover = item.properties.pop("landcover")
        label = pystac.Item(f"{item.id}-label", item.geometry, item.bbox, item.datetime, {})
        LabelExtension.ext(label, add_if_missing=True).apply(
            label_description="scene class",
            label_type=LabelType.VECTOR,
            label_properties=["landcover"],
            label_classes=[LabelClasses.create(classes=[landcover], name="landcover")],
            label_tasks=["classification"],
        )
        LabelExtension.ext(label).add_source(item)
        label.add_asset("labels", pystac.Asset("labels.geojson", media_type=pystac.MediaType.GEOJSON))
        collection.add_item(label)
    catalog.normalize_hrefs(str(catalog_path.parent))
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    out = cli("features", catalog_path, "--label-property", "landcover", "--views", "1", "-o", tmp_path / "f.h5")
    assert "3 images, 2 classes" in out  # the label items are not read as imagery
    with h5py.File(tmp_path / "f.h5") as f:
        classes = [c.decode() for c in f["classes"][:]]
        assert [classes[i] for i in f["labels"][:]] == ["cropland", "mixed", "cropland"]
