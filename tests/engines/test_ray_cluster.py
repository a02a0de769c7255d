"""Past one machine, shown on two: a two-node Ray cluster on this machine (Ray's own ray.cluster_utils.Cluster, one
CPU per node) joined with --ray-address. The sharded search puts a shard on each node and writes the local engine's
file byte for byte; the encoding on the cluster gives the local features and codes."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from hashidx.features.cache import FeatureCache
from hashidx.features.runtime import TOLERANCE

if os.environ.get("CI"):
    import ray  # CI installs hashidx[ray]: a missing Ray there is a failure, not a skip
else:
    ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    # On the machine's own address: a driver joining by address resolves a loopback one to it (Ray's
    # canonicalize_bootstrap_address), so nodes bound to 127.0.0.1 alone cannot be joined.
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    nodes.add_node(num_cpus=1)
    nodes.wait_for_nodes()
    yield nodes.address
    nodes.shutdown()


def hashidx(*args: str) -> subprocess.CompletedProcess:
    """A command in its own process, as a user on the cluster's machine runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "hashidx", *args], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.fixture(scope="module")
def run_dir(ucmd_features, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    hashidx("--quiet", "train", str(ucmd_features), "--bits", "16", "--iterations", "4", "-o", str(out))
    return out


def test_two_nodes_hold_a_shard_each_and_answer_as_the_local_engine(cluster, run_dir, tmp_path):
    index = tmp_path / "db.faiss"
    hashidx("--quiet", "build-index", str(run_dir / "codes.h5"), "-o", str(index))
    base = ["query", str(index), str(run_dir / "codes.h5"), "-k", "9"]
    hashidx("--quiet", *base, "-o", str(tmp_path / "local.tsv"))
    done = hashidx(*base, "--engine", "ray", "--ray-address", cluster, "--shards", "2", "-o", str(tmp_path / "ray.tsv"))
    assert "ray: 2 shard(s) on 2 node(s)" in done.stderr + done.stdout
    assert (tmp_path / "ray.tsv").read_bytes() == (tmp_path / "local.tsv").read_bytes()


def test_encoding_on_two_nodes_gives_the_local_features_and_codes(cluster, run_dir, ucmd_slice, tmp_path):
    images = sorted(ucmd_slice.glob("*/*.jpg"))[::5]
    listing = tmp_path / "images.txt"
    listing.write_text("".join(f"{p}\t{p.parent.name}\n" for p in images), encoding="utf-8")
    ray_args = ["--engine", "ray", "--ray-address", cluster]
    for engine, extra in (("local", []), ("ray", ray_args)):
        hashidx("--quiet", "features", str(listing), "--views", "1", "-o", str(tmp_path / f"{engine}.h5"), *extra)
    local, remote = (FeatureCache.load(tmp_path / f"{e}.h5") for e in ("local", "ray"))
    assert local.dataset.paths == remote.dataset.paths and len(local.features) == len(images)
    assert np.abs(local.features - remote.features).max() <= TOLERANCE
    index = tmp_path / "db.faiss"
    hashidx("--quiet", "build-index", str(run_dir / "codes.h5"), "-o", str(index))
    plain = tmp_path / "queries.txt"  # query takes paths only
    plain.write_text("".join(f"{p}\n" for p in images), encoding="utf-8")
    query = ["query", str(index), str(plain), "--model", str(run_dir / "model.pt"), "-k", "5"]
    hashidx("--quiet", *query, "-o", str(tmp_path / "local.tsv"))
    hashidx("--quiet", *query, *ray_args, "-o", str(tmp_path / "ray.tsv"))
    assert (tmp_path / "ray.tsv").read_bytes() == (tmp_path / "local.tsv").read_bytes()
