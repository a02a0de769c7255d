"""The bad-input catalogue (README "Errors"): every entry through the CLI, exit code, message, outputs untouched.

Each refusal must be one line naming the file and the fix, exit 1, no traceback, and no output file.
"""

from __future__ import annotations

import json
import re
import shutil
import struct

import faiss
import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from hashidx.cli import main
from hashidx.codes.codefile import CodeFile
from hashidx.demo import make_demo_images
from hashidx.features.cache import FeatureCache
from hashidx.io.atomic import sha256_file


def cli(*args: str):
    result = CliRunner().invoke(main, ["--quiet", *args])
    result.command_name = args[0]  # what `refused` checks the options an error names against
    return result


def options_of(command: str) -> set[str]:
    params = [*main.params, *main.commands[command].params]
    return {"--help"} | {opt for p in params for opt in (*p.opts, *p.secondary_opts)}


def refused(result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1, result.output
    for fragment in fragments:
        assert fragment in error_lines[0], result.output
    if hasattr(result, "command_name"):  # an error suggests only options of the command that was run
        named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", error_lines[0].split(": ", 1)[1]))
        assert named <= options_of(result.command_name), (named - options_of(result.command_name), error_lines[0])


def write_tiff(path, bands: int, size: int = 16) -> None:
    """A minimal uncompressed multispectral TIFF (PIL cannot write one): `bands` 8-bit samples per pixel."""
    data = (np.arange(size * size * bands) % 251).astype(np.uint8).tobytes()
    n_tags, head = 11, 8
    bps_at = head + 2 + n_tags * 12 + 4
    extra_at = bps_at + 2 * bands
    data_at = extra_at + 2 * (bands - 1)

    def tag(code, typ, count, value):
        return struct.pack("<HHII", code, typ, count, value)

    tags = [
        tag(256, 4, 1, size),
        tag(257, 4, 1, size),
        tag(258, 3, bands, bps_at),
        tag(259, 3, 1, 1),
        tag(262, 3, 1, 1),
        tag(273, 4, 1, data_at),
        tag(277, 3, 1, bands),
        tag(278, 4, 1, size),
        tag(279, 4, 1, len(data)),
        tag(284, 3, 1, 1),
        tag(338, 3, bands - 1, extra_at),
    ]
    path.write_bytes(
        b"II*\x00"
        + struct.pack("<IH", 8, n_tags)
        + b"".join(tags)
        + b"\x00" * 4
        + struct.pack(f"<{bands}H", *[8] * bands)
        + struct.pack(f"<{bands - 1}H", *[0] * (bands - 1))
        + data
    )


def _rgb(seed=0, size=48) -> Image.Image:
    return Image.fromarray((np.random.default_rng(seed).random((size, size, 3)) * 255).astype(np.uint8))


def make_bad(kind: str, folder) -> str:
    """Write one bad image of `kind` into `folder`; returns its file name."""
    if kind == "truncated-jpeg":
        _rgb().save(folder / "x.jpg")
        data = (folder / "x.jpg").read_bytes()
        (folder / "x.jpg").write_bytes(data[: len(data) // 2])
        return "x.jpg"
    if kind == "truncated-tiff":
        _rgb().save(folder / "x.tif")
        data = (folder / "x.tif").read_bytes()
        (folder / "x.tif").write_bytes(data[: len(data) // 2])
        return "x.tif"
    if kind == "corrupt-tiff":
        _rgb().save(folder / "x.tif")
        data = (folder / "x.tif").read_bytes()
        (folder / "x.tif").write_bytes(
            data[:8] + bytes(np.random.default_rng(1).integers(0, 256, len(data) - 8, dtype=np.uint8))
        )
        return "x.tif"
    if kind == "zero-byte":
        (folder / "x.png").write_bytes(b"")
        return "x.png"
    if kind == "not-an-image":
        (folder / "x.jpg").write_text("this is not a JPEG\n")
        return "x.jpg"
    if kind == "5-band-tiff":
        write_tiff(folder / "x.tif", 5)
        return "x.tif"
    raise ValueError(kind)


UNREADABLE = {
    "truncated-jpeg": "cannot decode image",
    "truncated-tiff": "cannot read raster",
    "corrupt-tiff": "cannot read raster",
    "zero-byte": "empty file (0 bytes)",
    "not-an-image": "cannot decode image",
    "5-band-tiff": "5-band raster (gray, undefined x4); choose the bands with --bands",
}


@pytest.fixture
def data(tmp_path):
    return make_demo_images(tmp_path / "data", per_class=4, size=48)


@pytest.mark.parametrize("kind", sorted(UNREADABLE))
def test_unreadable_image_fails_with_its_path_and_leaves_no_output(kind, data, tmp_path):
    name = make_bad(kind, data / "forest")
    out = tmp_path / "f.h5"
    refused(cli("features", str(data), "--views", "1", "-o", str(out)), str(data / "forest" / name), UNREADABLE[kind])
    assert not out.exists()


@pytest.mark.parametrize("kind", ["truncated-jpeg", "zero-byte", "5-band-tiff"])
def test_on_error_skip_lists_the_file_and_goes_on(kind, data, tmp_path):
    name = make_bad(kind, data / "forest")
    out = tmp_path / "f.h5"
    result = cli("features", str(data), "--views", "1", "--on-error", "skip", "-o", str(out))
    assert result.exit_code == 0, result.output
    bad = str(data / "forest" / name)
    assert f"skipped: {bad}" in result.output and "1 unreadable image(s) left out" in result.output
    cache = FeatureCache.load(out)
    assert len(cache.dataset) == 24 and f"forest/{name}" not in cache.dataset.paths
    assert cache.skipped[0][0] == f"forest/{name}" and UNREADABLE[kind] in cache.skipped[0][1]


def test_a_failed_rerun_keeps_the_previous_output(data, tmp_path):
    out = tmp_path / "f.h5"
    assert cli("features", str(data), "--views", "1", "-o", str(out)).exit_code == 0
    before = out.read_bytes()
    make_bad("truncated-jpeg", data / "forest")
    refused(cli("features", str(data), "--views", "1", "-o", str(out)), "x.jpg")
    assert out.read_bytes() == before


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "I;16"])
def test_convertible_images_are_converted(mode, data, tmp_path):
    img = (
        _rgb(3).convert(mode)
        if mode != "I;16"
        else Image.fromarray((np.random.default_rng(0).random((48, 48)) * 65535).astype(np.uint16))
    )
    img.save(data / "forest" / ("y.tif" if mode in ("CMYK", "I;16") else "y.png"))
    result = cli("features", str(data), "--views", "1", "-o", str(tmp_path / "f.h5"))
    assert result.exit_code == 0, result.output
    cache = FeatureCache.load(tmp_path / "f.h5")
    assert len(cache.dataset) == 25 and np.isfinite(cache.features).all()


def test_dataset_shape_errors(data, tmp_path):
    (data / "empty").mkdir()
    refused(
        cli("features", str(data), "-o", str(tmp_path / "f.h5")), str(data / "empty"), "has no JPEG/PNG/TIFF images"
    )
    one = tmp_path / "one"
    shutil.copytree(data / "forest", one / "forest")
    refused(cli("features", str(one), "-o", str(tmp_path / "f.h5")), "only one class")
    listing = tmp_path / "list.txt"
    listing.write_text(
        f"{data}/forest/forest00.png\tforest\n{data}/forest/forest00.png\tforest\n{data}/water/water00.png\twater\n"
    )
    refused(cli("features", str(listing), "-o", str(tmp_path / "f.h5")), str(listing), "listed twice")
    listing.write_text("only-one-column\n")
    refused(cli("features", str(listing), "-o", str(tmp_path / "f.h5")), f"{listing}:1", "expected 'path<TAB>label'")
    assert not (tmp_path / "f.h5").exists()


def test_bad_multi_label_annotations(data, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("forest00\ttrees\nforest01\ttrees,water\n")
    out = str(tmp_path / "f.h5")
    refused(cli("features", str(data), "--labels", str(labels), "-o", out), str(labels), "no labels for", "add a row")
    labels.write_text("IMAGE\\LABEL\ttrees\twater\nforest00\t1\tyes\n")
    refused(cli("features", str(data), "--labels", str(labels), "-o", out), f"{labels}:2", "0/1 values")
    missing = cli("train", str(data), "--labels", str(tmp_path / "none.txt"), "-o", str(tmp_path / "run"))
    assert missing.exit_code == 2 and "none.txt' does not exist" in missing.output  # click's own usage check
    assert not (tmp_path / "f.h5").exists() and not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A tiny real run on generated images: features (1 view), 16-bit AHCL, a flat index."""
    root = tmp_path_factory.mktemp("small")
    data = make_demo_images(root / "data", per_class=5, size=48)
    for args in (
        ("features", str(data), "--views", "1", "-o", str(root / "f.h5")),
        ("train", str(root / "f.h5"), "--bits", "16", "--iterations", "2", "-o", str(root / "run")),
        ("build-index", str(root / "run" / "codes.h5"), "-o", str(root / "flat.index")),
    ):
        result = cli(*args)
        assert result.exit_code == 0, result.output
    return root, data


def query(root, query_file, *extra: str, out_name="r.tsv"):
    return cli(
        "query",
        str(root / "flat.index"),
        str(query_file),
        "--model",
        str(root / "run" / "model.pt"),
        "-o",
        str(root / out_name),
        *extra,
    )


def test_query_file_quirks_are_read(small_run):
    root, data = small_run
    first = sorted((data / "forest").iterdir())[0]
    comma_dir = root / "a,b"
    comma_dir.mkdir(exist_ok=True)
    shutil.copy(first, comma_dir / "q,1.png")
    qf = root / "quirks.txt"
    # CRLF endings, a BOM, blank lines, a comment, and a first path with a comma in it.
    qf.write_bytes(b"\xef\xbb\xbf" + f"a,b/q,1.png\r\n\r\n# a comment\r\n{first}\r\n   \r\n".encode())
    result = query(root, qf, "-k", "3")
    assert result.exit_code == 0, result.output
    lines = (root / "r.tsv").read_text().splitlines()
    assert len(lines) == 1 + 2 * 3 and lines[1].startswith("a,b/q,1.png\t1\t")


@pytest.mark.parametrize(
    "case, fragments",
    [
        ("missing", ("1 query image(s) not found, first 'nope.png'", "fix or remove those lines")),
        ("non-utf8", ("q.txt:2: not UTF-8 text",)),
        ("table-without-path", ("a CSV/TSV needs a header with a 'path' column",)),
        ("empty", ("no query image paths",)),
    ],
)
def test_bad_query_files(case, fragments, small_run):
    root, data = small_run
    qf = root / "q.txt"
    first = sorted((data / "forest").iterdir())[0]
    qf.write_bytes(
        {
            "missing": f"{first}\nnope.png\n".encode(),
            "non-utf8": f"{first}\n".encode() + b"caf\xe9.png\n",
            "table-without-path": b"file,label\nx.png,forest\n",
            "empty": b"\n# nothing\n",
        }[case]
    )
    refused(query(root, qf, out_name="bad.tsv"), str(qf), *fragments)
    assert not (root / "bad.tsv").exists()


def test_unreadable_query_image_fails_or_is_skipped(small_run):
    root, data = small_run
    bad = root / "bad.jpg"
    bad.write_text("not an image")
    qf = root / "q2.txt"
    qf.write_text(f"{sorted((data / 'forest').iterdir())[0]}\n{bad}\n")
    refused(query(root, qf, out_name="bad.tsv"), str(bad), "cannot decode image")
    assert not (root / "bad.tsv").exists()
    result = query(root, qf, "--on-error", "skip", "-k", "2", out_name="skip.tsv")
    assert result.exit_code == 0 and f"skipped: {bad}" in result.output
    assert len((root / "skip.tsv").read_text().splitlines()) == 1 + 2


def test_k_larger_than_the_index_returns_every_item(small_run):
    root, data = small_run
    qf = root / "q3.txt"
    qf.write_text(f"{sorted((data / 'forest').iterdir())[0]}\n")
    n = CodeFile.load(root / "run" / "codes.h5").codes.shape[0]
    result = query(root, qf, "-k", "1000", out_name="all.tsv")
    assert result.exit_code == 0, result.output
    assert len((root / "all.tsv").read_text().splitlines()) == 1 + n


def test_broken_hdf5_files(small_run, tmp_path):
    root, _ = small_run
    codes = root / "run" / "codes.h5"
    truncated = tmp_path / "trunc.h5"
    truncated.write_bytes(codes.read_bytes()[:2000])
    refused(cli("build-index", str(truncated), "-o", str(tmp_path / "i")), str(truncated), "unreadable codes file")
    schema = tmp_path / "schema.h5"
    shutil.copy(codes, schema)
    with h5py.File(schema, "a") as f:
        del f["ids"]
    refused(cli("build-index", str(schema), "-o", str(tmp_path / "i")), str(schema), "unreadable codes file")
    refused(cli("build-index", str(root / "f.h5"), "-o", str(tmp_path / "i")), "not a hashidx codes file")
    refused(cli("train", str(truncated), "-o", str(tmp_path / "run")), str(truncated), "feature cache")
    assert not (tmp_path / "i").exists() and not (tmp_path / "run" / "codes.h5").exists()


def test_index_files_that_are_not_binary_indexes(small_run, tmp_path):
    root, data = small_run
    qf = tmp_path / "q.txt"
    qf.write_text(f"{sorted((data / 'forest').iterdir())[0]}\n")
    sidecar = json.loads((root / "flat.index.json").read_text())
    for name, writer in (
        ("float.index", lambda p: faiss.write_index(faiss.IndexFlatL2(16), str(p))),
        ("garbage.index", lambda p: p.write_bytes(b"\x00" * 64)),
    ):
        path = tmp_path / name
        writer(path)
        # With the sidecar's sha256 the file is refused as not its index; without it, by its header, before FAISS.
        (tmp_path / f"{name}.json").write_text(json.dumps(sidecar))
        result = cli("query", str(path), str(qf), "--model", str(root / "run" / "model.pt"), "-o", str(tmp_path / "r"))
        refused(result, str(path), "index file and its sidecar do not match")
        (tmp_path / f"{name}.json").write_text(json.dumps({k: v for k, v in sidecar.items() if k != "index_sha256"}))
        result = cli("query", str(path), str(qf), "--model", str(root / "run" / "model.pt"), "-o", str(tmp_path / "r"))
        refused(result, str(path), "not a FAISS binary index")
    (tmp_path / "nosidecar.index").write_bytes((root / "flat.index").read_bytes())
    result = cli(
        "query",
        str(tmp_path / "nosidecar.index"),
        str(qf),
        "--model",
        str(root / "run" / "model.pt"),
        "-o",
        str(tmp_path / "r"),
    )
    refused(result, "nosidecar.index.json", "sidecar missing")
    assert not (tmp_path / "r").exists()


def test_empty_codes_and_empty_index(small_run, tmp_path):
    root, data = small_run
    cf = CodeFile.load(root / "run" / "codes.h5")
    empty = tmp_path / "empty.h5"
    CodeFile(cf.codes[:0], cf.ids[:0], (), cf.labels[:0], cf.bits, cf.method, cf.attrs).save(empty)
    refused(cli("build-index", str(empty), "-o", str(tmp_path / "i")), str(empty), "no codes to index")
    # An index emptied after it was built (e.g. by hand): searching it says so.
    index = faiss.read_index_binary(str(root / "flat.index"))
    index.reset()
    faiss.write_index_binary(index, str(tmp_path / "e.index"))
    shutil.copy(root / "flat.index.json", tmp_path / "e.index.json")
    qf = tmp_path / "q.txt"
    qf.write_text(f"{sorted((data / 'forest').iterdir())[0]}\n")
    args = (
        "query",
        str(tmp_path / "e.index"),
        str(qf),
        "--model",
        str(root / "run" / "model.pt"),
        "-o",
        str(tmp_path / "r"),
    )
    # The sidecar still describes the full index: the pair is refused as not belonging together...
    refused(cli(*args), str(tmp_path / "e.index"), "index file and its sidecar do not match")
    # ...and once the sidecar describes it, the empty index says what it is.
    sidecar = json.loads((tmp_path / "e.index.json").read_text())
    described = {**sidecar, "count": 0, "index_sha256": sha256_file(tmp_path / "e.index")}
    (tmp_path / "e.index.json").write_text(json.dumps(described))
    refused(cli(*args), str(tmp_path / "e.index"), "the index is empty")
    assert not (tmp_path / "r").exists()


def test_features_made_of_other_layers_are_refused(small_run, tmp_path):
    root, data = small_run
    # A cache from before multi-level pooling records no `layers`: its vectors are the head's pooled 1280.
    legacy = tmp_path / "legacy.h5"
    shutil.copy(root / "f.h5", legacy)
    with h5py.File(legacy, "a") as f:
        del f.attrs["layers"]
    assert FeatureCache.load(legacy).layers == "avgpool(head)"
    refused(query(root, legacy, out_name="bad.tsv"), str(legacy), "avgpool(head)", "retrain the model")
    # A model trained on such features cannot encode images with the current extractor.
    import torch

    ck = torch.load(root / "run" / "model.pt", weights_only=True)
    del ck["config"]["layers"]
    old_model = tmp_path / "old.pt"
    torch.save(ck, old_model)
    qf = tmp_path / "q.txt"
    qf.write_text(f"{sorted((data / 'forest').iterdir())[0]}\n")
    refused(
        cli(
            "query",
            str(root / "flat.index"),
            str(qf),
            "--model",
            str(old_model),
            "--allow-model-mismatch",
            "-o",
            str(tmp_path / "bad.tsv"),
        ),
        "trained on avgpool(head) of efficientnet-lite0",
        "retrain the model",
    )
    assert not (tmp_path / "bad.tsv").exists() and not (root / "bad.tsv").exists()


@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_imagery_an_8bit_model_cannot_scale_is_refused_naming_the_option_that_reads_it(small_run, tmp_path, dtype):
    """A 16-bit or float raster added to an index of an 8-bit model: one line naming `add --scale`."""
    rasterio = pytest.importorskip("rasterio")
    root, _ = small_run
    tif = tmp_path / f"mosaic-{dtype}.tif"
    pixels = (np.arange(3 * 64 * 64) % 4000).reshape(3, 64, 64).astype(dtype)
    grid = {"crs": "EPSG:32618", "transform": rasterio.transform.from_origin(500000, 4000000, 300, 300)}
    with rasterio.open(tif, "w", driver="GTiff", width=64, height=64, count=3, dtype=dtype, **grid) as dst:
        dst.write(pixels)
    before = (root / "flat.index.json").read_bytes()
    result = cli("add", str(root / "flat.index"), str(tif), "--model", str(root / "run" / "model.pt"))
    refused(result, str(tif), f"{dtype} pixels", "8-bit images", "--scale auto")
    assert (root / "flat.index.json").read_bytes() == before


def test_a_checkpoint_given_as_a_dataset_is_named(small_run, tmp_path):
    root, _ = small_run
    refused(
        cli("train", str(root / "run" / "model.pt"), "-o", str(tmp_path / "r")), "a torch checkpoint", "not a dataset"
    )
