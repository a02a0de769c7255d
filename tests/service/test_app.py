"""The search service's API on a real archive (a UC Merced slice, the drone orthophoto's chips added with --tile):
the answers are `hashidx query`'s, ids and pictures are the only addresses, and bad requests are one-line 4xx."""

from __future__ import annotations

import io
import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from hashidx.errors import HashidxError
from hashidx.service.settings import ServeSettings

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from hashidx.service.app import create_app  # noqa: E402

TOKEN = "a-test-token-of-some-length"


@pytest.fixture(scope="module")
def client(archive, archive_files):
    return TestClient(create_app(archive, ServeSettings(archive_files / "db.faiss").checked()))


def _tsv(path) -> list[tuple[int, int, str]]:
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:]]
    return [(int(r[2]), int(r[4]), r[5]) for r in rows]


def test_info_items_and_scenes(client):
    scenes = {f["properties"]["name"]: f for f in client.get("/scenes").json()["features"]}
    assert set(scenes) == {"drone_orthophoto.tif", "naip_2019.tif"}
    assert scenes["drone_orthophoto.tif"]["properties"]["items"] == 36
    naip = scenes["naip_2019.tif"]["properties"]
    assert naip["items"] > 20 and naip["crs"] == "EPSG:26914"
    info = client.get("/info").json()
    assert info["items"] == 80 + 36 + naip["items"] and info["scenes"] == 2 and info["index"]["bits"] == 16
    page = client.get("/items", params={"offset": 80, "limit": 2}).json()
    assert page["total"] == info["items"] and page["items"][0]["window"] == [0, 0, 224, 224]
    drone = scenes["drone_orthophoto.tif"]
    assert page["items"][0]["footprint"]["type"] == "Polygon" and page["items"][0]["scene"] == drone["id"]
    chips = client.get(f"/scenes/{drone['id']}/items").json()
    assert [f["id"] for f in chips["features"]] == list(range(80, 116))
    assert all(f["geometry"]["type"] == "Polygon" for f in chips["features"])
    assert client.get("/scenes/0123456789ab/items").status_code == 404


def test_search_by_item_is_the_cli_query_of_its_code(client, archive_files, hashidx_cli, tmp_path):
    """One item's code (and content vector) as a codes query file through `hashidx query --rerank features`: the
    same ids, distances and order; the service orders a code's items by content, so the item itself comes first."""
    from hashidx.codes.codefile import CodeFile

    db = CodeFile.load(archive_files / "run" / "codes.h5")
    assert db.content is not None and client.get("/info").json()["order_within_code"] == "content"
    row = 7
    CodeFile(db.codes[row : row + 1], db.ids[row : row + 1], db.paths[row : row + 1], db.labels[row : row + 1],
             db.bits, db.method, db.attrs, content=db.content[row : row + 1]).save(tmp_path / "one.h5")  # fmt: skip
    hashidx_cli("query", archive_files / "db.faiss", tmp_path / "one.h5", "-k", "15", "--rerank", "features",
                "-o", tmp_path / "r.tsv")  # fmt: skip
    answer = client.post("/search/items", json={"positive": [int(db.ids[row])], "k": 15}).json()
    got = [(h["id"], h["distance"]) for h in answer["queries"][0]["results"]]
    assert got == [(i, d) for i, d, _ in _tsv(tmp_path / "r.tsv")] and got[0] == (int(db.ids[row]), 0)
    hashidx_cli("query", archive_files / "db.faiss", tmp_path / "one.h5", "-k", "15", "-o", tmp_path / "plain.tsv")
    plain = [(i, d) for i, d, _ in _tsv(tmp_path / "plain.tsv")]
    assert sorted(d for _, d in plain) == sorted(d for _, d in got)  # the same distances, another order inside


def test_negatives_never_come_back(client):
    first = client.post("/search/items", json={"positive": [3], "k": 10}).json()["queries"][0]["results"]
    marked = [h["id"] for h in first[1:4]]
    again = client.post("/search/items", json={"positive": [3], "negative": marked, "k": 10}).json()
    ids = [h["id"] for h in again["queries"][0]["results"]]
    assert len(ids) == 10 and not set(ids) & set(marked)


