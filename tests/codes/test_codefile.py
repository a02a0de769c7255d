"""The codes HDF5: round trip, and one clear error for other or damaged files."""

import numpy as np
import pytest

from hashidx.codes import CodeFile, pack, sign
from hashidx.errors import HashidxError


def test_code_file_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    codes = pack(sign(rng.normal(size=(6, 16))))
    cf = CodeFile(
        codes,
        np.arange(6),
        tuple(f"c/{i}.jpg" for i in range(6)),
        np.arange(6) % 2,
        16,
        "ahcl",
        {"model_sha256": "ab" * 32},
    )
    cf.save(tmp_path / "codes.h5")
    back = CodeFile.load(tmp_path / "codes.h5")
    np.testing.assert_array_equal(back.codes, codes)
    assert back.paths == cf.paths and back.bits == 16 and back.attrs["model_sha256"] == "ab" * 32
    assert not list(tmp_path.glob(".*tmp*")), "temporary file left behind"


def test_code_file_refuses_other_hdf5(tmp_path):
    import h5py

    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["codes"] = np.zeros((2, 2), np.uint8)
    with pytest.raises(HashidxError, match="not a hashidx codes file"):
        CodeFile.load(tmp_path / "x.h5")


def test_truncated_code_file_is_one_clear_error(tmp_path):
    rng = np.random.default_rng(0)
    CodeFile(
        pack(sign(rng.normal(size=(50, 32)))), np.arange(50), tuple(map(str, range(50))), np.zeros(50), 32, "ahcl"
    ).save(tmp_path / "codes.h5")
    data = (tmp_path / "codes.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(HashidxError, match="cut.h5: unreadable codes file"):
        CodeFile.load(tmp_path / "cut.h5")
