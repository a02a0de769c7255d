"""Batch queries: codes, features and image lists give the same ranked results, ties by id, re-ranked by uᵀv
where the queries pass the network; a codes query never imports torch."""

import json
import subprocess
import sys

import numpy as np
import pytest

from hashidx.codes.binary import hamming, pack, sign
from hashidx.codes.codefile import CodeFile
from hashidx.errors import HashidxError
from hashidx.evaluation.metrics import asymmetric_scores
from hashidx.features.cache import FeatureCache
from hashidx.index.indexes import build, build_file, search
from hashidx.methods.checkpoints import load_checkpoint, load_model, save_checkpoint
from hashidx.methods.encoder import Encoder
from hashidx.methods.runs import train_run
from hashidx.results.query import run_query, write_results


@pytest.fixture(scope="module")
def indexed(ucmd_features, tmp_path_factory):
    out = tmp_path_factory.mktemp("query")
    train_run(ucmd_features, out / "run", bits=16, seed=0)
    build_file(out / "run" / "codes.h5", out / "db.faiss")
    return out


def test_codes_query_ranks_by_distance_then_id(indexed):
    res = run_query(indexed / "db.faiss", indexed / "run" / "codes.h5", k=10)
    db = CodeFile.load(indexed / "run" / "codes.h5")
    assert res.queries == list(db.paths) and res.ids.shape == (len(db.paths), 10)
    for d, i in zip(res.distances.tolist(), res.ids.tolist()):
        assert list(zip(d, i)) == sorted(zip(d, i))
    assert (res.distances[:, 0] == 0).all()
    assert res.paths[int(res.ids[0, 0])] in db.paths


def test_feature_and_image_queries_agree(indexed, ucmd_features, ucmd_slice, tmp_path):
    model = indexed / "run" / "model.pt"
    by_features = run_query(indexed / "db.faiss", ucmd_features, model, k=5)
    names = sorted(p.name for p in (ucmd_slice / "forest").iterdir())[:3]
    (tmp_path / "q.txt").write_text("".join(f"{ucmd_slice / 'forest' / n}\n" for n in names))
    by_images = run_query(indexed / "db.faiss", tmp_path / "q.txt", model, k=5)
    rows = [by_features.queries.index(f"forest/{n}") for n in names]
    assert (by_images.distances == by_features.distances[rows]).mean() > 0.9
    assert by_images.query_labels == ["forest"] * 3  # the class is known from the folder name


def test_results_files_tsv_and_jsonl(indexed, tmp_path):
    res = run_query(indexed / "db.faiss", indexed / "run" / "codes.h5", k=3)
    write_results(res, tmp_path / "r.tsv")
    write_results(res, tmp_path / "r.jsonl", "jsonl")
    tsv = (tmp_path / "r.tsv").read_text().splitlines()
    jsonl = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert tsv[0] == "query\trank\tid\tpath\tdistance\tscore\tlon\tlat\tdatetime" and len(tsv) == 1 + len(
        jsonl
    ) == 1 + 3 * len(res.queries)
    first = tsv[1].split("\t")
    assert first == [
        jsonl[0]["query"],
        str(jsonl[0]["rank"]),
        str(jsonl[0]["id"]),
        jsonl[0]["path"],
        str(jsonl[0]["distance"]),
        "",  # codes queries have no network outputs: not re-ranked, no score
        "",  # UC Merced JPEGs are not georeferenced: no lon/lat
        "",
        "",  # nor dated
    ]
    assert jsonl[0]["score"] is None and res.rerank == "none"


def _brute_force(db_codes, q_codes, k):
    dist = hamming(q_codes, db_codes)
    order = np.lexsort((np.broadcast_to(np.arange(dist.shape[1]), dist.shape), dist), axis=1)[:, :k]
    return np.take_along_axis(dist, order, 1), order