def test_search_by_uploaded_image_is_the_cli_query_of_that_file(
    client, archive_files, hashidx_cli, ucmd_slice, tmp_path
):
    image = sorted((ucmd_slice / "harbor").iterdir())[-1]
    (tmp_path / "q.txt").write_text(f"{image}\n")
    hashidx_cli("query", archive_files / "db.faiss", tmp_path / "q.txt", "--model", archive_files / "run" / "model.pt",
            "-k", "12", "--rerank", "features", "-o", tmp_path / "r.tsv")  # fmt: skip
    want = _tsv(tmp_path / "r.tsv")
    raw = client.post("/search/image", params={"k": 12}, content=image.read_bytes()).json()
    form = client.post("/search/image", params={"k": 12}, files={"file": ("x.jpg", image.read_bytes())}).json()
    for answer in (raw, form):
        got = [(h["id"], h["distance"], f"{h['score']}") for h in answer["queries"][0]["results"]]
        assert [(i, d) for i, d, _ in got] == [(i, d) for i, d, _ in want]
        assert np.allclose([float(s) for *_, s in got], [float(s) for *_, s in want])


def test_a_point_finds_the_chip_under_it(client, archive):
    chip = client.get("/items", params={"offset": 90, "limit": 1}).json()["items"][0]
    answer = client.get("/search/point", params={"lon": chip["lon"], "lat": chip["lat"], "k": 5}).json()
    assert answer["item"]["id"] == chip["id"]
    hits = answer["queries"][0]["results"]
    assert hits[0]["distance"] == 0 and hits[0]["id"] == chip["id"]  # itself first: its code, then its content
    miss = client.get("/search/point", params={"lon": 0.0, "lat": 0.0})
    assert miss.status_code == 404 and "no indexed chip covers this point" in miss.json()["error"]


def test_thumbnails_and_tiles_are_pictures_with_no_data_transparent(client):
    scene = next(f for f in client.get("/scenes").json()["features"] if f["properties"]["name"].startswith("drone"))
    corner = client.get("/items", params={"offset": 80, "limit": 1}).json()["items"][0]  # the scene's corner chip
    thumb = client.get(f"/items/{corner['id']}/thumbnail", params={"size": 64})
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/png"
    alpha = np.asarray(Image.open(io.BytesIO(thumb.content)))[..., 3]
    assert (alpha == 0).any() and (alpha == 255).any()  # the orthophoto's no-data corner is see-through
    photo = client.get("/items/0/thumbnail")
    assert photo.status_code == 200 and photo.headers["content-type"] == "image/jpeg"
    import morecantile

    west, south, east, north = (
        np.asarray(scene["geometry"]["coordinates"][0]).min(0).tolist()
        + np.asarray(scene["geometry"]["coordinates"][0]).max(0).tolist()
    )
    t = morecantile.tms.get("WebMercatorQuad").tile((west + east) / 2, (south + north) / 2, 18)
    tile = client.get(f"/scenes/{scene['id']}/tiles/{t.z}/{t.x}/{t.y}.png")
    assert tile.status_code == 200 and Image.open(io.BytesIO(tile.content)).size == (256, 256)
    naip = next(f for f in client.get("/scenes").json()["features"] if f["properties"]["name"] == "naip_2019.tif")
    ring = np.asarray(naip["geometry"]["coordinates"][0])
    t = morecantile.tms.get("WebMercatorQuad").tile(*ring.mean(axis=0)[:2].tolist(), 14)
    four_bands = client.get(f"/scenes/{naip['id']}/tiles/{t.z}/{t.x}/{t.y}.png")  # read as its bands 1,2,3
    assert four_bands.status_code == 200 and Image.open(io.BytesIO(four_bands.content)).mode in ("RGBA", "RGB")
    outside = client.get(f"/scenes/{scene['id']}/tiles/18/0/0.png")
    assert outside.status_code == 404 and "outside" in outside.json()["error"]


@pytest.mark.parametrize(
    "path",
    [
        "/items/../../etc/passwd",
        "/items/%2e%2e%2f%2e%2e%2fetc%2fpasswd/thumbnail",
        "/items//etc/passwd/thumbnail",
        "/items/-1/thumbnail",
        "/items/99999999999999999999999",
        "/scenes/..%2f..%2fetc%2fpasswd/tiles/1/1/1.png",
        "/scenes/%2fetc%2fpasswd/tiles/1/1/1.png",
        "/static/../../../etc/passwd",
        "/static/%2e%2e/%2e%2e/setup.cfg",
        "/scenes/x/tiles/99/1/1.png",
    ],
)
def test_no_id_reaches_a_file_the_client_names(client, path):
    response = client.get(path)
    assert 400 <= response.status_code < 500, (path, response.status_code)
    assert b"root:" not in response.content and b"[metadata]" not in response.content
    assert set(response.json()) == {"error"}


