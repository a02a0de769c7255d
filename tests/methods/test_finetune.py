"""End-to-end fine-tuning on a real UC Merced slice (CPU, tiny schedule) and the backbone registry."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from hashidx.cli import main
from hashidx.codes.codefile import CodeFile
from hashidx.errors import HashidxError
from hashidx.features.backbones import BACKBONES, backbone_spec
from hashidx.methods.checkpoints import load_checkpoint

TINY = ["--bits", "16", "--iterations", "2", "--train-pool", "20"]
TORCHVISION = [name for name in BACKBONES if name != "efficientnet-lite0"]


def _torchvision_importable() -> bool:
    if importlib.util.find_spec("torchvision") is None:
        return False
    try:
        import torchvision.models  # noqa: F401  (a torchvision built for another torch fails here)
    except Exception:
        return False
    return True


needs_torchvision = pytest.mark.skipif(not _torchvision_importable(), reason="torchvision not importable")


def _invoke(*args: str):
    return CliRunner().invoke(main, ["--quiet", *args])


@pytest.fixture(scope="module")
def finetuned(ucmd_slice, tmp_path_factory):
    run = tmp_path_factory.mktemp("ft") / "run"
    result = _invoke("train", str(ucmd_slice), "--finetune", "--device", "cpu", *TINY, "-o", str(run))
    assert result.exit_code == 0, result.output
    return run


def test_finetune_trains_the_backbone_and_writes_a_run(finetuned, ucmd_slice):
    net, config = load_checkpoint(finetuned / "model.pt")
    assert config["finetune"] and config["backbone"] == "efficientnet-lite0" and config["image_size"] == 224
    # The backbone's weights moved away from the pretrained ones: it was trained, not frozen.
    pretrained = backbone_spec("efficientnet-lite0").build("imagenet").state_dict()
    trained = {k.removeprefix("trunk."): v for k, v in net.state_dict().items() if k.startswith("trunk.")}
    moved = [k for k, v in pretrained.items() if v.is_floating_point() and not torch.equal(v, trained[k])]
    assert len(moved) > len(pretrained) // 2
    codes = CodeFile.load(finetuned / "codes.h5")
    assert len(codes.codes) == 80 and codes.bits == 16  # AHCL codes all 80 database items from a pool of 20
    result = _invoke("evaluate", str(finetuned))
    assert result.exit_code == 0, result.output
    assert '"mAP"' in result.output


def test_finetuned_model_answers_image_queries_and_refuses_cached_features(
    finetuned, ucmd_slice, ucmd_features, tmp_path
):
    assert _invoke("build-index", str(finetuned / "codes.h5"), "-o", str(tmp_path / "db.faiss")).exit_code == 0
    queries = tmp_path / "q.txt"
    queries.write_text("".join(f"{p}\n" for p in sorted(ucmd_slice.glob("beach/*"))[:3]))
    result = _invoke(
        "query",
        str(tmp_path / "db.faiss"),
        str(queries),
        "--model",
        str(finetuned / "model.pt"),
        "-k",
        "5",
        "-o",
        str(tmp_path / "r.tsv"),
    )
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "r.tsv").read_text().splitlines()) == 1 + 3 * 5
    result = _invoke(
        "query",
        str(tmp_path / "db.faiss"),
        str(ucmd_features),
        "--model",
        str(finetuned / "model.pt"),
        "-o",
        str(tmp_path / "r2.tsv"),
    )
    assert result.exit_code == 1 and "fine-tuned" in result.output and "image paths" in result.output
    assert not (tmp_path / "r2.tsv").exists()


def test_finetune_is_reproducible(finetuned, ucmd_slice, tmp_path):
    result = _invoke("train", str(ucmd_slice), "--finetune", "--device", "cpu", *TINY, "-o", str(tmp_path / "again"))
    assert result.exit_code == 0, result.output
    assert np.array_equal(
        CodeFile.load(tmp_path / "again" / "codes.h5").codes, CodeFile.load(finetuned / "codes.h5").codes
    )


def test_symmetric_finetune_encodes_every_database_image(ucmd_slice, tmp_path):
    result = _invoke(
        "train",
        str(ucmd_slice),
        "--finetune",
        "--method",
        "symmetric",
        "--device",
        "cpu",
        "--augment",
        *TINY,
        "-o",
        str(tmp_path / "sym"),
    )
    assert result.exit_code == 0, result.output
    codes = CodeFile.load(tmp_path / "sym" / "codes.h5")
    assert len(codes.codes) == 80 and codes.attrs["encoding"].startswith("network")


def test_weights_from_a_local_file(ucmd_slice, tmp_path):
    weights = tmp_path / "lite0.pt"
    torch.save(backbone_spec("efficientnet-lite0").build("imagenet").net.state_dict(), weights)
    result = _invoke(
        "train",
        str(ucmd_slice),
        "--finetune",
        "--weights",
        str(weights),
        "--device",
        "cpu",
        "--bits",
        "16",
        "--iterations",
        "1",
        "--train-pool",
        "10",
        "-o",
        str(tmp_path / "w"),
    )
    assert result.exit_code == 0, result.output
    wrong = tmp_path / "wrong.pt"
    torch.save({"fc.weight": torch.zeros(2, 2)}, wrong)
    result = _invoke("train", str(ucmd_slice), "--finetune", "--weights", str(wrong), *TINY, "-o", str(tmp_path / "x"))
    assert result.exit_code == 1 and "not efficientnet-lite0 weights" in result.output


def test_finetune_refusals(ucmd_slice, ucmd_features, tmp_path):
    cases = [
        (["train", str(ucmd_features), "--finetune"], "not a feature cache"),
        (["train", str(ucmd_slice), "--finetune", "--method", "itq"], "has none"),
        (["train", str(ucmd_slice), "--finetune", "--backbone", "vgg12"], "unknown backbone"),
    ]
    if not torch.cuda.is_available():
        cases.append((["train", str(ucmd_slice), "--finetune", "--device", "cuda"], "no CUDA device"))
    for args, message in cases:
        result = _invoke(*args, "-o", str(tmp_path / "run"))
        assert result.exit_code == 1 and message in result.output, (args, result.output)
        assert result.output.count("\n") == 1


@pytest.mark.skipif(_torchvision_importable(), reason="torchvision is importable here")
def test_torchvision_backbones_say_how_to_get_torchvision():
    with pytest.raises(HashidxError, match=r"hashidx\[torchvision\]"):
        backbone_spec("vgg11").build("none")


@needs_torchvision
@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_backbone_gives_its_feature_dim(name):
    spec = backbone_spec(name)
    trunk = spec.build("none").eval()
    with torch.no_grad():
        out = trunk(torch.rand(2, 3, 224, 224))
    assert out.shape == (2, spec.feature_dim)
    if name.startswith(("vgg", "alexnet")):
        assert len([m for m in trunk.fc if isinstance(m, torch.nn.Linear)]) == 2  # fc6 and fc7 kept


@needs_torchvision
def test_torchvision_finetune_and_query(ucmd_slice, tmp_path):
    run = tmp_path / "r18"
    result = _invoke(
        "train",
        str(ucmd_slice),
        "--finetune",
        "--backbone",
        "resnet18",
        "--weights",
        "none",
        "--device",
        "cpu",
        *TINY,
        "-o",
        str(run),
    )
    assert result.exit_code == 0, result.output
    assert load_checkpoint(run / "model.pt")[1]["backbone"] == "resnet18"
    assert _invoke("evaluate", str(run)).exit_code == 0


def test_frozen_features_with_weights_from_a_file(ucmd_slice, tmp_path):
    small = tmp_path / "small"
    for cls in ("beach", "forest"):
        (small / cls).mkdir(parents=True)
        for img in sorted((ucmd_slice / cls).iterdir())[:5]:
            (small / cls / img.name).symlink_to(img.resolve())
    weights = tmp_path / "lite0.pt"
    torch.save(backbone_spec("efficientnet-lite0").build("imagenet").net.state_dict(), weights)
    for name, extra in (("default.h5", []), ("file.h5", ["--weights", str(weights)])):
        result = _invoke("features", str(small), "--views", "1", *extra, "-o", str(tmp_path / name))
        assert result.exit_code == 0, result.output
    from hashidx.features.cache import FeatureCache

    default, from_file = FeatureCache.load(tmp_path / "default.h5"), FeatureCache.load(tmp_path / "file.h5")
    assert from_file.weights == str(weights) and default.weights == "imagenet"
    assert np.array_equal(default.features, from_file.features)  # the same weights, read from a file
    # A model records its features' weights; a cache made with other weights is refused at query time.
    run = tmp_path / "run"
    assert (
        _invoke("train", str(tmp_path / "file.h5"), "--bits", "16", "--iterations", "1", "-o", str(run)).exit_code == 0
    )
    assert _invoke("build-index", str(run / "codes.h5"), "-o", str(tmp_path / "i")).exit_code == 0
    result = _invoke(
        "query",
        str(tmp_path / "i"),
        str(tmp_path / "default.h5"),
        "--model",
        str(run / "model.pt"),
        "-o",
        str(tmp_path / "r.tsv"),
    )
    assert result.exit_code == 1 and "weights" in result.output


def test_resumed_finetune_with_augmentation_matches_an_uninterrupted_one(ucmd_slice, tmp_path):
    from hashidx.data.datasets import load_dataset
    from hashidx.methods.ahcl import train_ahcl
    from hashidx.methods.finetune import finetune_network, load_crops
    from hashidx.methods.training import Checkpointing, TrainConfig

    ds = load_dataset(ucmd_slice)
    rows = np.arange(0, len(ds), 8)  # 13 images over the 5 classes
    pixels, _, _ = load_crops([ds.absolute(i) for i in rows])
    labels = ds.labels[rows]

    def run(iterations: int, ck: Checkpointing | None):
        config = TrainConfig(bits=8, iterations=iterations, batch_size=4)
        net = finetune_network("efficientnet-lite0", "imagenet", pixels, 5, config, torch.device("cpu"), augment=True)
        head, v, _ = train_ahcl(net, labels, 5, config, checkpointing=ck)
        return head.state_dict(), v

    state_a, v_a = run(2, None)
    run(1, Checkpointing(tmp_path / "resume.pt", "same"))  # "killed" after its first iteration
    state_b, v_b = run(2, Checkpointing(tmp_path / "resume.pt", "same", resume=True))
    assert np.array_equal(v_a, v_b)
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)


def test_finetuned_query_passes_on_onnx_runtime_give_torch_codes(finetuned, ucmd_slice):
    from hashidx.methods.encoder import Encoder

    head, config = load_checkpoint(finetuned / "model.pt")
    paths = sorted(ucmd_slice.glob("*/*"))[::10]
    u = {rt: Encoder(head, config, rt).embed_images(paths)[0] for rt in ("torch", "onnx")}
    assert np.abs(u["torch"] - u["onnx"]).max() <= 1e-4
    np.testing.assert_array_equal(u["torch"] > 0, u["onnx"] > 0)
