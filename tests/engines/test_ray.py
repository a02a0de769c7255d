"""The Ray engine on a real local Ray runtime (2 CPUs on loopback): the same features, codes and result files as
the local engine, replicated and sharded search, and a worker killed mid-job losing and duplicating nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from hashidx.cli import main
from hashidx.codes.codefile import CodeFile
from hashidx.data.split import load_split
from hashidx.features.cache import FeatureCache

if os.environ.get("CI"):
    import ray  # CI installs hashidx[ray]: a missing Ray there is a failure, not a skip
else:
    ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def runtime():
    """One real Ray runtime for the module, as CI runs it: 2 CPUs, on loopback; the engines join it. "local" starts
    it apart from any cluster a user's 'ray start' runs on this machine."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()


def invoke(*args: str) -> str:
    result = CliRunner().invoke(main, ["--quiet", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def worker_pids() -> list[int]:
    """This machine's hashidx Ray workers: their process title names the actor class."""
    pids = []
    for entry in os.listdir("/proc"):
        try:
            title = Path(f"/proc/{entry}/cmdline").read_bytes() if entry.isdigit() else b""
        except OSError:
            continue
        if title.startswith(b"ray::") and b"HashidxWorker" in title:
            pids.append(int(entry))
    return pids


@pytest.fixture(scope="module")
def run_dir(ucmd_features, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    invoke("train", str(ucmd_features), "--bits", "16", "--iterations", "4", "-o", str(out))
    return out


@pytest.fixture(scope="module")
def images(ucmd_slice, tmp_path_factory) -> Path:
    """24 images of the slice as a path<TAB>label list file."""
    listing = tmp_path_factory.mktemp("list") / "images.txt"
    paths = sorted(ucmd_slice.glob("*/*.jpg"))[::4][:24]
    listing.write_text("".join(f"{p}\t{p.parent.name}\n" for p in paths), encoding="utf-8")
    return listing


def test_features_on_ray_are_the_local_features(runtime, images, tmp_path):
    args = ["features", str(images), "--views", "1", "--batch-size", "4"]
    invoke(*args, "-o", str(tmp_path / "local.h5"))
    invoke(*args, "--engine", "ray", "--workers", "2", "-o", str(tmp_path / "ray.h5"))
    local, remote = FeatureCache.load(tmp_path / "local.h5"), FeatureCache.load(tmp_path / "ray.h5")
    assert remote.dataset.paths == local.dataset.paths and len(local.dataset) == 24
    np.testing.assert_allclose(remote.features, local.features, rtol=0, atol=1e-5)
    assert remote.runtime == local.runtime == "onnx"
    assert not Path(f"{tmp_path / 'ray.h5'}.partial").exists()


def test_train_on_ray_learns_the_local_codes(runtime, images, tmp_path):
    """train's feature extraction on Ray workers: the same features, so the same seeded run, bit for bit."""
    args = ["train", str(images), "--bits", "16", "--iterations", "2", "--views", "1", "--query-fraction", "0.25"]
    invoke(*args, "-o", str(tmp_path / "local"))
    invoke(*args, "--engine", "ray", "--workers", "2", "-o", str(tmp_path / "ray"))
    local, remote = (CodeFile.load(tmp_path / e / "codes.h5") for e in ("local", "ray"))
    assert np.array_equal(local.codes, remote.codes) and local.paths == remote.paths
    assert len(local.paths) == len(load_split(tmp_path / "ray" / "split.json").database) > 10


def test_add_and_query_on_ray_write_the_local_files(runtime, run_dir, ucmd_slice, tmp_path):
    """Codes added through Ray workers are bit-identical, and image queries give byte-identical results."""
    split = load_split(run_dir / "split.json")
    queries = tmp_path / "queries.txt"
    queries.write_text("".join(f"{ucmd_slice / p}\n" for p in split.query[:10]), encoding="utf-8")
    model = str(run_dir / "model.pt")
    for engine in ("local", "ray"):
        index = tmp_path / engine / "db.index"
        index.parent.mkdir()
        invoke("build-index", str(run_dir / "codes.h5"), "-o", str(index))
        invoke("add", str(index), str(queries), "--model", model, "--engine", engine, "--batch-size", "3")
        invoke("query", str(index), str(queries), "--model", model, "-k", "7", "--engine", engine, "-o", f"{index}.tsv")
    local, remote = (CodeFile.load(tmp_path / e / "db.index.added.h5") for e in ("local", "ray"))
    assert np.array_equal(local.codes, remote.codes) and local.paths == remote.paths and len(local.paths) == 10
    assert np.array_equal(local.ids, remote.ids)
    assert (tmp_path / "ray" / "db.index.tsv").read_bytes() == (tmp_path / "local" / "db.index.tsv").read_bytes()


@pytest.mark.parametrize("rerank", ["none", "400", "features"])
def test_replicated_and_sharded_search_write_the_local_results(runtime, run_dir, ucmd_features, tmp_path, rerank):
    """A codes query file (no re-ranking) or a feature cache (re-ranked by uᵀv over a tie shell, and by content
    vectors inside a code) against a flat index: replicas and shards, on Ray or here, give the local search's file
    byte for byte."""
    index = tmp_path / "db.index"
    invoke("build-index", str(run_dir / "codes.h5"), "-o", str(index))
    source = run_dir / "codes.h5" if rerank == "none" else ucmd_features
    model = [] if rerank == "none" else ["--model", str(run_dir / "model.pt")]
    base = ["query", str(index), str(source), *model, "-k", "9", "--rerank", rerank]
    variants = {
        "local": [],
        "local-shards": ["--shards", "3"],
        "ray-replicas": ["--engine", "ray", "--workers", "2"],
        "ray-shards": ["--engine", "ray", "--shards", "3"],
        "ray-shards-8": ["--engine", "ray", "--shards", "8"],
    }
    for name, extra in variants.items():
        invoke(*base, *extra, "-o", str(tmp_path / f"{name}.tsv"))
    want = (tmp_path / "local.tsv").read_bytes()
    assert want.count(b"\n") == 1 + 9 * (80 if rerank == "none" else 100)  # the database's codes, or every image
    for name in variants:
        assert (tmp_path / f"{name}.tsv").read_bytes() == want, name


@pytest.mark.parametrize("shards", [4, 8])
def test_more_shards_than_cpus_answer_image_queries_as_the_local_engine(runtime, run_dir, ucmd_slice, tmp_path, shards):
    """Image queries encoded by the Ray Data pool while the shard actors hold the index: on 2 CPUs, 4 and 8
    shards are all placed beside the encoders and give the local file."""
    index = tmp_path / "db.index"
    invoke("build-index", str(run_dir / "codes.h5"), "-o", str(index))
    queries = tmp_path / "queries.txt"
    queries.write_text("".join(f"{p}\n" for p in sorted(ucmd_slice.glob("*/*.jpg"))[::10]))
    base = ["query", str(index), str(queries), "--model", str(run_dir / "model.pt"), "-k", "6"]
    invoke(*base, "-o", str(tmp_path / "local.tsv"))
    invoke(*base, "--engine", "ray", "--shards", str(shards), "-o", str(tmp_path / "ray.tsv"))
    want = (tmp_path / "local.tsv").read_bytes()
    assert want.count(b"\n") == 1 + 6 * 10 and (tmp_path / "ray.tsv").read_bytes() == want


def test_shards_the_cluster_cannot_place_are_refused_at_once(runtime):
    """A set of actors larger than the free CPUs is one line, not a silent wait."""
    from hashidx.engines.ray_engine import _check_placeable
    from hashidx.errors import HashidxError

    # The previous test's actors may still be giving their CPUs back: wait until all are free, so that the two
    # checks below read the same number.
    total = ray.cluster_resources().get("CPU", 0.0)
    deadline = time.monotonic() + 30
    while ray.available_resources().get("CPU", 0.0) < total - 1e-9 and time.monotonic() < deadline:
        time.sleep(0.2)
    _check_placeable(ray, 2, {"num_cpus": total / 2}, "--shards")  # what fits passes
    with pytest.raises(HashidxError, match=r"^--shards: 3 worker\(s\) need [\d.]+ CPU\(s\) of Ray but [\d.]+ are free"):
        _check_placeable(ray, 3, {"num_cpus": total / 2}, "--shards")


def test_parquet_holds_the_tsv_rows(run_dir, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    index = tmp_path / "db.index"
    invoke("build-index", str(run_dir / "codes.h5"), "-o", str(index))
    for fmt in ("tsv", "parquet"):
        invoke("query", str(index), str(run_dir / "codes.h5"), "-k", "5", "--format", fmt, "-o", str(tmp_path / fmt))
    table = pq.read_table(tmp_path / "parquet")
    lines = (tmp_path / "tsv").read_text().splitlines()
    assert table.column_names == lines[0].split("\t") and table.num_rows == len(lines) - 1 == 5 * 80
    got = [[("" if v is None else str(v)) for v in row.values()] for row in table.to_pylist()]
    assert got == [line.split("\t") for line in lines[1:]]


def test_shards_split_only_flat_indexes(run_dir, tmp_path):
    index = tmp_path / "db.index"
    invoke("build-index", str(run_dir / "codes.h5"), "--type", "hnsw", "-o", str(index))
    result = CliRunner().invoke(
        main, ["query", str(index), str(run_dir / "codes.h5"), "--shards", "2", "-o", str(tmp_path / "r.tsv")]
    )
    assert result.exit_code == 1 and "--shards splits flat indexes" in result.output
    assert not (tmp_path / "r.tsv").exists()


class _Reporting:
    """A real backbone stage whose results also say which process made them (what proves a restart)."""

    def __init__(self, stage):
        self.stage = stage

    def build(self, threads=None, device="cpu"):
        worker = self.stage.build(threads, device)

        class Worker:
            load = staticmethod(worker.load)

            @staticmethod
            def run(loaded):
                return os.getpid(), worker.run(loaded)

        return Worker()


def test_a_killed_worker_loses_and_duplicates_no_row(runtime, ucmd_slice):
    """SIGKILL one of two Ray Data workers once results flow: Ray restarts it and retries its chunks, and the
    output is the uninterrupted local run's, row for row. Chunks made after the kill by a new process prove the
    kill landed mid-job."""
    import ray.cloudpickle

    from hashidx.data.rasters import RGB
    from hashidx.engines.local import LocalEngine
    from hashidx.engines.ray_engine import RayEngine
    from hashidx.features.extract import BackboneStage

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import the tests
    paths = sorted(ucmd_slice.glob("*/*.jpg"))[:48]
    chunks = [[(i, paths[i]) for i in range(s, s + 2)] for s in range(0, len(paths), 2)]
    stage = BackboneStage("efficientnet-lite0", "imagenet", "onnx", RGB, 224, 8)
    want = list(LocalEngine().map(stage, chunks))
    got, killed, before, after = [], None, set(), set()
    for pid, encoded in RayEngine(workers=2).map(_Reporting(stage), chunks):
        got.append(encoded)
        if killed is None and len(got) == 3:
            before = set(worker_pids())
            killed = pid if pid in before else sorted(before)[0]
            os.kill(killed, signal.SIGKILL)
        elif killed is not None:
            after.add(pid)
    assert killed is not None and after - before, "no chunk was made by a restarted worker"
    assert [g.positions.tolist() for g in got] == [w.positions.tolist() for w in want]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.rows, w.rows, rtol=0, atol=1e-5)
    assert sum(len(g.positions) for g in got) == len(paths)
    assert killed not in worker_pids()


def test_a_killed_shard_is_restarted_and_answers_again(runtime, run_dir, tmp_path):
    """SIGKILL a shard actor mid-stream: Ray restarts it (it reads its rows again) and retries its searches; every
    block's merged lists are the whole index's."""
    import ray.cloudpickle

    from hashidx.engines.ray_engine import RayEngine
    from hashidx.index import indexes as idx
    from hashidx.index.shards import ShardStage, merge, shard_rows

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    index = tmp_path / "db.index"
    invoke("build-index", str(run_dir / "codes.h5"), "-o", str(index))
    full, sidecar = idx.load(index)
    codes = CodeFile.load(run_dir / "codes.h5").codes
    blocks = [(codes[i : i + 4], 6, False) for i in range(0, len(codes), 4)] * 5
    stages = [_Reporting(ShardStage(parts)) for parts in shard_rows(index, sidecar, 2)]
    killed, before, after = None, set(), set()
    for n, parts in enumerate(RayEngine(workers=2).scatter(stages, blocks)):
        dist, ids, _ = merge([p for _, p in parts], 6, sidecar["count"])
        want_d, want_i = idx.search(full, blocks[n][0], 6)
        assert np.array_equal(ids, want_i) and np.array_equal(dist, want_d)
        pids = {pid for pid, _ in parts}
        if n == 2:
            before, killed = set(worker_pids()), parts[0][0]
            os.kill(killed, signal.SIGKILL)
        elif killed is not None:
            after |= pids
    assert n == len(blocks) - 1 and after - before, "no block was answered by a restarted shard"


def test_an_unreachable_ray_address_is_one_line(ucmd_slice, tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "hashidx",
            "features",
            str(ucmd_slice),
            "--engine",
            "ray",
            "--ray-address",
            "127.0.0.1:9",
            "-o",
            str(tmp_path / "f.h5"),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [out.stderr.strip()] and "--ray-address 127.0.0.1:9" in out.stderr
    assert not (tmp_path / "f.h5").exists()


def test_the_local_engine_never_imports_ray(images, tmp_path):
    script = (
        "import sys\nfrom hashidx.cli import main\n"
        f"main(['--quiet', 'features', {str(images)!r}, '--views', '1', '-o', "
        f"{str(tmp_path / 'f.h5')!r}], standalone_mode=False)\n"
        "assert 'ray' not in sys.modules and 'pyarrow' not in sys.modules, 'ray was imported'\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
