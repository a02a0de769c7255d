"""Learning from marks through the service: marks kept in a plain file, a learned model swapped in while the old
one answers, undo, and a read-only service that refuses all of it in one message."""

from __future__ import annotations

import os
import threading

import httpx
import pytest

from hashidx.service.settings import ServeSettings

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from hashidx.service.app import create_app  # noqa: E402

pytestmark = pytest.mark.realdata


def make_client(naip_archive, learn_dir=None):
    from hashidx.feedback.learn import LearnSettings
    from hashidx.feedback.workspace import Workspace
    from hashidx.service.archive import Archive

    index = naip_archive / "naip.faiss"
    ws = None if learn_dir is None else Workspace(learn_dir, index, settings=LearnSettings(iterations=4))
    archive = Archive(index, naip_archive / "run" / "model.pt", workspace=ws)
    return TestClient(create_app(archive, ServeSettings(index, learn_dir=learn_dir).checked()))


def test_a_read_only_service_refuses_marks_learn_and_undo(naip_archive):
    client = make_client(naip_archive)
    for path, body in (("/marks", {"marks": [{"item": 1, "concept": "pond", "mark": "+"}]}), ("/learn", None),
                       ("/undo", None)):  # fmt: skip
        r = client.post(path, json=body)
        assert r.status_code == 403 and r.json() == {
            "error": "this service is read-only: start it with --learn-dir DIR to keep marks and learn"
        }
    assert client.get("/info").json()["learning"] is None


def test_marks_learn_search_and_undo(naip_archive, tmp_path):
    client = make_client(naip_archive, tmp_path / "ws")
    items = client.get("/items?limit=200").json()["items"]
    assert len(items) == 96
    # a box over the north-west corner of the 2019 scene: its chips become positives
    nw = next(i for i in items if "naip_2019" in i["path"] and i["window"][:2] == [0, 0])
    west, south = (
        min(c[0] for c in nw["footprint"]["coordinates"][0]),
        min(c[1] for c in nw["footprint"]["coordinates"][0]),
    )
    east, north = (
        max(c[0] for c in nw["footprint"]["coordinates"][0]),
        max(c[1] for c in nw["footprint"]["coordinates"][0]),
    )
    r = client.post("/marks", json={"box": [west, south, east, north], "concept": "field"})
    assert r.status_code == 200 and r.json()["added"] >= 1, r.text
    negatives = [items[5]["id"], items[60]["id"]]
    r = client.post("/marks", json={"marks": [{"item": 3, "concept": "field", "mark": "+"}] +
                                    [{"item": i, "concept": "field", "mark": "-"} for i in negatives]})  # fmt: skip
    assert r.status_code == 200 and r.json()["concepts"] == ["field"]
    assert (tmp_path / "ws" / "marks.tsv").read_text().startswith("item_id\tconcept\tmark\n")
    assert len(client.get("/marks").json()["marks"]) == r.json()["marks"]

    r = client.post("/learn")
    assert r.status_code == 200, r.text
    assert r.json()["version"] == "0001" and r.json()["items"] == 96
    info = client.get("/info").json()["learning"]
    assert info["version"] == "0001" and info["versions"] == ["0001"] and info["concepts"] == ["field"]
    found = client.post("/search/items", json={"positive": [nw["id"], 3], "negative": negatives, "k": 20}).json()
    ids = [h["id"] for h in found["queries"][0]["results"]]
    assert len(ids) == 20 and not set(ids) & set(negatives)

    assert client.post("/undo").json() == {"version": "base"}
    assert client.get("/info").json()["learning"]["version"] == "base"
    r = client.post("/undo")
    assert r.status_code == 409 and r.json() == {"error": "nothing to undo: the base index is answering"}

    bad = client.post("/marks", json={"marks": [{"item": 10**6, "concept": "field", "mark": "+"}]})
    assert bad.status_code == 404 and "10" in bad.json()["error"]
    bad = client.post("/marks", json={"marks": [{"item": 1, "concept": "field", "mark": "?"}]})
    assert bad.status_code == 422 and set(bad.json()) == {"error"}


