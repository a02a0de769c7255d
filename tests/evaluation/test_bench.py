"""`hashidx bench` on a real slice: every method x length, the scaling run, report files and plots."""

import json

from click.testing import CliRunner
from PIL import Image

from hashidx.cli import main


def test_bench_on_a_slice(ucmd_slice, tmp_path):
    out = tmp_path / "report"
    result = CliRunner().invoke(
        main,
        [
            "--quiet",
            "bench",
            str(ucmd_slice),
            "--bits",
            "16,32",
            "--views",
            "1",
            "--iterations",
            "3",
            "--train-pool",
            "0.5",
            "--scaling-sizes",
            "3",
            "-o",
            str(out),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert [(r["method"], r["bits"]) for r in report["results"]] == [
        (m, b) for m in ("ahcl", "symmetric", "itq", "lsh") for b in (16, 32)
    ]
    for r in report["results"]:
        assert 0 < r["mAP"] <= 1 and r["n_database"] == 80 and r["pool"] == 40
        # The asymmetric claim, counted: AHCL's database codes need only the pool's images.
        assert r["database_images_through_network"] == (40 if r["method"] == "ahcl" else 80)
        assert r["pr_curve"]["recall"] == sorted(r["pr_curve"]["recall"])
    assert [s["n"] for s in report["scaling"]] == [40, 60, 80]
    assert all(s["ahcl_images"] == 40 and s["symmetric_images"] == s["n"] for s in report["scaling"])
    assert report["split"]["n_query"] == 20 and "tie-aware" in report["tie_rule"]
    assert report["machine"]["cpus"] >= 1 and report["versions"]["faiss"]
    # The features ran on the default runtime, and the cache and the runs' models say so.
    assert report["runtime"] == "onnx" and report["backbone_runtimes"][0]["max_abs_diff"] <= 1e-4
    from hashidx.features.cache import FeatureCache
    from hashidx.methods.checkpoints import load_checkpoint

    assert FeatureCache.load(out / "features.h5").runtime == "onnx"
    assert load_checkpoint(out / "runs" / "ahcl-16" / "model.pt")[1]["runtime"] == "onnx"
    md = (out / "report.md").read_text()
    for png in ("map_vs_bits.png", "pr_curves.png", "precision_at_k.png", "encoding_vs_n.png"):
        assert f"]({png})" in md
        with Image.open(out / png) as img:
            assert img.format == "PNG" and img.width > 300


def test_bench_on_multi_label_annotations(ucmd_slice, tmp_path):
    """--labels: runs train and are scored on the label sets; the report has the multi-label columns."""
    from ..data.test_multilabel import TABLE

    out = tmp_path / "report"
    args = ["--quiet", "bench", str(ucmd_slice), "--labels", str(TABLE), "--bits", "16", "--methods", "ahcl,lsh"]
    args += ["--views", "1", "--iterations", "2", "--train-pool", "0.5", "--scaling-sizes", "2", "-o", str(out)]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["multilabel"] and report["label_names"] == 17 and report["rerank"] == 400
    for r in report["results"]:
        assert 0 < r["NDCG@100"] <= 1 and 0 < r["NDCG@100_no_rerank"] <= 1 and r["ACG@100"] > 0
    text = (out / "report.md").read_text()
    assert "Multi-label: 17 labels" in text and "NDCG@100 (no re-rank)" in text


def test_bench_without_matplotlib_fails_before_any_work(ucmd_slice, tmp_path):
    """The report's plots are its last step; a missing matplotlib is said at once, not after the runs."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from hashidx.cli import main\n"
        f"main(['--quiet', 'bench', {str(ucmd_slice)!r}, '-o', {str(tmp_path / 'b')!r}])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: the benchmark report needs matplotlib; pip install matplotlib (a hashidx dependency)"
    )
    assert not (tmp_path / "b").exists()
