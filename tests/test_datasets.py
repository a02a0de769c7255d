"""Dataset discovery, list files, image decoding and the stratified split."""

import numpy as np
import pytest
from PIL import Image

from hashidx.datasets import load_dataset
from hashidx.errors import HashidxError
from hashidx.images import load_image
from hashidx.split import load_split, make_split, save_split


def _folder(tmp_path, classes=("a", "b"), per=5, ext="png"):
    for c in classes:
        (tmp_path / c).mkdir(parents=True)
        for i in range(per):
            Image.new("RGB", (20, 30), (i * 10, 0, 0)).save(tmp_path / c / f"{c}{i}.{ext}")
    return tmp_path


def test_class_folders(tmp_path):
    ds = load_dataset(_folder(tmp_path))
    assert ds.classes == ("a", "b") and len(ds) == 10 and ds.paths[0] == "a/a0.png"
    assert ds.labels.tolist() == [0] * 5 + [1] * 5


def test_list_file_relative_to_its_folder(tmp_path):
    _folder(tmp_path)
    (tmp_path / "list.tsv").write_text("# comment\na/a0.png\tcat\n\nb/b1.png\tdog\r\nb/b2.png\tcat\n")
    ds = load_dataset(tmp_path / "list.tsv")
    assert ds.classes == ("cat", "dog") and ds.labels.tolist() == [0, 1, 0]
    assert ds.absolute(1) == tmp_path / "b/b1.png"


@pytest.mark.parametrize("text, message", [
    ("a/a0.png\n", "expected 'path<TAB>label'"),
    ("a/a0.png\tx\na/a0.png\ty\n", "listed twice"),
    ("a/a0.png\tx\na/a1.png\tx\n", "only one class"),
])
def test_list_file_errors(tmp_path, text, message):
    (tmp_path / "l.tsv").write_text(text)
    with pytest.raises(HashidxError, match=message):
        load_dataset(tmp_path / "l.tsv")


def test_empty_class_folder_is_refused(tmp_path):
    _folder(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(HashidxError, match="empty: class folder has no"):
        load_dataset(tmp_path)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "I;16"])
def test_image_modes_become_rgb(tmp_path, mode):
    img = Image.new("RGB", (31, 17), (200, 100, 50)).convert(mode if mode != "I;16" else "L")
    if mode == "I;16":
        img = Image.fromarray((np.arange(31 * 17).reshape(17, 31) * 100).astype(np.uint16))
    path = tmp_path / "x.tif"
    img.save(path)
    arr = load_image(path, 24)
    assert arr.shape == (24, 24, 3) and arr.dtype == np.float32 and 0 <= arr.min() <= arr.max() <= 1


def test_corrupt_image_names_the_file(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(HashidxError, match="bad.jpg: cannot decode"):
        load_image(tmp_path / "bad.jpg", 8)


def test_split_is_stratified_seeded_and_round_trips(tmp_path):
    ds = load_dataset(_folder(tmp_path / "d", classes=("a", "b", "c"), per=10))
    s0, s0b, s1 = make_split(ds, 0.2, 0), make_split(ds, 0.2, 0), make_split(ds, 0.2, 1)
    assert s0 == s0b and s0 != s1
    assert len(s0.query) == 6 and len(s0.database) == 24
    assert sorted(p.split("/")[0] for p in s0.query) == ["a", "a", "b", "b", "c", "c"]
    assert not set(s0.query) & set(s0.database)
    save_split(s0, tmp_path / "split.json")
    assert load_split(tmp_path / "split.json") == s0
    q, d = s0.indices(ds)
    assert sorted(np.concatenate([q, d]).tolist()) == list(range(30))