def test_searches_during_a_learn_all_answer_and_the_new_model_takes_over(naip_archive, tmp_path, launch):
    proc, url = launch.start(naip_archive, "--learn-dir", str(tmp_path / "ws"), index="naip.faiss")
    try:
        marks = [{"item": i, "concept": "water", "mark": "+"} for i in (2, 7, 50)]
        marks += [{"item": i, "concept": "water", "mark": "-"} for i in (0, 20, 70)]
        assert httpx.post(f"{url}/marks", json={"marks": marks}, timeout=30).status_code == 200
        statuses: list[int] = []
        learning = threading.Event()

        def ask() -> None:
            with httpx.Client(timeout=60) as http:
                while learning.is_set():
                    r = http.post(f"{url}/search/items", json={"positive": [2, 7], "negative": [0], "k": 10})
                    statuses.append(r.status_code)
                    assert not {h["id"] for h in r.json()["queries"][0]["results"]} & {0}

        learning.set()
        asking = threading.Thread(target=ask)
        asking.start()
        r = httpx.post(f"{url}/learn", timeout=300)
        learning.clear()
        asking.join(60)
        assert r.status_code == 200 and r.json()["version"] == "0001", r.text
        assert statuses and set(statuses) == {200}
        assert httpx.get(f"{url}/info", timeout=30).json()["learning"]["version"] == "0001"
        assert sorted(p.name for p in (tmp_path / "ws" / "learned" / "0001").iterdir()) == [
            "codes.h5", "index.faiss", "index.faiss.json", "learn.json", "marks.tsv", "model.pt"]  # fmt: skip
    finally:
        launch.stop(proc)
    # a restart answers with the latest learned model
    proc, url = launch.start(naip_archive, "--learn-dir", str(tmp_path / "ws"), index="naip.faiss")
    try:
        assert httpx.get(f"{url}/info", timeout=30).json()["learning"]["version"] == "0001"
    finally:
        launch.stop(proc)


def test_the_page_marks_matches_learns_and_undoes(naip_archive, tmp_path, launch):
    playwright = pytest.importorskip("playwright.sync_api")
    proc, url = launch.start(naip_archive, "--learn-dir", str(tmp_path / "ws"), index="naip.faiss")
    requests: list[str] = []
    try:
        with playwright.sync_playwright() as p:
            browser, page = launch.page(p, url, requests)
            page.fill("#concept", "pond")
            box = page.locator("#map").bounding_box()
            assert box is not None
            page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.wait_for_selector("body[data-results='20']", timeout=30_000)
            page.locator(".verdict .yes").nth(1).click()
            page.wait_for_selector("body[data-marks='1']", timeout=30_000)
            page.locator(".verdict .yes").nth(2).click()
            page.wait_for_selector("body[data-marks='2']", timeout=30_000)
            page.locator("#results button.hit").nth(5).focus()
            page.keyboard.press("n")  # wrong, from the keyboard
            page.wait_for_selector("body[data-marks='3']", timeout=30_000)
            assert page.locator("button.hit.marked-yes").count() == 2
            assert page.locator("button.hit.marked-no").count() == 1
            # shift-drag a box over the middle of the map: its chips are marked right too
            page.keyboard.down("Shift")
            page.mouse.move(box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.45)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] * 0.55, box["y"] + box["height"] * 0.55, steps=5)
            page.mouse.up()
            page.keyboard.up("Shift")
            for _ in range(300):  # (wait_for_function evaluates a string: the page's CSP forbids that)
                if int(page.get_attribute("body", "data-marks") or 0) > 3:
                    break
                page.wait_for_timeout(100)
            assert int(page.get_attribute("body", "data-marks") or 0) > 3
            page.evaluate("document.body.dataset.results = ''")
            page.click("#learn")
            page.wait_for_selector("body[data-version='0001']", timeout=120_000)
            page.wait_for_selector("body[data-results='20']", timeout=30_000)
            assert "model 0001" in page.inner_text("#version")
            if os.environ.get("HASHIDX_LEARN_SCREENSHOT"):  # how docs/feedback/page.png is made
                page.screenshot(path=os.environ["HASHIDX_LEARN_SCREENSHOT"])
            page.evaluate("document.body.dataset.results = ''")
            page.click("#undo")
            page.wait_for_selector("body[data-version='base']", timeout=30_000)
            browser.close()
    finally:
        launch.stop(proc)
    lines = (tmp_path / "ws" / "marks.tsv").read_text().splitlines()
    assert lines[0] == "item_id\tconcept\tmark"
    verdicts = [l.split("\t")[1:] for l in lines[1:]]
    # two right and one wrong by hand, then the box's chips right (a chip marked again keeps one line)
    assert len(verdicts) > 3 and {c for c, _ in verdicts} == {"pond"}
    assert sum(v == "+" for _, v in verdicts) >= 3 and verdicts[-1] == ["pond", "+"]
    outside = [u for u in requests if not u.startswith((url + "/", "data:", "blob:"))]
    assert requests and not outside, outside
