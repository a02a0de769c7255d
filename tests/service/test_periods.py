"""The service over a STAC archive of three NAIP years: results carry each item's time, searches take a period
(the order of what remains unchanged), and result sets export as GeoParquet."""

from __future__ import annotations

import io

import pytest

from hashidx.service.settings import ServeSettings

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from hashidx.service.app import create_app  # noqa: E402
from hashidx.service.archive import Archive  # noqa: E402


@pytest.fixture(scope="module")
def client(stac_archive):
    archive = Archive(stac_archive / "index.faiss", stac_archive / "run" / "model.pt")
    return TestClient(create_app(archive, ServeSettings(stac_archive / "index.faiss").checked()))


def test_a_period_filters_searches_and_keeps_their_order(client):
    point = {"lon": -99.16, "lat": 47.019, "k": 36}
    every = client.get("/search/point", params=point).json()
    hits = every["queries"][0]["results"]
    assert {h["datetime"][:4] for h in hits} == {"2009", "2014", "2019"}
    late = client.get("/search/point", params={**point, "k": 5, "since": "2014-01-01"}).json()
    late_ids = [h["id"] for h in late["queries"][0]["results"]]
    assert late_ids == [h["id"] for h in hits if h["datetime"] >= "2014"][:5]
    body = {"positive": [every["item"]["id"]], "k": 4, "until": "2009-12-31"}
    early = client.post("/search/items", json=body).json()["queries"][0]["results"]
    assert len(early) == 4 and all(h["datetime"].startswith("2009") for h in early)
    bad = client.get("/search/point", params={**point, "since": "last week"})
    assert bad.status_code == 400 and "--since last week" in bad.json()["error"]
    empty = client.post("/search/items", json={**body, "until": "2001"})
    assert empty.status_code in (400, 404) and "no indexed item was acquired" in empty.json()["error"]


def test_a_result_set_exports_as_geoparquet(client):
    geopandas = pytest.importorskip("geopandas")
    got = client.post("/export/geoparquet", json={"positive": [3], "k": 6, "since": "2019"})
    assert got.status_code == 200 and got.content[:4] == b"PAR1"
    frame = geopandas.read_parquet(io.BytesIO(got.content))
    assert len(frame) == 6 and (frame["datetime"].dt.year == 2019).all() and frame.crs.equals("OGC:CRS84")
    assert set(frame["stac_item"]) == {"naip-2019"} and frame.geometry.geom_type.eq("Polygon").all()


def test_a_16bit_upload_is_read_with_the_services_scale(stac_archive, scenes, client, tmp_path):
    rasterio = pytest.importorskip("rasterio")
    with rasterio.open(scenes / "naip_2019.tif") as src:
        pixels = src.read([1, 2, 3], window=((0, 512), (0, 512))).astype("uint16") * 12 + 100
        profile = {"crs": src.crs, "transform": src.transform}
    tif = tmp_path / "u16.tif"
    with rasterio.open(tif, "w", driver="GTiff", width=512, height=512, count=3, dtype="uint16", **profile) as dst:
        dst.write(pixels)
    refused = client.post("/search/image", params={"k": 3}, content=tif.read_bytes())
    assert refused.status_code == 400 and "--scale auto" in refused.json()["error"]
    archive = Archive(stac_archive / "index.faiss", stac_archive / "run" / "model.pt", scale="auto")
    scaled = TestClient(create_app(archive, ServeSettings(stac_archive / "index.faiss").checked()))
    got = scaled.post("/search/image", params={"k": 3, "tile": "256"}, content=tif.read_bytes())
    assert got.status_code == 200 and len(got.json()["queries"]) == 4
    # The next 8-bit upload is read with the model's own scaling again: the same answer as on a plain service.
    chip = tmp_path / "chip.tif"
    with rasterio.open(chip, "w", driver="GTiff", width=256, height=256, count=3, dtype="uint8", **profile) as dst:
        dst.write((pixels[:, :256, :256] - 100) // 12)
    plain = client.post("/search/image", params={"k": 5}, content=chip.read_bytes()).json()
    again = scaled.post("/search/image", params={"k": 5}, content=chip.read_bytes()).json()
    assert [h["id"] for h in plain["queries"][0]["results"]] == [h["id"] for h in again["queries"][0]["results"]]
