"""sgn(0)=+1, packing round trips, and Hamming distance against a bit-by-bit count."""

import numpy as np
import pytest

from hashidx.codes import CodeFile, hamming, pack, sign, unpack
from hashidx.errors import HashidxError


def test_sign_maps_zero_to_plus_one():
    np.testing.assert_array_equal(sign(np.array([-0.5, 0.0, -0.0, 1e-9, 3.0])), [-1, 1, 1, 1, 1])
    assert sign(np.zeros(3)).dtype == np.int8


@pytest.mark.parametrize("bits", [8, 16, 24, 64])
def test_pack_round_trip_and_bit_meaning(bits):
    rng = np.random.default_rng(bits)
    v = sign(rng.normal(size=(20, bits)))
    packed = pack(v)
    assert packed.dtype == np.uint8 and packed.shape == (20, bits // 8)
    np.testing.assert_array_equal(unpack(packed, bits), v)
    # bit = 1 for +1: the all-plus code packs to 0xFF bytes
    assert (pack(np.ones((1, bits))) == 255).all()


def test_pack_refuses_bad_length():
    with pytest.raises(ValueError):
        pack(np.ones((2, 12)))


def test_hamming_equals_count_of_differing_bits():
    rng = np.random.default_rng(0)
    a, b = sign(rng.normal(size=(5, 32))), sign(rng.normal(size=(9, 32)))
    ref = (a[:, None, :] != b[None, :, :]).sum(axis=2)
    np.testing.assert_array_equal(hamming(pack(a), pack(b)), ref)


def test_code_file_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    codes = pack(sign(rng.normal(size=(6, 16))))
    cf = CodeFile(codes, np.arange(6), tuple(f"c/{i}.jpg" for i in range(6)), np.arange(6) % 2, 16, "ahcl",
                  {"model_sha256": "ab" * 32})
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
    CodeFile(pack(sign(rng.normal(size=(50, 32)))), np.arange(50), tuple(map(str, range(50))), np.zeros(50), 32,
             "ahcl").save(tmp_path / "codes.h5")
    data = (tmp_path / "codes.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(HashidxError, match="cut.h5: unreadable codes file"):
        CodeFile.load(tmp_path / "cut.h5")