@pytest.mark.parametrize("index_type", ["flat", "ivf", "hnsw"])
def test_ties_come_out_by_id_whatever_the_insertion_order(indexed, tmp_path, index_type):
    """The learned codes tie by the dozen; the k kept from the k-th distance's shell are the lowest ids."""
    db = CodeFile.load(indexed / "run" / "codes.h5")
    perm = np.random.default_rng(0).permutation(len(db.ids))
    index, _ = build(db.codes[perm], db.ids[perm], index_type, nlist=2, nprobe=2)
    dist, ids = search(index, db.codes, 7)
    want_d, want_i = _brute_force(db.codes, db.codes, 7)
    assert (dist == want_d).all() and (ids == want_i).all()
    wide_d, wide_i = search(index, db.codes, 7, whole_shell=True)
    shell = hamming(db.codes, db.codes) <= want_d[:, -1:]
    assert ((wide_i >= 0).sum(axis=1) == shell.sum(axis=1)).all()  # the whole shell at the 7th distance


def test_feature_queries_are_reranked_by_the_asymmetric_score(indexed, ucmd_features):
    """With --rerank K′ the top k are the K′-shell's candidates by uᵀv; with ties, uᵀv orders equal distances."""
    head, config = load_checkpoint(indexed / "run" / "model.pt")
    cache = FeatureCache.load(ucmd_features)
    u = Encoder(head, config).embed_features(cache.features)
    db = CodeFile.load(indexed / "run" / "codes.h5")
    dist = hamming(pack(sign(u)), db.codes)
    scores = asymmetric_scores(u, db.codes)
    ids = np.broadcast_to(np.arange(len(db.ids)), dist.shape)
    for mode in ("ties", 30):
        res = run_query(indexed / "db.faiss", ucmd_features, indexed / "run" / "model.pt", k=5, rerank=mode)
        if mode == "ties":
            want = np.lexsort((ids, -scores, dist), axis=1)[:, :5]
        else:
            radius = np.sort(dist, axis=1)[:, 29:30]
            want = np.lexsort((ids, np.where(dist <= radius, -scores, np.inf)), axis=1)[:, :5]
        assert (res.ids == want).all() and res.rerank == mode
        np.testing.assert_allclose(res.scores, np.take_along_axis(scores, want, 1), atol=1e-5)
        assert (res.distances == np.take_along_axis(dist, want, 1)).all()  # the distance column stays Hamming


def test_features_rerank_orders_each_code_by_content(indexed, ucmd_features):
    """--rerank features: the K′ (400) nearest by uᵀv, and items of one code (equal uᵀv) by the cosine of their
    content vectors, which the run stored for every database image; the class order stays that of uᵀv."""
    head, config, content = load_model(indexed / "run" / "model.pt")
    assert content is not None
    cache = FeatureCache.load(ucmd_features)
    encoder = Encoder(head, config, content=content)
    u, qc = encoder.embed_features(cache.features), encoder.content_of(cache.features)
    db = CodeFile.load(indexed / "run" / "codes.h5")
    assert db.content is not None and db.content.shape == (len(db.ids), content.dims)
    scores = asymmetric_scores(u, db.codes)
    sim = qc.astype(np.float32) @ db.content.astype(np.float32).T
    ids = np.broadcast_to(np.arange(len(db.ids)), scores.shape)
    want = np.lexsort((ids, -sim, -scores), axis=1)[:, :5]  # 80 items: all within K′
    res = run_query(indexed / "db.faiss", ucmd_features, indexed / "run" / "model.pt", k=5, rerank="features")
    assert (res.ids == want).all() and res.rerank == "features"
    np.testing.assert_allclose(res.scores, np.take_along_axis(scores, want, 1), atol=1e-5)
    # A database image asked as a query now comes first among the items of its code, not at its id's place.
    ties = run_query(indexed / "db.faiss", ucmd_features, indexed / "run" / "model.pt", k=5, rerank=400)
    own = np.asarray([db.paths.index(q) if q in db.paths else -1 for q in res.queries])
    mine = own >= 0
    assert (res.ids[mine, 0] == own[mine]).mean() > max(0.8, (ties.ids[mine, 0] == own[mine]).mean())


