"""ONNX Runtime against torch on real UC Merced images: features within tolerance, identical codes, and a
damaged, stale or unusable cached graph detected (rebuilt, or run in torch) with a warning."""

from __future__ import annotations

import os

import numpy as np
import pytest
from click.testing import CliRunner

from hashidx.cli import main
from hashidx.features import runtime
from hashidx.features.backbones import FeatureExtractor, backbone_spec
from hashidx.features.cache import FeatureCache
from hashidx.features.extract import extract
from hashidx.methods.checkpoints import load_checkpoint
from hashidx.methods.encoder import Encoder
from hashidx.methods.runs import train_run

SPEC = backbone_spec("efficientnet-lite0")


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """A private graph cache, so each test sees its own exports."""
    monkeypatch.setenv("HASHIDX_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "onnx"


def _paths(ucmd_slice, per_class: int = 2):
    return [p for cls in sorted(ucmd_slice.iterdir()) for p in sorted(cls.iterdir())[:per_class]]


def test_onnx_features_equal_torch_within_tolerance_on_real_images(ucmd_slice):
    paths = _paths(ucmd_slice)
    torch_fx, onnx_fx = FeatureExtractor(SPEC, runtime="torch"), FeatureExtractor(SPEC, runtime="onnx")
    for views in (1, 8):
        a, b = extract(paths, torch_fx, 224, views), extract(paths, onnx_fx, 224, views)
        assert onnx_fx.runtime == "onnx"
        assert a.features.shape == b.features.shape == (len(paths), SPEC.feature_dim)
        assert np.abs(a.features - b.features).max() <= runtime.TOLERANCE
        assert not np.array_equal(a.features, b.features)  # two engines really ran


def test_a_runs_codes_are_identical_through_either_runtime(ucmd_slice, ucmd_features, tmp_path):
    train_run(ucmd_features, tmp_path / "run", bits=32, seed=0)
    head, config = load_checkpoint(tmp_path / "run" / "model.pt")
    paths = _paths(ucmd_slice, 4)
    codes = {rt: Encoder(head, config, rt).encode_images(paths)[0] for rt in runtime.RUNTIMES}
    np.testing.assert_array_equal(codes["torch"], codes["onnx"])


def test_the_graph_is_exported_once_then_read_from_the_cache(ucmd_slice, cache_dir):
    FeatureExtractor(SPEC, runtime="onnx").twin(224, 224)
    (graph,) = cache_dir.glob("*.onnx")
    stamp = graph.stat().st_mtime_ns
    twin = FeatureExtractor(SPEC, runtime="onnx").twin(224, 224)
    assert twin.path == graph and graph.stat().st_mtime_ns == stamp
    assert not list(cache_dir.glob(".*tmp*"))  # written atomically: no temporary left behind
    # Another input size or other weights are another graph.
    FeatureExtractor(SPEC, runtime="onnx").twin(160, 160)
    FeatureExtractor(SPEC, "none", runtime="onnx").twin(224, 224)
    assert len(list(cache_dir.glob("*.onnx"))) == 3


@pytest.mark.parametrize("damage", ["truncated", "flipped", "empty"])
def test_a_damaged_cached_graph_is_detected_and_rebuilt(ucmd_slice, cache_dir, capsys, damage):
    FeatureExtractor(SPEC, runtime="onnx").twin(224, 224)
    (graph,) = cache_dir.glob("*.onnx")
    good = graph.read_bytes()
    if damage == "truncated":
        graph.write_bytes(good[: len(good) // 2])
    elif damage == "empty":
        graph.write_bytes(b"")
    else:  # flip bytes inside the weights, past the header: the file still loads, its outputs are wrong
        data = bytearray(good)
        for pos in range(len(data) // 2, len(data) // 2 + 4096, 7):
            data[pos] ^= 0x5A
        graph.write_bytes(bytes(data))
    capsys.readouterr()
    fx = FeatureExtractor(SPEC, runtime="onnx")
    paths = _paths(ucmd_slice, 1)
    feats = extract(paths, fx, 224, 1).features
    err = capsys.readouterr().err
    assert f"warning: {graph}: cached ONNX graph of backbone efficientnet-lite0" in err and "exporting it again" in err
    assert fx.runtime == "onnx" and graph.read_bytes() == good
    reference = extract(paths, FeatureExtractor(SPEC, runtime="torch"), 224, 1).features
    assert np.abs(feats - reference).max() <= runtime.TOLERANCE


def test_a_stale_cached_graph_is_detected_and_rebuilt(cache_dir, capsys):
    """A graph of other weights under this key's name (a renamed file, an older hashidx) is not trusted."""
    FeatureExtractor(SPEC, "none", runtime="onnx").twin(224, 224)
    (other,) = cache_dir.glob("*.onnx")
    FeatureExtractor(SPEC, runtime="onnx").twin(224, 224)
    (mine,) = set(cache_dir.glob("*.onnx")) - {other}
    good = mine.read_bytes()
    mine.write_bytes(other.read_bytes())
    capsys.readouterr()
    FeatureExtractor(SPEC, runtime="onnx").twin(224, 224)
    assert "stale" in capsys.readouterr().err
    assert mine.read_bytes() == good


def test_a_graph_outside_tolerance_falls_back_to_torch_loudly(ucmd_slice, cache_dir, capsys, monkeypatch):
    monkeypatch.setattr(runtime, "TOLERANCE", 0.0)  # no float engine meets this: the fallback path
    fx = FeatureExtractor(SPEC, runtime="onnx")
    paths = _paths(ucmd_slice, 1)
    feats = extract(paths, fx, 224, 1).features
    assert "differs from torch" in capsys.readouterr().err and fx.runtime == "torch"
    np.testing.assert_array_equal(feats, extract(paths, FeatureExtractor(SPEC, runtime="torch"), 224, 1).features)


def test_an_unwritable_cache_exports_in_memory(ucmd_slice, tmp_path, monkeypatch, capsys):
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("HASHIDX_CACHE_DIR", str(tmp_path / "file" / "cache"))
    fx = FeatureExtractor(SPEC, runtime="onnx")
    twin = fx.twin(224, 224)
    assert twin is not None and twin.path is None and fx.runtime == "onnx"
    assert "HASHIDX_CACHE_DIR" in capsys.readouterr().err


def test_the_runtime_is_recorded_and_chosen_on_the_command_line(ucmd_slice, tmp_path):
    runner = CliRunner()
    for rt in ("torch", "onnx"):
        out = tmp_path / f"{rt}.h5"
        args = ["--quiet", "features", str(ucmd_slice), "--views", "1", "--runtime", rt, "-o", str(out)]
        result = runner.invoke(main, args)
        assert result.exit_code == 0, result.output
        assert f"({rt})" in result.output and FeatureCache.load(out).runtime == rt
    a, b = (FeatureCache.load(tmp_path / f"{rt}.h5").features for rt in ("torch", "onnx"))
    assert np.abs(a - b).max() <= runtime.TOLERANCE
    info = runner.invoke(main, ["info", str(tmp_path / "onnx.h5")])
    assert "runtime" in info.output and "onnx" in info.output
    bad = runner.invoke(main, ["features", str(ucmd_slice), "--runtime", "tensorrt", "-o", str(tmp_path / "x.h5")])
    assert bad.exit_code == 2 and "tensorrt" in bad.output and not (tmp_path / "x.h5").exists()


def test_decoding_ahead_changes_nothing(ucmd_slice, tmp_path):
    paths = _paths(ucmd_slice, 3)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    paths.insert(5, broken)
    fx = FeatureExtractor(SPEC, runtime="onnx")
    runs = [extract(paths, fx, 224, 1, batch_size=2, on_error="skip", workers=w) for w in (0, 1, 2)]
    for other in runs[1:]:
        np.testing.assert_array_equal(runs[0].features, other.features)
        assert runs[0].kept.tolist() == other.kept.tolist() and runs[0].skipped == other.skipped
    assert [i for i, _ in runs[0].skipped] == [5]
    with pytest.raises(Exception, match="broken.jpg"):
        extract(paths, fx, 224, 1, batch_size=2, workers=2)


def test_importing_the_runtime_module_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, hashidx.features.runtime; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, check=True)
    assert out.stdout.strip() == "False"
