"""Image decoding to RGB float arrays, and one clear error for what cannot be decoded."""

import numpy as np
import pytest
from PIL import Image

from hashidx.data.images import load_image
from hashidx.data.rasters import Radiometry
from hashidx.errors import HashidxError


@pytest.mark.parametrize("mode", ["L", "P", "RGBA"])
def test_image_modes_become_rgb(tmp_path, mode):
    img = Image.new("RGB", (31, 17), (200, 100, 50)).convert(mode)
    path = tmp_path / "x.tif"
    img.save(path)
    arr = load_image(path, 24)
    assert arr.shape == (24, 24, 3) and arr.dtype == np.float32 and 0 <= arr.min() <= arr.max() <= 1


def test_16_bit_image_takes_the_dataset_scaling_not_its_own_range(tmp_path):
    """The same pixel value reads the same in every image: no per-image min/max stretch."""
    for name, top in (("a.png", 1000), ("b.png", 4000)):
        a = np.full((17, 31), 500, np.uint16)
        a[0, 0] = top
        Image.fromarray(a).save(tmp_path / name)
    with pytest.raises(
        HashidxError, match="a.png: uint16 pixels, but the scaling recorded with these bands is for 8-bit images"
    ):
        load_image(tmp_path / "a.png", 24)
    scaling = Radiometry((), ((0.0, 1000.0),) * 3, "given")
    a, b = (load_image(tmp_path / n, 24, scaling) for n in ("a.png", "b.png"))
    assert a.shape == (24, 24, 3) and np.allclose(a[12, 12], 0.5) and np.allclose(b[12, 12], 0.5)


def test_corrupt_image_names_the_file(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(HashidxError, match="bad.jpg: cannot decode"):
        load_image(tmp_path / "bad.jpg", 8)


def test_real_off_size_image_is_resized_and_scaled(ucmd_slice):
    """UC Merced has off-size images (e.g. 247 px); every image comes out at the asked size in [0, 1]."""
    path = sorted((ucmd_slice / "harbor").iterdir())[0]
    with Image.open(path) as img:
        want = np.asarray(img.convert("RGB").resize((224, 224), Image.BILINEAR), dtype=np.float32) / 255
    arr = load_image(path, 224)
    assert arr.shape == (224, 224, 3)
    np.testing.assert_allclose(arr, want, atol=1 / 255)


def test_zero_byte_image_is_named(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(HashidxError, match="empty.png: empty file"):
        load_image(tmp_path / "empty.png", 8)
