"""A small generated class-folder dataset for the data tests."""

from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image


def _folder(root: Path, classes: tuple[str, ...] = ("a", "b"), per: int = 5, ext: str = "png") -> Path:
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per):
            Image.new("RGB", (20, 30), (i * 10, 0, 0)).save(root / c / f"{c}{i}.{ext}")
    return root


@pytest.fixture
def image_folder() -> Callable[..., Path]:
    """make(root, classes=("a", "b"), per=5, ext="png"): class folders of small distinct images under root."""
    return _folder
