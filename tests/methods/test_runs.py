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


def test_a_run_says_whether_its_codes_settled(ucmd_features, tmp_path):
    """train.json records the (label set, code) groups at the end against the label sets; `info` and the train
    command say when they did not settle."""
    from click.testing import CliRunner

    from hashidx.cli import main
    from hashidx.methods.ahcl import settling

    rec = train_run(ucmd_features, tmp_path / "run", bits=16, seed=0)
    settle = rec["settling"]
    assert settle["label_sets"] == 5 and settle["code_groups"] >= 5
    codes = CodeFile.load(tmp_path / "run" / "codes.h5")
    pairs = {(int(label), bytes(code)) for label, code in zip(codes.labels, codes.codes)}
    assert settle["code_groups"] == len(pairs)  # the final codes' groups, counted from the file
    assert settle["settled"] is (len(pairs) <= 6)
    assert json.loads((tmp_path / "run" / "train.json").read_text())["settling"] == settle
    info = CliRunner().invoke(main, ["info", str(tmp_path / "run" / "train.json")])
    assert f"{settle['code_groups']} for 5 label sets" in info.output and "per iteration" in info.output
    assert settling(30, 30, 1000)["settled"] and not settling(174, 30, 1000)["settled"]
    assert settling(21, 21, 21)["settled"] is None  # every item its own label set: nothing to judge
    one = CliRunner().invoke(
        main, ["train", str(ucmd_features), "--bits", "64", "--iterations", "1", "-o", str(tmp_path / "short")]
    )
    assert one.exit_code == 0 and "the codes did not settle" in one.output and "--iterations" in one.output
    labelled = CliRunner().invoke(
        main,
        ["--quiet", "train", str(ucmd_features), "--bits", "16", "--code-init", "label", "-o", str(tmp_path / "l")],
    )
    assert labelled.exit_code == 0, labelled.output
    assert json.loads((tmp_path / "l" / "train.json").read_text())["config"]["code_init"] == "label"
