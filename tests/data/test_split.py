"""The stratified, seeded split and its JSON file."""

import numpy as np
import pytest

from hashidx.data.datasets import load_dataset
from hashidx.data.split import load_split, make_split, save_split
from hashidx.errors import HashidxError


def test_split_is_stratified_seeded_and_round_trips(image_folder, tmp_path):
    ds = load_dataset(image_folder(tmp_path / "d", classes=("a", "b", "c"), per=10))
    s0, s0b, s1 = make_split(ds, 0.2, 0), make_split(ds, 0.2, 0), make_split(ds, 0.2, 1)
    assert s0 == s0b and s0 != s1
    assert len(s0.query) == 6 and len(s0.database) == 24
    assert sorted(p.split("/")[0] for p in s0.query) == ["a", "a", "b", "b", "c", "c"]
    assert not set(s0.query) & set(s0.database)
    save_split(s0, tmp_path / "split.json")
    assert load_split(tmp_path / "split.json") == s0
    q, d = s0.indices(ds)
    assert sorted(np.concatenate([q, d]).tolist()) == list(range(30))


def test_folder_datasets_list_items_sorted_so_the_split_is_reproducible(image_folder, tmp_path):
    """make_split draws by position, so the listing order matters: load_dataset sorts it, whatever the disk says."""
    ds = load_dataset(image_folder(tmp_path / "d", classes=("b", "a"), per=10))
    assert list(ds.paths) == sorted(ds.paths) and ds.classes == ("a", "b")
    shuffled = ds.subset(np.random.default_rng(0).permutation(len(ds)))
    q = make_split(shuffled, 0.2, 3).query
    assert len(q) == 4 and sorted(p.split("/")[0] for p in q) == ["a", "a", "b", "b"]  # still stratified


@pytest.mark.parametrize("fraction", [0.0, 1.0, 1.5])
def test_split_refuses_fractions_outside_zero_one(image_folder, tmp_path, fraction):
    ds = load_dataset(image_folder(tmp_path / "d"))
    with pytest.raises(HashidxError, match="between 0 and 1"):
        make_split(ds, fraction)


def test_a_class_too_small_to_split_is_named(image_folder, tmp_path):
    ds = load_dataset(image_folder(tmp_path / "d", classes=("a", "b"), per=2))
    with pytest.raises(HashidxError, match="class 'a' has 2 image"):
        make_split(ds, 0.2)