def _png_bomb(side: int) -> bytes:
    """A tiny PNG whose header claims side x side pixels (the data is a few compressed bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    head = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("body", "kwargs", "status", "fragment"),
    [
        (b"", {}, 400, "the upload is empty"),
        (b"%PDF-1.4 not an image", {}, 415, "not a JPEG, PNG or TIFF"),
        (b"II*\x00garbage" * 10, {}, 415, "damaged TIFF"),
        (_png_bomb(60_000), {}, 413, "pixels"),
        (b"x" * 40, {"headers": {"content-type": "multipart/form-data"}}, 400, "without a boundary"),
        (b"--b\r\nnot a form", {"headers": {"content-type": "multipart/form-data; boundary=b"}}, 400, ""),
    ],
)
def test_bad_uploads_are_one_line_4xx(client, body, kwargs, status, fragment):
    response = client.post("/search/image", content=body, **kwargs)
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"} and fragment in response.json()["error"]


def test_an_oversized_upload_is_refused(archive, archive_files):
    small = TestClient(create_app(archive, ServeSettings(archive_files / "db.faiss", max_upload_bytes=1000).checked()))
    response = small.post("/search/image", content=b"\xff\xd8" + b"0" * 5000)
    assert response.status_code == 413 and "at most 1,000" in response.json()["error"]


def test_a_token_guards_every_request_but_health(archive, archive_files):
    guarded = TestClient(create_app(archive, ServeSettings(archive_files / "db.faiss", token=TOKEN).checked()))
    assert guarded.get("/health").status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong-token-of-some-length"}, {"Authorization": TOKEN}):
        response = guarded.get("/info", headers=headers)
        assert response.status_code == 401 and "token" in response.json()["error"]
    assert guarded.get("/info", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    page = guarded.get("/", params={"token": TOKEN})  # the page takes it once, then the cookie carries it
    assert page.status_code == 200 and guarded.get("/info").status_code == 200


def test_off_loopback_needs_a_token(archive_files, monkeypatch):
    monkeypatch.delenv("HASHIDX_TOKEN", raising=False)
    with pytest.raises(HashidxError, match="--host 0.0.0.0: off this machine the service needs a token"):
        ServeSettings(archive_files / "db.faiss", host="0.0.0.0").checked()
    monkeypatch.setenv("HASHIDX_TOKEN", TOKEN)
    assert ServeSettings(archive_files / "db.faiss", host="0.0.0.0").checked().token == TOKEN


def test_headers_page_and_schema(client):
    page = client.get("/")
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    assert "access-control-allow-origin" not in page.headers
    assert "leaflet.js" in page.text and "http" not in page.text.replace("http-equiv", "")  # nothing from outside
    schema = client.get("/openapi.json").json()
    assert {"/search/items", "/search/image", "/search/point", "/scenes/{scene_id}/tiles/{z}/{x}/{y}.png"} <= set(
        schema["paths"]
    )


def test_export_is_the_cli_geojson_layout(client):
    response = client.post("/export/geojson", json={"positive": [90], "negative": [91], "k": 5})
    assert response.status_code == 200 and "attachment" in response.headers["content-disposition"]
    collection = json.loads(response.content)
    assert collection["type"] == "FeatureCollection" and collection["generator"].startswith("hashidx")
    assert [f["id"] for f in collection["features"]] == list(range(len(collection["features"])))
    assert 91 not in [f["properties"]["item_id"] for f in collection["features"]]


def test_a_fuzzed_corpus_of_requests_gets_no_500(client):
    """A few hundred malformed requests: wrong types, huge numbers, odd paths and bodies. None is a 500, each
    error is one JSON message, and the server still answers."""
    rng = np.random.default_rng(0)
    words = ["", "-1", "0", "1e309", "nan", "x" * 300, "%00", "..", "%2e%2e", "[]", "{}", "null", "9" * 40]
    paths = ["/items/{}", "/items/{}/thumbnail?size={}", "/scenes/{}/tiles/{}/{}/{}.png", "/search/point?lon={}&lat={}",
             "/items?offset={}&limit={}", "/search/image?k={}&tile={}&rerank={}"]  # fmt: skip
    bodies = [b"", b"{", b'{"positive": []}', b'{"positive": ["a"]}', b'{"positive": [1], "k": 0}',
              b'{"positive": [1], "negative": [99999]}', b"\xff" * 100,
              b'{"positive": [' + b"1," * 100 + b"1]}"]  # fmt: skip
    for n in range(300):
        template = paths[n % len(paths)]
        url = template.format(*(str(rng.choice(words)) for _ in range(template.count("{}"))))
        if n % 3 == 0:
            response = client.post("/search/items", content=bodies[n % len(bodies)],
                                   headers={"content-type": "application/json"})  # fmt: skip
        elif url.startswith("/search/image"):
            response = client.post(url, content=bodies[n % len(bodies)])
        else:
            response = client.get(url)
        assert response.status_code < 500, (url, response.status_code, response.text[:200])
        if response.status_code >= 400:
            assert set(response.json()) == {"error"}, (url, response.text[:200])
    assert client.get("/health").json() == {"status": "ok"}
