"""The run folder: what `train_run` writes, the training pool, and reproducible codes."""

import json

import numpy as np
import pytest

from hashidx.codes.codefile import CodeFile
from hashidx.data.split import load_split
from hashidx.errors import HashidxError
from hashidx.io.atomic import sha256_file
from hashidx.methods.runs import pool_positions, train_run


def test_pool_positions_count_fraction_or_all():
    assert pool_positions(10, None, 0).tolist() == list(range(10))
    assert len(pool_positions(10, 0.3, 0)) == 3 and len(pool_positions(10, 4, 0)) == 4
    assert pool_positions(10, 0.5, 1).tolist() == pool_positions(10, 0.5, 1).tolist()
    with pytest.raises(HashidxError, match="--train-pool 20"):
        pool_positions(10, 20, 0)


@pytest.mark.parametrize("method", ["ahcl", "itq"])
def test_run_folder_is_whole_and_reproducible(ucmd_features, tmp_path, method):
    record = train_run(ucmd_features, tmp_path / "a", method=method, bits=16, seed=0, train_pool=0.5)
    train_run(ucmd_features, tmp_path / "b", method=method, bits=16, seed=0, train_pool=0.5)
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == ["codes.h5", "model.pt", "split.json", "train.json"]
    a, b = CodeFile.load(tmp_path / "a" / "codes.h5"), CodeFile.load(tmp_path / "b" / "codes.h5")
    np.testing.assert_array_equal(a.codes, b.codes)
    split = load_split(tmp_path / "a" / "split.json")
    assert a.paths == split.database and a.attrs["model_sha256"] == sha256_file(tmp_path / "a" / "model.pt")
    assert record["pool_size"] == len(split.database) // 2 and record["n_codes"] == len(split.database)
    assert json.loads((tmp_path / "a" / "train.json").read_text())["method"] == method
