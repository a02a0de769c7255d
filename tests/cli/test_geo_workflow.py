"""The workflow a remote-sensing user comes for, through the CLI: train on UC Merced (0.3 m aerial), add the
drone orthophoto (0.35 m, alpha no-data) cut into 256 px chips, query with UC Merced scenes, and get places on the
map: lon/lat columns, a GeoJSON that GDAL/OGR (what QGIS reads with) opens, and a gallery with coordinates."""

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.warp import transform_bounds

from hashidx.cli import main

ORTHO = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "scenes" / "drone_orthophoto.tif"

pytestmark = pytest.mark.usefixtures("scenes")


def _invoke(*args):
    return CliRunner().invoke(main, ["--quiet", *map(str, args)], catch_exceptions=False)


@pytest.fixture(scope="module")
def mapped(ucmd_features, ucmd_slice, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("geo")
    assert _invoke("train", ucmd_features, "--bits", "32", "--iterations", "3", "-o", tmp / "run").exit_code == 0
    assert _invoke("build-index", tmp / "run" / "codes.h5", "-o", tmp / "ix").exit_code == 0
    added = _invoke("add", tmp / "ix", ORTHO, "--model", tmp / "run" / "model.pt", "--tile", "256")
    assert added.exit_code == 0 and "89 codes (9 added by the network)" in added.output, added.output
    queries = tmp / "q.txt"
    queries.write_text("".join(f"{p}\n" for p in sorted((ucmd_slice / "agricultural").iterdir())[:2]))
    return tmp, queries


def test_added_chips_carry_footprints_into_results_geojson_and_the_gallery(mapped):
    tmp, queries = mapped
    # The scene's own codes (INDEX.added.h5, a codes file) make an index of its chips alone: where on it?
    assert _invoke("build-index", tmp / "ix.added.h5", "-o", tmp / "scene").exit_code == 0
    model = tmp / "run" / "model.pt"
    common = ["--model", model, "-k", "5"]
    assert (
        _invoke("query", tmp / "scene", queries, *common, "-o", tmp / "r.tsv", "--html", tmp / "g.html").exit_code == 0
    )
    assert (
        _invoke("query", tmp / "scene", queries, *common, "-o", tmp / "r.geojson", "--format", "geojson").exit_code == 0
    )
    rows = [line.split("\t") for line in (tmp / "r.tsv").read_text().splitlines()]
    assert rows[0][-3:] == ["lon", "lat", "datetime"] and len(rows) == 1 + 2 * 5
    with rasterio.open(ORTHO) as src:
        west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    lonlat = np.asarray([[float(r[6]), float(r[7])] for r in rows[1:]])
    assert ((lonlat[:, 0] > west) & (lonlat[:, 0] < east) & (lonlat[:, 1] > south) & (lonlat[:, 1] < north)).all()

    collection = json.loads((tmp / "r.geojson").read_text())
    assert collection["type"] == "FeatureCollection" and len(collection["features"]) == 10
    first = collection["features"][0]["properties"]
    assert first["rank"] == 1 and first["source"] == str(ORTHO) and first["crs"] == "EPSG:32750"
    assert first["path"] == "drone_orthophoto.tif#{},{},256,256".format(*first["window"][:2])
    pyogrio = pytest.importorskip("pyogrio")  # GDAL's OGR: the reader QGIS opens GeoJSON with
    info = pyogrio.read_info(tmp / "r.geojson")
    assert info["features"] == 10 and info["geometry_type"] == "Polygon" and "EPSG:4326" in str(info["crs"])
    assert {"query", "rank", "item_id", "distance", "source", "window"} <= set(info["fields"])
    # every feature its own id, though both queries match some of the same chips: GDAL keeps them as FIDs
    assert [f["id"] for f in collection["features"]] == list(range(10))
    meta, fids, _, fields = pyogrio.raw.read(tmp / "r.geojson", read_geometry=False, return_fids=True)
    item_ids = fields[list(meta["fields"]).index("item_id")]
    assert fids.tolist() == list(range(10)) and item_ids.tolist() == [int(r[2]) for r in rows[1:]]

    page = (tmp / "g.html").read_text()
    data = json.loads(page.split('<script id="data" type="application/json">')[1].split("</script>")[0])
    places = [hit["place"] for q in data["queries"] for hit in q["results"]]
    assert len(places) == 10 and all(p.startswith("8.58") and "°S 115.16" in p and p.endswith("°E") for p in places)
    assert "openstreetmap.org/?mlat=" in page


def test_one_index_of_photos_and_chips_keeps_coordinates_only_where_known(mapped):
    tmp, queries = mapped
    model = tmp / "run" / "model.pt"
    out = _invoke("query", tmp / "ix", queries, "--model", model, "-k", "89", "-o", tmp / "all.tsv")
    assert out.exit_code == 0, out.output
    rows = [line.split("\t") for line in (tmp / "all.tsv").read_text().splitlines()[1:]]
    chips = [r for r in rows if r[3].startswith("drone_orthophoto.tif#")]
    photos = [r for r in rows if not r[3].startswith("drone_orthophoto.tif#")]
    assert len(chips) == 2 * 9 and all(r[6] and r[7] for r in chips) and all(r[6:] == ["", "", ""] for r in photos)
    assert _invoke("query", tmp / "ix", queries, "--model", model, "-k", "89", "--format", "geojson", "-o",
                   tmp / "all.geojson").exit_code == 0  # fmt: skip
    assert len(json.loads((tmp / "all.geojson").read_text())["features"]) == 2 * 9


def test_scene_bad_input_through_the_cli(mapped, tmp_path):
    tmp, _ = mapped
    model = tmp / "run" / "model.pt"
    big = _invoke("add", tmp / "ix", ORTHO, "--model", model, "--tile", "1000")
    assert big.exit_code == 1 and "chip size 1000 px is larger than the 686x758 px scene" in big.output
    bands = _invoke("add", tmp / "ix", ORTHO, "--model", model, "--tile", "256", "--bands", "1-4")
    assert bands.exit_code == 1 and "--bands 1-4: the model reads bands RGB" in bands.output
    cut = tmp_path / "cut.tif"
    cut.write_bytes(ORTHO.read_bytes()[:50_000])
    broken = _invoke("add", tmp / "ix", cut, "--model", model, "--tile", "256")
    assert broken.exit_code == 1 and "cut.tif: cannot read raster" in broken.output
    assert all(len(r.output.strip().splitlines()) == 1 for r in (big, bands, broken))
    assert json.loads((tmp / "ix.json").read_text())["count"] == 89  # nothing half-added
