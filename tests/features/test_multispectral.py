"""N-band backbones from the pretrained RGB filters, frozen and fine-tuned, on the real EuroSAT_MS chips."""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from hashidx.cli import main
from hashidx.features.backbones import FeatureExtractor, backbone_spec, channel_stats
from hashidx.features.networks import adapt_input

EUROSAT = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "EuroSAT_MS"

pytestmark = pytest.mark.usefixtures("eurosat")


def test_widened_first_convolution_keeps_a_grey_image_s_features():
    """On an image whose bands are all equal, the 13-band network sees what the RGB one sees: the RGB filters
    plus the mean filter for the rest, scaled by 3/N, sum to the RGB filters' sum."""
    spec = backbone_spec("efficientnet-lite0")
    rgb, wide = FeatureExtractor(spec, "imagenet", "torch"), FeatureExtractor(spec, "imagenet", "torch", 13)
    grey = torch.rand(2, 1, 64, 64)
    np.testing.assert_allclose(wide(grey.expand(2, 13, 64, 64)), rgb(grey.expand(2, 3, 64, 64)), atol=1e-4)
    conv = wide.net.net._conv_stem
    assert conv.in_channels == 13 and conv.weight.shape[1] == 13
    original = spec.build("imagenet").net._conv_stem.weight
    torch.testing.assert_close(conv.weight[:, :3], original * 3 / 13)  # R, G, B keep their (scaled) filters
    torch.testing.assert_close(conv.weight[:, 7], original.mean(1) * 3 / 13)
    assert channel_stats(spec, 13)[0] == (0.5,) * 13
    net = spec.build("none")
    assert adapt_input(net, 3) is net  # RGB: untouched


@pytest.fixture(scope="module")
def eurosat_list(tmp_path_factory):
    files = sorted(EUROSAT.glob("*/*.tif"))
    listing = tmp_path_factory.mktemp("eurosat") / "list.txt"
    classes = ("Forest", "SeaLake", "Industrial")
    listing.write_text("".join(f"{f}\t{f.parent.name}\n" for f in files if f.parent.name in classes))
    return listing


def _invoke(*args):
    return CliRunner().invoke(main, ["--quiet", *args], catch_exceptions=False)


def test_thirteen_band_features_train_query_and_refuse_other_bands(eurosat_list, tmp_path):
    feats = tmp_path / "f.h5"
    result = _invoke("features", str(eurosat_list), "--bands", "4,3,2,1,5-13", "--views", "1", "-o", str(feats))
    assert result.exit_code == 0, result.output
    with h5py.File(feats) as f:
        assert json.loads(f.attrs["bands"]) == [4, 3, 2, 1, *range(5, 14)] and len(json.loads(f.attrs["scale"])) == 13
        assert f["footprints/lonlat"].shape == (60, 2) and np.isfinite(f["footprints/lonlat"][:]).all()
    run = tmp_path / "run"
    assert _invoke("train", str(feats), "--bits", "16", "--iterations", "2", "-o", str(run)).exit_code == 0
    model = torch.load(run / "model.pt", weights_only=True)["config"]
    assert json.loads(model["bands"])[:3] == [4, 3, 2] and model["scale"] == json.loads(json.dumps(model["scale"]))
    assert _invoke("build-index", str(run / "codes.h5"), "-o", str(tmp_path / "ix")).exit_code == 0
    queries = tmp_path / "q.txt"
    queries.write_text("\n".join(eurosat_list.read_text().split("\t")[0] for _ in range(1)) + "\n")
    args = ["query", str(tmp_path / "ix"), str(queries), "--model", str(run / "model.pt"), "-k", "3"]
    ok = _invoke(*args, "-o", str(tmp_path / "r.tsv"))
    assert ok.exit_code == 0, ok.output
    rows = [line.split("\t") for line in (tmp_path / "r.tsv").read_text().splitlines()]
    assert rows[0][-3:] == ["lon", "lat", "datetime"] and all(-180 <= float(r[6]) <= 180 for r in rows[1:])
    refused = _invoke(*args, "--bands", "4,3,2", "-o", str(tmp_path / "x.tsv"))
    assert refused.exit_code == 1 and "--bands 4,3,2: the model reads bands 4,3,2,1,5," in refused.output
    assert not (tmp_path / "x.tsv").exists()
    rgb = tmp_path / "rgb.h5"
    assert _invoke("features", str(eurosat_list), "--bands", "4,3,2", "--views", "1", "-o", str(rgb)).exit_code == 0
    mixed = _invoke("query", str(tmp_path / "ix"), str(rgb), "--model", str(run / "model.pt"), "-o", str(tmp_path))
    assert mixed.exit_code == 1 and "features read with bands 4,3,2" in mixed.output


def test_four_band_finetune_on_the_cpu(eurosat_list, tmp_path):
    run = tmp_path / "ft"
    result = _invoke(
        "train", str(eurosat_list), "--finetune", "--device", "cpu", "--bands", "4,3,2,8",
        "--bits", "16", "--iterations", "1", "--train-pool", "12", "-o", str(run),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    state = torch.load(run / "model.pt", weights_only=True)
    assert state["state_dict"]["trunk.net._conv_stem.weight"].shape[1] == 4
    assert state["state_dict"]["mean"].shape == (1, 4, 1, 1) and json.loads(state["config"]["bands"]) == [4, 3, 2, 8]
    assert _invoke("build-index", str(run / "codes.h5"), "-o", str(tmp_path / "ix")).exit_code == 0
    river = sorted(EUROSAT.glob("River/*.tif"))[0]
    added = _invoke("add", str(tmp_path / "ix"), str(river), "--model", str(run / "model.pt"))
    assert added.exit_code == 0, added.output
