"""The docs' Python API page runs as written (on a slice of UC Merced), and the README stays a landing page."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


@pytest.mark.realdata
def test_python_api_page_runs_on_a_slice(ucmd_slice, tmp_path, monkeypatch):
    first, second, warm, feedback = python_blocks(ROOT / "docs" / "python-api.md")
    assert 'DATA = Path("../shared/datasets/UCMerced_LandUse/Images")' in first
    first = first.replace('Path("../shared/datasets/UCMerced_LandUse/Images")', f"Path({str(ucmd_slice)!r})")
    monkeypatch.chdir(tmp_path)
    beach = sorted((ucmd_slice / "beach").iterdir())[:2]
    Path("queries.txt").write_text("".join(f"{os.path.relpath(p)}\n" for p in beach))
    scope: dict = {}
    exec(compile(first, "python-api.md#1", "exec"), scope)
    assert (tmp_path / "runs" / "gallery.html").is_file()
    rows = (tmp_path / "runs" / "results.tsv").read_text().splitlines()
    assert (
        rows[0].split("\t") == ["query", "rank", "id", "path", "distance", "score", "lon", "lat", "datetime"]
        and len(rows) == 1 + 2 * 20
    )
    exec(compile(second, "python-api.md#2", "exec"), scope)
    distances, ids = scope["distances"], scope["ids"]
    assert (distances[:, 0] == 0).all()  # a database code finds its own code at distance 0
    for d, i in zip(distances.tolist(), ids.tolist()):
        assert list(zip(d, i)) == sorted(zip(d, i))  # ranked by (distance, id)
    exec(compile(warm, "python-api.md#3", "exec"), scope)
    hits = scope["hits"]
    assert hits.queries == ["my query"] and hits.ids.shape == (1, 5) and hits.scores is not None
    # the warm searcher answers as the one-shot run_query does
    assert scope["results"].ids[0][:5].tolist() == hits.ids[0].tolist()
    exec(compile(feedback, "python-api.md#4", "exec"), scope)
    assert 40 not in scope["more"].ids[0].tolist() and len(scope["more"].ids[0]) == 10
    assert scope["record"]["concepts"] == ["coast"] and scope["record"]["items"] == 80
    assert (tmp_path / "runs" / "learned" / "index.faiss").is_file()


def test_readme_is_a_landing_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    for page in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / page).is_file(), f"README links to a missing page {page}"


# Shell lines of the README and docs that this test does not run, each with the reason. Every other line of every
# ```bash block runs as written, in order, one working folder per page.
NOT_RUN = {
    "python3 -m venv": "the set-up command: .ci/run runs it verbatim",
    ".venv/bin/pip ": "installing: .ci/run installs the dev extra, which holds every extra the docs name",
    "pip install ": "installing: .ci/run installs the dev extra, which holds every extra the docs name",
    ".venv/bin/python -m pytest": "the test suite itself",
    ".venv/bin/ruff ": "run by .ci/run",
    ".venv/bin/mypy": "run by .ci/run",
    ".venv/bin/mkdocs ": "run by .ci/run",
    "hashidx datasets download": "needs the internet: data/ucmerced is a slice of the shared copy instead",
    ".venv/bin/hashidx datasets download": "needs the internet: data/ucmerced is a slice of the shared copy instead",
    "python benchmarks/": "a benchmark script (minutes of measurement); its figures are in docs/benchmarks.md",
    "hashidx bench ": "every method at 16-64 bits needs a training pool of 64+ images (minutes); "
    "tests/evaluation/test_bench.py runs it on a slice with shorter codes",
}
# The data the docs name, as the slices the test runs them on (real images, fewer of them).
SHARED_DATA = ROOT.parent / "shared" / "datasets"


def shell_blocks(page: Path) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.S)


def doc_pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").glob("*.md"))]


def runnable(block: str) -> str:
    """The block without the lines NOT_RUN names (a continued line goes with its first)."""
    kept, skipping = [], False
    for line in block.splitlines():
        first = line.strip()
        if not skipping:
            skipping = any(first.startswith(prefix) for prefix in NOT_RUN)
        if not skipping:
            kept.append(line)
        if not line.rstrip().endswith("\\"):
            skipping = False
    return "\n".join(kept)


def pages_with_commands() -> list[str]:
    seen: set[str] = set()
    out = []
    for page in doc_pages():
        blocks = [runnable(b) for b in shell_blocks(page)]
        fresh = [b for b in blocks if b.strip() and b not in seen]
        seen.update(fresh)
        if any(l.lstrip().startswith(("hashidx", ".venv/bin/hashidx")) for b in fresh for l in b.splitlines()):
            out.append(page.name)
    return out


@pytest.fixture(scope="module")
def doc_data(ucmd_slice, eurosat, scenes, tmp_path_factory) -> dict[str, Path]:
    """Slices of UC Merced (4 classes x 10 images) and EuroSAT-MS (2 classes x 5 chips), as symlinks."""
    ucmd = next(ucmd_slice.glob("*/*.jpg")).resolve().parents[1]  # the shared copy the session's slice links to
    out = tmp_path_factory.mktemp("docdata")
    for source, name, classes, per in ((ucmd, "ucmd", ("agricultural", "beach", "forest", "harbor"), 10),
                                       (eurosat, "eurosat", ("Forest", "River"), 5)):  # fmt: skip
        for cls in classes:
            (out / name / cls).mkdir(parents=True)
            for img in sorted((source / cls).iterdir())[:per]:
                (out / name / cls / img.name).symlink_to(img)
    return {"ucmd": out / "ucmd", "eurosat": out / "eurosat"}


def as_run_here(block: str, data: dict[str, Path]) -> str:
    """The data paths the docs name, pointed at the slices; every other word as written."""
    for named in ("../shared/datasets/UCMerced_LandUse/Images", "data/ucmerced"):
        block = block.replace(named, str(data["ucmd"]))
    block = block.replace("../shared/datasets/EuroSAT_MS", str(data["eurosat"]))
    return block.replace("../shared/", f"{SHARED_DATA.parent}/")


@pytest.mark.realdata
@pytest.mark.parametrize("page", pages_with_commands())
def test_shell_blocks_run_as_written(page, doc_data, tmp_path):
    """Each page's ```bash blocks, in order, in one fresh folder: every command exits 0, and nothing prints a
    traceback, a Python warning or a native log line."""
    path = ROOT / page if page == "README.md" else ROOT / "docs" / page
    blocks = [as_run_here(runnable(b), doc_data) for b in shell_blocks(path)]
    venv_bin = Path(sys.executable).parent
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "bin").symlink_to(venv_bin)  # the docs' `.venv/bin/hashidx`
    script = "set -euo pipefail\n" + "\n".join(blocks)
    out = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1"},
        timeout=1200,
    )
    assert out.returncode == 0, f"{page}: {out.stderr[-3000:]}"
    noise = [l for l in out.stderr.splitlines() if re.search(r"Traceback|Warning|warnings\.warn|\.cc:\d+\]", l)]
    assert not noise, f"{page}: {noise[:5]}"


def test_every_skipped_line_has_a_reason_and_every_page_runs():
    """The pages with commands are the ones expected: a new page's commands join the test by themselves."""
    pages = pages_with_commands()
    assert {"README.md", "tutorial-ucmerced.md", "rasters.md", "engines.md"} <= set(pages)
    skipped = [
        line.strip()
        for page in doc_pages()
        for block in shell_blocks(page)
        for line in block.splitlines()
        if line.strip() and line not in runnable(block).splitlines()
    ]
    assert skipped and all(any(line.startswith(p) for p in NOT_RUN) or line.startswith(("-", "'")) for line in skipped)