def test_features_rerank_needs_content_vectors(indexed, ucmd_features, tmp_path):
    """An index whose codes file holds no content vectors (written before them) refuses --rerank features in one
    line that names the file; so does a model without a projection."""
    db = CodeFile.load(indexed / "run" / "codes.h5")
    db.content = None
    db.save(tmp_path / "codes.h5")
    build_file(tmp_path / "codes.h5", tmp_path / "old.faiss")
    model = indexed / "run" / "model.pt"
    with pytest.raises(HashidxError, match=r"codes.h5: holds no content vectors for --rerank features"):
        run_query(tmp_path / "old.faiss", ucmd_features, model, k=3, rerank="features", allow_model_mismatch=True)
    head, config, _ = load_model(model)
    save_checkpoint(tmp_path / "model.pt", head, config)
    with pytest.raises(HashidxError, match="this model has none"):
        run_query(
            indexed / "db.faiss",
            ucmd_features,
            tmp_path / "model.pt",
            k=3,
            rerank="features",
            allow_model_mismatch=True,
        )


def test_a_codes_query_cannot_be_reranked(indexed):
    with pytest.raises(HashidxError, match="--rerank needs the queries' network outputs"):
        run_query(indexed / "db.faiss", indexed / "run" / "codes.h5", k=3, rerank="ties")


def test_a_codes_query_never_imports_torch(indexed, tmp_path):
    script = (
        f"import sys\nfrom hashidx.results.query import run_query\n"
        f"run_query({str(indexed / 'db.faiss')!r}, {str(indexed / 'run' / 'codes.h5')!r}, k=2)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "hashidx",
            "--quiet",
            "query",
            str(indexed / "db.faiss"),
            str(indexed / "run" / "codes.h5"),
            "-k",
            "2",
            "-o",
            str(tmp_path / "r.tsv"),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert np.loadtxt(tmp_path / "r.tsv", dtype=str, delimiter="\t", skiprows=1).shape[1] == 9


def test_a_big_codes_query_file_streams_in_blocks_to_the_same_rows(indexed, tmp_path):
    from hashidx.results.query import QUERY_BATCH, Searcher, query_to_file

    db = CodeFile.load(indexed / "run" / "codes.h5")
    n = 2 * QUERY_BATCH + 17
    rng = np.random.default_rng(0)
    rows = rng.integers(0, len(db.codes), n)
    big = CodeFile(
        db.codes[rows], np.arange(n), tuple(f"q{i}" for i in range(n)), db.labels[rows], db.bits, db.method, db.attrs
    )
    big.save(tmp_path / "q.h5")
    searcher = Searcher(indexed / "db.faiss")
    assert [len(b.names) for b in searcher.encode_blocks(tmp_path / "q.h5")] == [QUERY_BATCH, QUERY_BATCH, 17]
    totals = query_to_file(searcher, tmp_path / "q.h5", tmp_path / "streamed.tsv", k=3)
    assert (totals.queries, totals.results) == (n, 3 * n) and totals.kept == []
    write_results(run_query(indexed / "db.faiss", tmp_path / "q.h5", k=3), tmp_path / "whole.tsv")
    assert (tmp_path / "streamed.tsv").read_bytes() == (tmp_path / "whole.tsv").read_bytes()


def test_a_runs_split_queries_its_query_images(indexed, ucmd_slice, tmp_path):
    """`query INDEX RUN/split.json`: the split's query images, from the folder the run was trained on, answer as
    the same images listed one a line do."""
    import shutil

    from hashidx.data.split import load_split

    split = load_split(indexed / "run" / "split.json")
    assert split.image_root == str(ucmd_slice.resolve()) and len(split.query) == 20
    model = indexed / "run" / "model.pt"
    by_split = run_query(indexed / "db.faiss", indexed / "run" / "split.json", model, k=4)
    (tmp_path / "q.txt").write_text("".join(f"{ucmd_slice / p}\n" for p in split.query))
    listed = run_query(indexed / "db.faiss", tmp_path / "q.txt", model, k=4)
    assert by_split.queries == list(split.query) and np.array_equal(by_split.ids, listed.ids)
    assert by_split.query_labels == [p.split("/")[0] for p in split.query]  # class folders: the gallery judges
    bare = tmp_path / "split.json"
    shutil.copy(indexed / "run" / "split.json", bare)
    obj = json.loads(bare.read_text())
    del obj["image_root"]
    bare.write_text(json.dumps(obj))
    with pytest.raises(HashidxError, match="records no images' folder"):
        run_query(indexed / "db.faiss", bare, model, k=4)
