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


def test_a_tie_shell_larger_than_the_fetch_limit_keeps_the_lowest_ids(monkeypatch):
    """Learned codes clump: here 3,000 of 4,000 items share one code. The shell at the k-th distance comes from one
    range search (flat, IVF), and whatever path fetched it, the items kept are those with the lowest ids: the
    numpy ranking's prefix, also when the shell is cut at the fetch limit, and the widening path (HNSW, restricted
    searches) agrees with it."""
    rng = np.random.default_rng(5)
    db = _clustered_codes(4000, 32, seed=4)
    db[rng.choice(4000, 3000, replace=False)] = db[0]
    queries = np.concatenate([db[:1], _clustered_codes(6, 32, seed=6)])
    ref_d, ref_i = _reference(queries, db)
    flat, _ = idx.build(db, np.arange(len(db)), "flat")
    ivf, _ = idx.build(db, np.arange(len(db)), "ivf", nlist=8, nprobe=8)
    monkeypatch.setattr(idx, "TIE_FETCH_LIMIT", 1000)  # below the 3,000-item shell of the first query
    for index in (flat, ivf):
        d, i = idx.search(index, queries, 10)
        np.testing.assert_array_equal(i, ref_i[:, :10])
        np.testing.assert_array_equal(d, ref_d[:, :10])
        d, i = idx.search(index, queries, 10, whole_shell=True)
        shell = i[0][i[0] >= 0]
        assert len(shell) == 1000 and shell.tolist() == ref_i[0, :1000].tolist()  # cut at the limit, lowest ids
        assert (d[0][i[0] >= 0] == 0).all()
    monkeypatch.setattr(idx, "RANGE_ITEMS", 0)  # the widening path, as HNSW and restricted searches take it
    d, i = idx.search(flat, queries[1:], 10)
    np.testing.assert_array_equal(i, ref_i[1:, :10])


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
    assert isinstance(loaded, faiss.IndexBinaryIDMap) and loaded.ntotal == 200
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


def test_auto_builds_the_measured_choice_and_records_why(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from hashidx.cli import main
    from hashidx.index import auto

    db = _clustered_codes(400, 32)
    index, params = idx.build(db, np.arange(len(db)), "auto")
    assert params["index_type"] == "flat" and params["auto"]["measured_at"] == auto.TABLE[0].measured_at
    assert params["auto"]["extrapolated"] is False and params["auto"]["recall"] == auto.TABLE[0].recall
    # Past the first row's n the measured IVF setting is built; past the table's last row it says so.
    small = (
        auto.Measured(100, "flat", None, None, 100, 1.0, 1.0, 0.1),
        auto.Measured(300, "ivf", 4, 2, 300, 0.99, 0.98, 0.1),
    )
    monkeypatch.setattr(auto, "TABLE", small)
    index, params = idx.build(db, np.arange(len(db)), "auto")
    assert (params["index_type"], params["nlist"], params["nprobe"]) == ("ivf", 4, 2)
    assert params["auto"]["extrapolated"] is True
    d, _ = idx.search(index, db[:5], 1)
    assert (d[:, 0] == 0).all()
    codes = tmp_path / "codes.h5"
    names = tuple(f"x{i}.jpg" for i in range(len(db)))
    CodeFile(db, np.arange(len(db)), names, np.zeros(len(db), np.int64), 32, "ahcl", {}).save(codes)
    result = CliRunner().invoke(main, ["build-index", str(codes), "--type", "auto", "-o", str(tmp_path / "db.faiss")])
    assert result.exit_code == 0, result.output
    assert "ivf index" in result.output and "auto: recall@20 0.990 measured at 300 codes, extrapolated" in result.output
    sidecar = json.loads((tmp_path / "db.faiss.json").read_text())
    assert sidecar["auto"]["index_type"] == "ivf" and sidecar["nlist"] == 4
    info = CliRunner().invoke(main, ["info", str(tmp_path / "db.faiss")])
    assert "--type auto" in info.output
    bad = CliRunner().invoke(
        main, ["build-index", str(codes), "--type", "auto", "--nlist", "8", "-o", str(tmp_path / "x")]
    )
    assert bad.exit_code == 1 and "--type ivf" in bad.output and not (tmp_path / "x").exists()


def test_an_index_file_of_earlier_versions_still_loads(tmp_path):
    """Earlier versions wrote an IndexBinaryIDMap2 (an id-to-position hash map besides the ids); those files are
    read and searched as they were, while new files hold an IndexBinaryIDMap."""
    db = _clustered_codes(200, 32)
    names = tuple(f"x{i}.jpg" for i in range(len(db)))
    CodeFile(db, np.arange(len(db)) * 3, names, np.zeros(len(db), np.int64), 32, "ahcl", {}).save(tmp_path / "c.h5")
    old = faiss.IndexBinaryIDMap2(faiss.IndexBinaryFlat(32))
    old.add_with_ids(db, np.arange(len(db), dtype=np.int64) * 3)
    idx.save(old, tmp_path / "old.faiss", {"index_type": "flat", "bits": 32, "count": len(db)}, tmp_path / "c.h5", {})
    loaded, _ = idx.load(tmp_path / "old.faiss")
    assert isinstance(loaded, faiss.IndexBinaryIDMap2)
    new, _ = idx.build(db, np.arange(len(db)) * 3, "flat")
    assert type(new) is faiss.IndexBinaryIDMap
    for index in (loaded, new):
        d, i = idx.search(index, db[:7], 5)
        ref_d, ref_i = _reference(db[:7], db)
        np.testing.assert_array_equal(i, ref_i[:, :5] * 3)
        np.testing.assert_array_equal(d, ref_d[:, :5])
