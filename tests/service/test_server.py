"""`hashidx serve` as a user runs it: a real uvicorn on 127.0.0.1, the page in a real headless Chromium (no request
leaves the machine), a saturated server answering 503, and SIGTERM ending it cleanly."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest


@pytest.fixture(scope="module")
def server(archive_files, launch):
    proc, url = launch.start(archive_files)
    yield url
    launch.stop(proc)


def test_the_page_searches_by_place_and_by_upload_with_no_outside_request(server, ucmd_slice, tmp_path, launch):
    playwright = pytest.importorskip("playwright.sync_api")
    requests: list[str] = []
    with playwright.sync_playwright() as p:
        browser, page = launch.page(p, server, requests)
        assert page.get_attribute("body", "data-scenes") == "2"
        page.wait_for_selector("img.leaflet-tile-loaded", timeout=30_000)  # the scene is the base map
        page.wait_for_selector("path.chip", state="attached", timeout=30_000)
        assert page.locator("path.chip").count() >= 36  # every chip outlined on hover
        drone = page.evaluate(
            "fetch('/scenes').then(r => r.json()).then(s => s.features.find("
            "f => f.properties.name.startsWith('drone')).geometry.coordinates[0])"
        )
        west, south = min(c[0] for c in drone), min(c[1] for c in drone)
        east, north = max(c[0] for c in drone), max(c[1] for c in drone)
        page.evaluate(f"window.hashidxMap.fitBounds([[{south}, {west}], [{north}, {east}]])")
        page.wait_for_timeout(500)
        box = page.locator("#map").bounding_box()
        assert box is not None
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.wait_for_selector("body[data-results='20']", timeout=30_000)
        assert page.locator("#results button.hit").count() == 20
        on_map = page.locator("#results button.on-map").count()  # chips; the slice's photos have no footprint
        assert on_map >= 1 and page.locator("path.match").count() == on_map  # each chip's polygon drawn
        page.screenshot(path=str(tmp_path / "place.png"))
        if os.environ.get("HASHIDX_SCREENSHOT"):  # how docs/serve/page.png is made
            page.screenshot(path=os.environ["HASHIDX_SCREENSHOT"])
        page.evaluate("document.body.dataset.results = ''")
        page.set_input_files("#file", str(sorted((ucmd_slice / "forest").iterdir())[0]))
        page.wait_for_selector("body[data-results='20']", timeout=30_000)
        assert "forest" in page.locator("#results").inner_text()
        browser.close()
    outside = [u for u in requests if not u.startswith((server + "/", "data:", "blob:"))]
    assert requests and not outside, outside


def test_an_archive_without_geography_gets_a_gallery_with_the_same_search(archive_files, hashidx_cli, launch):
    hashidx_cli("build-index", archive_files / "run" / "codes.h5", "-o", archive_files / "photos.faiss")
    proc, url = launch.start(archive_files, index="photos.faiss")
    playwright = pytest.importorskip("playwright.sync_api")
    try:
        with playwright.sync_playwright() as p:
            browser = launch.browser(p)
            page = browser.new_page()
            page.goto(url + "/")
            page.wait_for_selector("body[data-ready='1']", timeout=30_000)
            assert page.get_attribute("body", "data-scenes") == "0" and page.locator("#map").is_hidden()
            assert page.locator("#gallery button").count() == 80
            page.locator("#gallery button").first.focus()
            page.keyboard.press("Enter")  # the keyboard reaches every item
            page.wait_for_selector("body[data-results='20']", timeout=30_000)
            assert page.locator("#results").inner_text().count("agricultural") >= 10
            browser.close()
    finally:
        proc.kill()
        proc.wait(30)


def test_a_saturated_server_answers_503_with_retry_after(archive_files, ucmd_slice, launch):
    proc, url = launch.start(archive_files, "--max-concurrency", "1", "--max-queue", "0")
    image = sorted((ucmd_slice / "beach").iterdir())[0].read_bytes()
    statuses: list[tuple[int, str | None]] = []

    def ask() -> None:
        r = httpx.post(f"{url}/search/image", content=image, timeout=60)
        statuses.append((r.status_code, r.headers.get("retry-after")))

    try:
        threads = [threading.Thread(target=ask) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        proc.kill()
        proc.wait(30)
    assert {s for s, _ in statuses} <= {200, 503} and (200, None) in statuses
    assert any(s == 503 and r == "1" for s, r in statuses), statuses


def test_sigterm_finishes_the_request_in_flight_then_exits(archive_files, scenes, launch, tmp_path):
    log = (tmp_path / "serve.log").open("w+")
    proc, url = launch.start(archive_files, stderr=log)
    scene = (scenes / "drone_orthophoto.tif").read_bytes()  # cut into 36 chips: seconds of work
    answer: list[httpx.Response] = []
    asking = threading.Thread(
        target=lambda: answer.append(
            httpx.post(f"{url}/search/image", params={"tile": "224:112", "k": 3}, content=scene, timeout=120)
        )
    )
    asking.start()
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    asking.join(120)
    code = proc.wait(60)
    assert answer and answer[0].status_code == 200 and len(answer[0].json()["queries"]) == 36
    assert code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled, after the graceful shutdown
    log.seek(0)
    assert "Traceback" not in log.read()


def test_a_damaged_index_fails_at_start_in_one_line(archive_files, tmp_path):
    bad = tmp_path / "db.faiss"
    bad.write_bytes(b"not an index")
    shutil.copy(archive_files / "db.faiss.json", tmp_path / "db.faiss.json")
    out = subprocess.run(
        [sys.executable, "-m", "hashidx", "serve", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1 and str(bad) in out.stderr
