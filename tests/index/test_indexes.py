"""FAISS flat / IVF / HNSW against the numpy Hamming reference, and the index file + sidecar."""

import json
import shutil

import faiss
import numpy as np
import pytest

from hashidx.codes.binary import hamming, pack, sign
from hashidx.codes.codefile import CodeFile
from hashidx.errors import HashidxError
from hashidx.evaluation.metrics import rank
from hashidx.index import indexes as idx


def _clustered_codes(n=400, bits=32, seed=0):
    """Codes around a few centres, so there are many ties and many distinct distances."""
    rng = np.random.default_rng(seed)
    centres = sign(rng.normal(size=(8, bits)))
    v = centres[rng.integers(0, 8, n)].copy()
    flips = rng.random((n, bits)) < 0.1
    v[flips] *= -1
    return pack(v)


def _reference(queries, db):
    dist = hamming(queries, db)
    order = rank(dist)
    return np.take_along_axis(dist, order, 1), order


@pytest.mark.parametrize("bits", [16, 64])
def test_flat_and_ivf_give_the_numpy_ranking(bits):
    db = _clustered_codes(400, bits)
    queries = _clustered_codes(25, bits, seed=1)
    ref_d, ref_i = _reference(queries, db)
    ids = np.arange(len(db))
    flat, _ = idx.build(db, ids, "flat")
    nlist = 10
    ivf, params = idx.build(db, ids, "ivf", nlist=nlist, nprobe=nlist)
    assert params["nprobe"] == nlist
    for index in (flat, ivf):
        d, i = idx.search(index, queries, len(db))  # the full ranking
        np.testing.assert_array_equal(d, ref_d)
        np.testing.assert_array_equal(i, ref_i)
    # A cut ranking from the flat index is the numpy prefix, ties included (counting search is stable).
    d, i = idx.search(flat, queries, 20)
    np.testing.assert_array_equal(i, ref_i[:, :20])


def test_a_restricted_search_is_the_full_ranking_without_the_others():
    """`allowed` ids: the flat index's ID selector and IVF's wider fetch both give the unrestricted order with the
    other items left out, ties (by id) included."""
    db = _clustered_codes(400, 32)
    queries = _clustered_codes(25, 32, seed=2)
    ref_d, ref_i = _reference(queries, db)
    allowed = np.flatnonzero(np.random.default_rng(3).random(len(db)) < 0.3)
    keep = np.isin(ref_i, allowed)
    want_i = np.stack([row[k][:15] for row, k in zip(ref_i, keep)])
    want_d = np.stack([row[k][:15] for row, k in zip(ref_d, keep)])
    flat, _ = idx.build(db, np.arange(len(db)), "flat")
    ivf, _ = idx.build(db, np.arange(len(db)), "ivf", nlist=10, nprobe=10)
    for index in (flat, ivf):
        d, i = idx.search(index, queries, 15, allowed=allowed)
        np.testing.assert_array_equal(i, want_i)
        np.testing.assert_array_equal(d, want_d)


def test_hnsw_finds_exact_neighbours_on_small_sets():
    db = _clustered_codes(300, 32)
    queries = db[:10]
    hnsw, params = idx.build(db, np.arange(300), "hnsw")
    d, i = idx.search(hnsw, queries, 1)
    assert (d[:, 0] == 0).all() and params["M"] == 32


def test_ids_survive_the_id_map():
    db = _clustered_codes(50, 16)
    ids = np.arange(1000, 1050)
    index, _ = idx.build(db, ids, "flat")
    _, got = idx.search(index, db[:3], 1)
    assert set(got[:, 0]) <= set(ids)


def test_save_load_with_sidecar(tmp_path):
    db = _clustered_codes(200, 32)
    CodeFile(
        db,
        np.arange(200),
        tuple(f"{i}.jpg" for i in range(200)),
        np.zeros(200, np.int64),
        32,
        "ahcl",
        {"model_sha256": "0" * 64},
    ).save(tmp_path / "codes.h5")
    params = idx.build_file(tmp_path / "codes.h5", tmp_path / "db.index", "ivf")
    assert params["nlist"] == idx.default_nlist(200) and params["nprobe"] == idx.default_nprobe(params["nlist"])
    loaded, sidecar = idx.load(tmp_path / "db.index")
    assert isinstance(loaded, faiss.IndexBinaryIDMap2) and loaded.ntotal == 200
    assert sidecar["codes_file"] == "codes.h5" and sidecar["model_sha256"] == "0" * 64
    assert sidecar["index_type"] == "ivf" and json.loads((tmp_path / "db.index.json").read_text())["count"] == 200
    idx.set_nprobe(loaded, 3)
    assert faiss.downcast_IndexBinary(loaded.index).nprobe == 3


