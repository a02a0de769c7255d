"""The service's test archive, built once per session: a run on the UC Merced slice, its flat index, the drone
orthophoto's 224 px chips and NAIP 2019's 128 px chips added to it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from hashidx.cli import main

TOKEN = "a-test-token-of-some-length"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def invoke(*args) -> str:
    result = CliRunner().invoke(main, ["--quiet", *map(str, args)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="session")
def hashidx_cli():
    """`hashidx ARGS...` in this process; fails the test on a non-zero exit."""
    return invoke


@pytest.fixture(scope="session")
def archive_files(ucmd_features, scenes, tmp_path_factory):
    out = tmp_path_factory.mktemp("serve")
    invoke("train", ucmd_features, "--bits", "16", "--iterations", "4", "-o", out / "run")
    invoke("build-index", out / "run" / "codes.h5", "-o", out / "db.faiss")
    invoke("add", out / "db.faiss", scenes / "drone_orthophoto.tif", "--model", out / "run" / "model.pt",
           "--tile", "224:112")  # fmt: skip
    # NAIP: 4 bands, of which the RGB model reads 1,2,3; a second scene, in another CRS
    invoke("add", out / "db.faiss", scenes / "naip_2019.tif", "--model", out / "run" / "model.pt",
           "--tile", "128", "--bands", "1,2,3")  # fmt: skip
    return out


@pytest.fixture(scope="session")
def archive(archive_files):
    from hashidx.service.archive import Archive

    return Archive(archive_files / "db.faiss", archive_files / "run" / "model.pt")


@pytest.fixture(scope="session")
def naip_archive(scenes, tmp_path_factory):
    """An archive nobody labelled: NAIP 2009 and 2019 cut into 128 px chips, their features, ITQ codes, an index."""
    out = tmp_path_factory.mktemp("naip")
    (out / "scenes.txt").write_text(f"{scenes / 'naip_2009.tif'}\n{scenes / 'naip_2019.tif'}\n")
    invoke("features", out / "scenes.txt", "--tile", "128", "--bands", "1,2,3", "--views", "1", "-o", out / "f.h5")
    invoke("train", out / "f.h5", "--method", "itq", "--bits", "32", "-o", out / "run")
    invoke("build-index", out / "run" / "codes.h5", "-o", out / "naip.faiss")
    return out


def start(
    archive_files: Path, *extra: str, index: str = "db.faiss", model: str = "run/model.pt", stderr=None
) -> tuple[subprocess.Popen, str]:
    from hashidx.errors import HashidxError
    from hashidx.service.server import spawn

    try:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        return spawn(archive_files / index, archive_files / model, *extra, env=env, stderr=stderr)
    except HashidxError as exc:
        pytest.fail(str(exc))


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL where the graceful shutdown takes too long (a browser's idle connections)."""
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(30)


def browser(playwright_api):
    """Debian's chromium, headless, driven by Playwright (which cannot download a browser of its own here)."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run installs it")
        pytest.skip("chromium not installed")
    return playwright_api.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])


def open_page(playwright_api, url: str, requests: list[str]):
    """(browser, page): the service's page in headless Chromium, ready, every request it makes recorded."""
    chromium = browser(playwright_api)
    page = chromium.new_page(viewport={"width": 1280, "height": 800})
    page.on("request", lambda r: requests.append(r.url))
    page.goto(url + "/")
    page.wait_for_selector("body[data-ready='1']", timeout=30_000)
    return chromium, page


@pytest.fixture(scope="session")
def launch():
    """`hashidx serve` as a user starts it (a real uvicorn on 127.0.0.1): .start(folder, *options) → (process, url),
    .stop(process), .browser(playwright) for a headless Chromium and .page(playwright, url, requests) for the page."""
    return SimpleNamespace(start=start, stop=stop, browser=browser, page=open_page)
