"""Multi-label annotations: the UC Merced table and the label-list layout, matching them to images, and the
iteratively stratified split, on the real annotations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hashidx.data.datasets import load_dataset
from hashidx.data.labels import label_names, read_label_table, relabel
from hashidx.data.split import make_split
from hashidx.errors import HashidxError

from ..conftest import require_ucmd

TABLE = (
    Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "UCMerced_LandUse" / "LandUse_Multilabeled.txt"
)


def test_reads_the_uc_merced_table():
    require_ucmd()
    table = read_label_table(TABLE)
    assert len(table.classes) == 17 and table.classes[0] == "airplane" and len(table.names) == 2100
    assert table.matrix.dtype == np.uint8 and set(np.unique(table.matrix)) == {0, 1}
    assert table.matrix.sum(axis=1).min() >= 1 and table.matrix.sum(axis=1).max() <= 7
    row = table.names.index("agricultural00")
    assert [table.classes[k] for k in np.flatnonzero(table.matrix[row])] == ["field", "trees"]


def test_relabel_matches_images_by_stem(ucmd_slice):
    ds = relabel(load_dataset(ucmd_slice), read_label_table(TABLE), TABLE)
    assert ds.labels.shape == (100, 17) and ds.classes[-1] == "water"
    first = ds.paths.index("agricultural/agricultural00.jpg")
    assert label_names(ds.labels[first : first + 1], ds.classes) == ["field,trees"]


def test_label_list_layout_and_matching_by_path(image_folder, tmp_path):
    ds = load_dataset(image_folder(tmp_path / "d", classes=("a", "b"), per=2))
    (tmp_path / "l.txt").write_text("a/a0.png\tsea,ship\na/a1\tsea\nb0\tland\n# comment\nb/b1.png\tland,sea\n")
    ml = relabel(ds, read_label_table(tmp_path / "l.txt"), tmp_path / "l.txt")
    assert ml.classes == ("land", "sea", "ship")
    assert ml.labels.tolist() == [[0, 1, 1], [0, 1, 0], [1, 0, 0], [1, 1, 0]]


@pytest.mark.parametrize(
    "text, message",
    [
        ("IMAGE\\LABEL\tx\ty\na0\t1\t2\n", r":2: expected an image name and 2 tab-separated 0/1 values"),
        ("IMAGE\\LABEL\tx\tx\na0\t1\t0\n", "must be distinct"),
        ("IMAGE\\LABEL\tx\ty\na0\t1\t0\na0\t0\t1\n", "'a0' has two rows"),
        ("a0.png\tx\n", "only 1 label"),
        ("", "no labels"),
    ],
)
def test_bad_label_tables_name_the_file_and_the_fix(tmp_path, text, message):
    (tmp_path / "l.txt").write_text(text)
    with pytest.raises(HashidxError, match=message):
        read_label_table(tmp_path / "l.txt")


def test_images_without_a_row_are_refused(image_folder, tmp_path):
    ds = load_dataset(image_folder(tmp_path / "d", classes=("a", "b"), per=2))
    (tmp_path / "l.txt").write_text("a0\tx\na1\tx,y\n")
    with pytest.raises(HashidxError, match=r"l.txt: no labels for 2 of the 4 images, e.g. 'b/b0.png'"):
        relabel(ds, read_label_table(tmp_path / "l.txt"), tmp_path / "l.txt")


def test_iterative_stratification_keeps_every_label_near_the_fraction():
    """On the real 2,100 annotations: each label's query share stays near 20%; seeded and reproducible."""
    root = require_ucmd()
    ds = relabel(load_dataset(root), read_label_table(TABLE), TABLE)
    split, again, other = make_split(ds, 0.2, 0), make_split(ds, 0.2, 0), make_split(ds, 0.2, 1)
    assert split == again and split != other
    query, _ = split.indices(ds)
    assert abs(len(query) / len(ds) - 0.2) < 0.01  # label demand first, so the total is near, not exact
    share = ds.labels[query].sum(axis=0) / ds.labels.sum(axis=0)
    assert np.abs(share - 0.2).max() < 0.03, share