def test_load_refuses_non_index(tmp_path):
    (tmp_path / "bad.index").write_bytes(b"not faiss")
    (tmp_path / "bad.index.json").write_text(json.dumps({"bits": 32, "count": 3}))
    with pytest.raises(HashidxError, match="not a FAISS binary index"):
        idx.load(tmp_path / "bad.index")
    (tmp_path / "bad.index.json").write_text(json.dumps({"bits": 32}))
    with pytest.raises(HashidxError, match="sidecar lacks an integer 'bits' or 'count'"):
        idx.load(tmp_path / "bad.index")


def test_a_header_that_disagrees_with_the_sidecar_is_refused_before_faiss_reads_it(tmp_path):
    """A damaged count in a flat index (sidecar sha rewritten to match) would have FAISS allocate it."""
    import hashlib
    import struct

    codes = np.random.default_rng(0).integers(0, 256, (50, 4), dtype=np.uint8)
    index, params = idx.build(codes, np.arange(50), "flat")
    from hashidx.codes.codefile import CodeFile

    CodeFile(codes, np.arange(50), tuple(map(str, range(50))), np.zeros(50, np.int64), 32, "ahcl", {}).save(
        tmp_path / "c.h5"
    )
    idx.save(index, tmp_path / "db.faiss", params, tmp_path / "c.h5", {})
    data = bytearray((tmp_path / "db.faiss").read_bytes())
    struct.pack_into("<Q", data, 50, 1 << 40)  # the code vector claims a terabyte
    (tmp_path / "db.faiss").write_bytes(bytes(data))
    side = json.loads((tmp_path / "db.faiss.json").read_text())
    side["index_sha256"] = hashlib.sha256(bytes(data)).hexdigest()
    (tmp_path / "db.faiss.json").write_text(json.dumps(side))
    with pytest.raises(HashidxError, match="not a FAISS binary index matching its sidecar"):
        idx.load(tmp_path / "db.faiss")


def test_default_nlist_respects_faiss_training_floor():
    assert idx.default_nlist(100) == 2
    assert idx.default_nlist(1_000_000) == 1000
    assert idx.default_nlist(10) == 1


def _tiny_codes(path):
    codes = np.random.default_rng(0).integers(0, 256, (12, 4), dtype=np.uint8)
    CodeFile(codes, np.arange(12), tuple(f"x{i}.jpg" for i in range(12)), np.zeros(12, np.int64), 32, "itq", {}).save(
        path
    )


def test_an_index_copied_alone_or_moved_with_its_codes_still_finds_them(tmp_path):
    (tmp_path / "run").mkdir()
    _tiny_codes(tmp_path / "run" / "codes.h5")
    idx.build_file(tmp_path / "run" / "codes.h5", tmp_path / "db.faiss")
    (tmp_path / "elsewhere").mkdir()
    for name in ("db.faiss", "db.faiss.json"):
        shutil.copy(tmp_path / name, tmp_path / "elsewhere" / name)
    alone = tmp_path / "elsewhere" / "db.faiss"  # the codes are still where they were built
    assert idx.code_files_of(alone, idx.load_sidecar(alone)) == [(tmp_path / "run" / "codes.h5").resolve()]
    together = tmp_path / "together"
    (together / "run").mkdir(parents=True)
    for name in ("db.faiss", "db.faiss.json", "run/codes.h5"):
        shutil.move(tmp_path / name, together / name)  # both moved: the relative path finds the codes
    assert idx.code_files_of(together / "db.faiss", idx.load_sidecar(together / "db.faiss")) == [
        (together / "run" / "codes.h5").resolve()
    ]
    with pytest.raises(HashidxError, match=r"db.faiss: the codes file it was built from, run/codes.h5 .* not there"):
        idx.code_files_of(alone, idx.load_sidecar(alone))  # neither beside it nor where it was
