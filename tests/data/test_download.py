"""Dataset downloads against a real HTTP server on loopback: resume, checksum, unpacking to class folders."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
import zipfile
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from hashidx.cli import main
from hashidx.data.datasets import load_dataset
from hashidx.data.download import CATALOGUE, Source, download
from hashidx.errors import HashidxError


def _archive() -> bytes:
    """A zip laid out like the published ones: a top folder, an Images folder, class folders, stray files."""
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("Scenes/readme.txt", "not an image")
        for cls in ("beach", "forest", "river"):
            for i in range(4):
                img = io.BytesIO()
                Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(img, "PNG")
                zf.writestr(f"Scenes/Images/{cls}/{cls}{i:02d}.png", img.getvalue())
    return buf.getvalue()


class _Server:
    """Serves one archive; honours Range; can drop the connection after `cut` bytes of the first reply."""

    def __init__(self, payload: bytes, cut: int | None = None):
        self.payload, self.cut, self.ranges = payload, cut, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                rng = self.headers.get("Range")
                outer.ranges.append(rng)
                start = int(rng.split("=")[1].rstrip("-")) if rng else 0
                body = outer.payload[start:]
                self.send_response(206 if rng else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.cut is not None:
                    body, outer.cut = body[: outer.cut], None  # promise everything, send part, hang up
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/scenes.zip"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served():
    payload = _archive()
    servers = []

    def start(cut=None):
        servers.append(_Server(payload, cut))
        return servers[-1]

    yield payload, start
    for s in servers:
        s.close()


def _source(payload: bytes, url: str) -> Source:
    return Source(
        "scenes",
        "test scenes",
        3,
        12,
        "32 px",
        "http://127.0.0.1/",
        "scenes.zip",
        url=url,
        md5=hashlib.md5(payload).hexdigest(),
    )


def test_download_unpacks_class_folders_and_removes_the_archive(served, tmp_path):
    payload, start = served
    server = start()
    folder = download(_source(payload, server.url), tmp_path)
    assert folder == tmp_path / "scenes"
    ds = load_dataset(folder)
    assert ds.classes == ("beach", "forest", "river") and len(ds) == 12
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scenes"]  # no archive, no .part, no unpacking folder
    assert download(_source(payload, server.url), tmp_path) == folder  # already there: no second request
    assert server.ranges == [None]


def test_an_interrupted_download_continues_with_a_range_request(served, tmp_path):
    payload, start = served
    server = start(cut=len(payload) // 3)
    src = _source(payload, server.url)
    with pytest.raises(HashidxError, match="rerun the same command to continue"):
        download(src, tmp_path)
    part = tmp_path / "scenes.zip.part"
    assert part.stat().st_size == len(payload) // 3
    assert not (tmp_path / "scenes").exists()
    download(src, tmp_path, keep_archive=True)
    assert server.ranges == [None, f"bytes={len(payload) // 3}-"]
    assert (tmp_path / "scenes.zip").read_bytes() == payload
    assert len(load_dataset(tmp_path / "scenes")) == 12


def test_a_wrong_checksum_is_refused_and_nothing_is_left(served, tmp_path):
    payload, start = served
    server = start()
    src = replace(_source(payload, server.url), md5="0" * 32)
    with pytest.raises(HashidxError, match="MD5 .* but scenes is 0{32}; the download was removed"):
        download(src, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_cli_mirror_is_still_checked_against_the_catalogue(served, tmp_path):
    payload, start = served
    server = start()
    # The loopback archive is not UC Merced: the catalogue's MD5 must refuse it, in one line.
    result = CliRunner().invoke(
        main, ["--quiet", "datasets", "download", "ucmerced", "--root", str(tmp_path), "--url", server.url]
    )
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "error:" in result.output and CATALOGUE["ucmerced"].md5 in result.output
    assert list(tmp_path.iterdir()) == []


def test_cli_archive_downloaded_by_hand_and_sources_without_a_direct_link(served, tmp_path):
    payload, _ = served
    runner = CliRunner()
    result = runner.invoke(main, ["datasets", "download", "aid", "--root", str(tmp_path)])
    assert result.exit_code == 1 and "no direct download" in result.output and "--archive" in result.output
    archive = tmp_path / "AID.zip"
    archive.write_bytes(payload)  # AID has no published checksum: any archive of class folders unpacks
    result = runner.invoke(
        main, ["datasets", "download", "aid", "--root", str(tmp_path / "data"), "--archive", str(archive)]
    )
    assert result.exit_code == 0, result.output
    assert "12 images in 3 classes" in result.output
    assert archive.is_file()  # the user's own file is never deleted


def test_cli_list_names_every_catalogued_dataset():
    result = CliRunner().invoke(main, ["datasets", "list"])
    assert result.exit_code == 0
    for name in ("ucmerced", "whu-rs19", "aid", "nwpu-resisc45", "patternnet", "eurosat"):
        assert name in result.output


def test_archive_members_outside_the_target_are_refused(tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../outside.txt", "x")
    src = Source("evil", "evil", 1, 1, "", "", "evil.zip")
    with pytest.raises(HashidxError, match="outside"):
        download(src, tmp_path / "root", archive=evil)
    assert not (tmp_path / "outside.txt").exists()
    assert not (tmp_path / "root" / "evil").exists()
