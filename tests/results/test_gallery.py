"""The --html gallery: verdicts from labels, safe embedding, and a real headless-browser render."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from hashidx.cli import main
from hashidx.results.gallery import COLOURS, gallery_data, write_gallery
from hashidx.results.query import Results


def _results(tmp_path: Path) -> Results:
    img = tmp_path / "scene.png"
    Image.fromarray(np.full((40, 60, 3), 90, np.uint8)).save(img)
    return Results(
        queries=["q/beach1.png", "</script><b>x"],
        distances=np.array([[0, 3, 5], [1, 2, 9]], np.int32),
        ids=np.array([[0, 1, -1], [2, 1, 0]], np.int64),
        paths={0: "beach/a.png", 1: "forest/b.png", 2: "gone.png"},
        labels={0: "beach", 1: "forest"},
        files={0: img, 1: img, 2: tmp_path / "gone.png"},
        query_files=[img, None],
        query_labels=["beach", None],
    )


def test_verdicts_follow_the_labels_and_empty_slots_are_dropped(tmp_path):
    data = gallery_data(_results(tmp_path), "t")
    first, second = data["queries"]
    assert [r["verdict"] for r in first["results"]] == ["match", "miss"]  # id -1 is no result
    assert [r["verdict"] for r in second["results"]] == ["unknown"] * 3  # query class unknown
    assert [r["distance"] for r in second["results"]] == [1, 2, 9]
    # One thumbnail per distinct readable file; the missing one gets none (a placeholder on the page).
    assert list(data["thumbs"]) == [str(tmp_path / "scene.png")]
    assert data["thumbs"][str(tmp_path / "scene.png")].startswith("data:image/jpeg;base64,")


def test_page_is_self_contained_and_names_cannot_break_out_of_the_script(tmp_path):
    out = tmp_path / "g.html"
    write_gallery(_results(tmp_path), out, "a <title>")
    page = out.read_text(encoding="utf-8")
    assert "</script><b>x" not in page and "<\\/script><b>x" in page
    assert "<title>a &lt;title&gt;</title>" in page
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)  # nothing fetched from outside
    data = json.loads(
        re.search(r'<script id="data" type="application/json">(.*?)</script>', page, re.S)
        .group(1)
        .replace("<\\/", "</")
    )
    assert data["queries"][1]["name"] == "</script><b>x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.html", "scene.png"]  # no temporary left behind


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: CI installs Debian's chromium for the gallery render test")
        pytest.skip("chromium not installed (apt-get install chromium)")
    return found


def _headless(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    # The closed network refuses Chromium's background connections: switch them off, as the machine notes say.
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=10000",
        "--window-size=1400,1200",
    ]
    return subprocess.run([browser, *flags, *args], capture_output=True, text=True, timeout=120, check=True)


def _pixels_of(png: Path, colour: str) -> int:
    rgb = np.asarray(Image.open(png).convert("RGB")).astype(int)
    want = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    return int((np.abs(rgb - want).sum(axis=2) <= 6).sum())


def test_gallery_of_a_uc_merced_query_renders_in_chromium(ucmd_features, ucmd_slice, tmp_path):
    browser = _chromium()
    run, index = tmp_path / "run", tmp_path / "db.faiss"
    runner = CliRunner()
    for args in (
        ["train", str(ucmd_features), "--bits", "32", "--iterations", "6", "-o", str(run)],
        ["build-index", str(run / "codes.h5"), "-o", str(index)],
    ):
        assert runner.invoke(main, ["--quiet", *args]).exit_code == 0
    split = json.loads((run / "split.json").read_text())
    # Real image paths inside class folders: the gallery knows each query's class from its folder.
    queries = tmp_path / "queries.txt"
    queries.write_text("".join(f"{ucmd_slice / p}\n" for p in split["query"]))
    gallery = tmp_path / "gallery.html"
    # k=20 is more than a class's 16 database images: every query must show red frames as well as green.
    result = runner.invoke(
        main,
        [
            "--quiet",
            "query",
            str(index),
            str(queries),
            "--model",
            str(run / "model.pt"),
            "-k",
            "20",
            "-o",
            str(tmp_path / "r.tsv"),
            "--html",
            str(gallery),
        ],
    )
    assert result.exit_code == 0, result.output

    dom = _headless(browser, tmp_path / "profile", "--dump-dom", gallery.as_uri()).stdout
    body = re.search(r"<body([^>]*)>", dom).group(1)
    attrs = dict(re.findall(r'data-(\w+)="([^"]*)"', body))
    assert attrs["page"] == "1"
    assert int(attrs["cells"]) == 10 * 21  # 10 queries a page, each with its 20 results
    assert int(attrs["loaded"]) == 10 * 21  # every thumbnail decoded by the browser
    assert dom.count('class="cell match"') + dom.count('class="cell miss"') == 10 * 20
    assert dom.count('class="cell miss"') >= 10 * 4
    assert 'class="cell unknown"' not in dom  # every class is known here
    assert "page 1 of 2" in dom

    shot = tmp_path / "gallery.png"
    _headless(browser, tmp_path / "profile", f"--screenshot={shot}", gallery.as_uri())
    # Frames are 5 px borders around 110 px thumbnails: each visible frame gives ~2,300 pixels of its colour.
    for verdict in ("query", "match", "miss"):
        assert _pixels_of(shot, COLOURS[verdict]) > 2000, verdict
    if os.environ.get("HASHIDX_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["HASHIDX_KEEP_SCREENSHOT"])
