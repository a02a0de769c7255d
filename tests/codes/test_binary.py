"""sgn(0)=+1, packing round trips, and Hamming distance against a bit-by-bit count."""

import numpy as np
import pytest

from hashidx.codes import hamming, pack, sign, unpack


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
