"""Shared fixtures: a small real slice of UC Merced, and its features extracted once per session."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

# One ONNX graph cache for the whole session, CLI subprocesses included (they inherit the environment),
# never the user's ~/.cache.
_CACHE = tempfile.mkdtemp(prefix="hashidx-test-cache-")
os.environ["HASHIDX_CACHE_DIR"] = _CACHE


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_CACHE, ignore_errors=True)


UCMD = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "UCMerced_LandUse" / "Images"
SLICE_CLASSES = ("agricultural", "airplane", "beach", "forest", "harbor")


def require_ucmd() -> Path:
    """The real dataset; in CI its absence is a failure, elsewhere a skip."""
    if not UCMD.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{UCMD} is missing: CI must run the real-data tests with ../shared beside the checkout")
        pytest.skip(f"real data not found at {UCMD}")
    return UCMD


SHARED = UCMD.parents[1]


def require_shared(folder: Path) -> Path:
    """A folder of ../shared/datasets; in CI its absence is a failure, elsewhere a skip."""
    if not folder.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{folder} is missing: CI must run the real-data tests with ../shared beside the checkout")
        pytest.skip(f"real data not found at {folder}")
    return folder


@pytest.fixture(scope="session")
def scenes() -> Path:
    """The shared whole scenes: drone orthophoto, NAIP in three years, Sentinel-2 TCI, Landsat."""
    return require_shared(SHARED / "scenes")


@pytest.fixture(scope="session")
def eurosat() -> Path:
    """The 200 shared EuroSAT-MS Sentinel-2 chips (13 bands)."""
    return require_shared(SHARED / "EuroSAT_MS")


@pytest.fixture(scope="session")
def ucmd_slice(tmp_path_factory) -> Path:
    """5 classes x 20 real UC Merced images as a class-folder dataset (symlinks to the originals)."""
    root = require_ucmd()
    out = tmp_path_factory.mktemp("ucmd5")
    for cls in SLICE_CLASSES:
        (out / cls).mkdir()
        for img in sorted((root / cls).iterdir())[:20]:
            (out / cls / img.name).symlink_to(img)
    return out


@pytest.fixture(scope="session")
def ucmd_features(ucmd_slice, tmp_path_factory) -> Path:
    """The slice's EfficientNet-Lite0 features (real backbone, real images), cached for the session."""
    from hashidx.data.datasets import load_dataset
    from hashidx.features.extract import compute_features

    path = tmp_path_factory.mktemp("features") / "ucmd5.h5"
    compute_features(load_dataset(ucmd_slice), "efficientnet-lite0").save(path)
    return path


@pytest.fixture(scope="session")
def itq_index(ucmd_features, tmp_path_factory) -> Path:
    """The index of an ITQ run at 32 bits on the slice's features (RUN/ beside it): an archive nobody labelled."""
    from click.testing import CliRunner

    from hashidx.cli import main

    out = tmp_path_factory.mktemp("itq")
    for args in (
        ["train", ucmd_features, "--method", "itq", "--bits", "32", "-o", out / "run"],
        ["build-index", out / "run" / "codes.h5", "-o", out / "base.faiss"],
    ):
        result = CliRunner().invoke(main, ["--quiet", *map(str, args)])
        assert result.exit_code == 0, result.output
    return out / "base.faiss"
