"""The service's test archive, built once per session: a run on the UC Merced slice, its flat index, the drone
orthophoto's 224 px chips and NAIP 2019's 128 px chips added to it."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from hashidx.cli import main

TOKEN = "a-test-token-of-some-length"


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
