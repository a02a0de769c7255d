"""The docs' Python API page runs as written (on a slice of UC Merced), and the README stays a landing page."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


@pytest.mark.realdata
def test_python_api_page_runs_on_a_slice(ucmd_slice, tmp_path, monkeypatch):
    first, second, warm = python_blocks(ROOT / "docs" / "python-api.md")
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
        rows[0].split("\t") == ["query", "rank", "id", "path", "distance", "score", "lon", "lat"]
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


def test_readme_is_a_landing_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    for page in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / page).is_file(), f"README links to a missing page {page}"
