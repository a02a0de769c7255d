"""A frozen-feature model without torch: its head's numpy arrays match torch's forward pass, are remembered per
checkpoint bytes, and, with a trusted backbone graph, a cold query process never imports torch and answers as a
torch process does."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from hashidx.features.cache import FeatureCache
from hashidx.methods import portable
from hashidx.methods.checkpoints import load_checkpoint
from hashidx.methods.encoder import load_encoder
from hashidx.methods.portable import HeadArrays
from hashidx.methods.runs import train_run


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HASHIDX_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def runs(ucmd_features, tmp_path_factory):
    out = tmp_path_factory.mktemp("portable")
    for method in ("ahcl", "itq"):
        train_run(ucmd_features, out / method, bits=32, method=method, seed=0)
    return out


@pytest.mark.parametrize("method", ["ahcl", "itq"])
def test_the_arrays_give_the_torch_heads_outputs(runs, ucmd_features, method):
    head, _ = load_checkpoint(runs / method / "model.pt")
    features = FeatureCache.load(ucmd_features).features
    arrays = HeadArrays.of(head)
    assert arrays.kind == ("hash" if method == "ahcl" else "linear") and arrays.out_dim == 32
    with torch.inference_mode():
        reference = head.embed(features)
    u = arrays.embed(features, batch_size=37)  # batches do not change a row's outputs
    assert u.dtype == np.float32 and u.shape == reference.shape
    np.testing.assert_allclose(u, reference, atol=1e-5)
    np.testing.assert_array_equal(u, arrays.embed(features))
    # Signs agree wherever torch's output is not within float error of zero.
    clear = np.abs(reference) > 1e-5
    assert np.array_equal(np.sign(u)[clear], np.sign(reference)[clear])


def test_a_checkpoint_is_remembered_by_its_bytes(runs, cache, tmp_path):
    model = runs / "ahcl" / "model.pt"
    assert portable.recall(model) is None
    first = load_encoder(model)  # torch loads it, and its head is remembered
    recalled = portable.recall(model)
    assert recalled is not None
    arrays, config = recalled
    assert config == first.config
    assert all(np.array_equal(arrays.arrays[k], v) for k, v in first.arrays.arrays.items())
    # The content projection travels with the head: a cold process orders by content as a torch one does.
    assert first.content is not None and arrays.content is not None
    assert np.array_equal(arrays.content.components, first.content.components)
    second = load_encoder(model)
    assert isinstance(second.head, HeadArrays) and second.content is not None
    # Other bytes are another checkpoint, even under the same name.
    other = tmp_path / "model.pt"
    other.write_bytes(model.read_bytes() + b"\0")
    assert portable.recall(other) is None
    # A damaged entry is not read: torch loads the checkpoint again and the entry is written anew.
    (entry,) = (cache / "models").glob("*.npz")
    entry.write_bytes(b"not an npz")
    assert portable.recall(model) is None
    assert not isinstance(load_encoder(model).head, HeadArrays)
    assert portable.recall(model) is not None


def test_a_cold_query_does_not_import_torch_and_answers_as_torch_does(runs, ucmd_slice, cache, tmp_path):
    from click.testing import CliRunner

    from hashidx.cli import main

    runner = CliRunner()
    index = tmp_path / "db.faiss"
    built = runner.invoke(main, ["--quiet", "build-index", str(runs / "ahcl" / "codes.h5"), "-o", str(index)])
    assert built.exit_code == 0, built.output
    image = sorted(ucmd_slice.glob("*/*"))[3]
    args = ["query", str(index), str(image), "--model", str(runs / "ahcl" / "model.pt"), "-k", "10"]
    probe = (
        "import atexit, sys; atexit.register(lambda: print('TORCH', 'torch' in sys.modules, file=sys.stderr)); "
        "from hashidx.cli import main; main()"
    )
    env = {**os.environ, "HASHIDX_CACHE_DIR": str(cache)}

    def query(out, *extra):
        done = subprocess.run(
            [sys.executable, "-c", probe, "--quiet", *args, *extra, "-o", str(out)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return "TORCH True" in done.stderr

    assert query(tmp_path / "first.tsv")  # the first use exports and checks the graph against torch
    assert not query(tmp_path / "cold.tsv")  # then the graph is trusted and the head remembered
    assert query(tmp_path / "torch.tsv", "--runtime", "torch")
    assert (tmp_path / "cold.tsv").read_bytes() == (tmp_path / "first.tsv").read_bytes()
    # torch's backbone differs from ONNX Runtime's in float error: the same items at the same distances.
    files = (tmp_path / "cold.tsv", tmp_path / "torch.tsv")
    ranked = [[row.split("\t")[:5] for row in f.read_text().splitlines()] for f in files]
    assert ranked[0] == ranked[1] and len(ranked[0]) == 11
    # A graph changed after it was trusted goes back through the torch check, which rebuilds it.
    (graph,) = (cache / "onnx").glob("*.onnx")
    graph.write_bytes(graph.read_bytes()[:1000])
    assert query(tmp_path / "again.tsv")
    assert (tmp_path / "again.tsv").read_bytes() == (tmp_path / "cold.tsv").read_bytes()
    assert not query(tmp_path / "after.tsv")
