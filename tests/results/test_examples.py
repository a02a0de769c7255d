"""Multi-example queries: an examples file in `query`, the two rules, and marked negatives that never come back."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from click.testing import CliRunner

from hashidx.cli import main
from hashidx.results.examples import Examples, indexed_examples, search_examples
from hashidx.results.query import Searcher

pytestmark = pytest.mark.realdata


def rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def test_one_positive_id_is_the_plain_query_of_its_code(itq_index):
    searcher = Searcher(itq_index)
    one = search_examples(searcher, Examples("q", indexed_examples(searcher, [5]), np.empty((0, 32))), k=10,
                          rerank="none")  # fmt: skip
    plain = searcher.search(searcher.encode(itq_index.parent / "run" / "codes.h5"), k=10)
    row = list(searcher.code_table().ids).index(5)
    assert one.ids[0].tolist() == plain.ids[row].tolist()
    assert one.distances[0].tolist() == plain.distances[row].tolist()


@pytest.mark.parametrize("rule", ["mean", "fusion"])
def test_an_examples_file_answers_each_query_and_never_returns_negatives(itq_index, ucmd_slice, tmp_path, rule):
    image = sorted((ucmd_slice / "beach").iterdir())[-1]  # a query image, not in the database
    (tmp_path / "ex.tsv").write_text(
        f"query\texample\tmark\nbeachy\t{image}\t+\nbeachy\t3\t+\nbeachy\t4\t-\nbeachy\t5\t-\none\t7\t+\n"
    )
    out = tmp_path / "r.tsv"
    result = CliRunner().invoke(
        main,
        ["query", str(itq_index), str(tmp_path / "ex.tsv"), "--model", str(itq_index.parent / "run" / "model.pt"),
         "-k", "10", "--rule", rule, "-o", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    got = rows(out)
    assert [r["query"] for r in got] == ["beachy"] * 10 + ["one"] * 10
    assert not {r["id"] for r in got if r["query"] == "beachy"} & {"4", "5"}
    assert [r["rank"] for r in got[:10]] == [str(i) for i in range(1, 11)]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("query\texample\tmark\nq\t3\t?\n", "ex.tsv:2: mark '?' is neither + nor -"),
        ("query\texample\tmark\nq\tnope.jpg\t+\n", "ex.tsv:2: example 'nope.jpg' is neither an indexed id nor"),
        ("query\texample\tmark\nq\t3\t-\n", "ex.tsv: query 'q' has only negative examples"),
        ("query\texample\tmark\nq\t99999\t+\n", "example id 99999: not in the index"),
    ],
)
def test_bad_examples_files_get_one_line(itq_index, tmp_path, monkeypatch, text, says):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ex.tsv").write_text(text)
    result = CliRunner().invoke(main, ["query", str(itq_index), "ex.tsv", "-o", "r.tsv"])
    assert result.exit_code == 1 and says in result.output and result.output.count("\n") == 1, result.output
    assert not (tmp_path / "r.tsv").exists()
