"""Marks files: TSV and JSON, the latest verdict per item and concept, and one-line refusals."""

from __future__ import annotations

import numpy as np
import pytest

from hashidx.errors import HashidxError
from hashidx.feedback.marks import Mark, Marks, parse_marks, read_marks, write_marks


def test_tsv_latest_verdict_wins_and_round_trips(tmp_path):
    marks = parse_marks("item_id\tconcept\tmark\n# a comment\n3\tpond\t+\n5\tpond\t-\n3\tpond\t-\n4\troad\t+\n", "m")
    assert [(m.item, m.concept, m.positive) for m in marks.rows] == [(5, "pond", False), (3, "pond", False),
                                                                    (4, "road", True)]  # fmt: skip
    assert marks.concepts == ("pond", "road")
    assert marks.examples("pond") == ([], [5, 3])
    write_marks(marks, tmp_path / "m.tsv")
    assert read_marks(tmp_path / "m.tsv") == marks


def test_json_marks_equal_the_tsv():
    tsv = parse_marks("1\ta\t+\n2\ta\t-\n", "m.tsv")
    js = parse_marks('[{"item": 1, "concept": "a", "mark": "+"}, {"item": "2", "concept": "a", "mark": "-"}]', "m")
    assert js == tsv


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("x\tpond\t+\n", "item id 'x' is not an integer"),
        ("1\tpond\t?\n", "neither + nor -"),
        ("1\tpond\n", "expected 'item_id<TAB>concept<TAB>+|-'"),
        ("1\t \t+\n", "the concept is empty"),
        ('[{"item": 1}]', "entry 0 is not an object with 'item', 'concept' and 'mark'"),
    ],
)
def test_bad_lines_are_named(text, says):
    with pytest.raises(HashidxError, match=r"m\.tsv") as err:
        parse_marks(text, "m.tsv")
    assert says in str(err.value) and "\n" not in str(err.value)


def test_unknown_ids_and_negative_only_concepts_are_refused():
    marks = Marks.of([Mark(1, "pond", True), Mark(99, "pond", False), Mark(2, "road", False)])
    with pytest.raises(HashidxError, match="1 marked item id.*e.g. 99"):
        marks.check(np.arange(10), "m.tsv")
    with pytest.raises(HashidxError, match="concept 'road' has only negative marks"):
        marks.learnable("m.tsv")
