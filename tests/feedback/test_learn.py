"""Learning from marks on a real slice: AHCL on the marked items' cached features, the archive re-encoded by the
new head, a new folder that appears whole; and the CLI's refusals."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from hashidx.cli import main
from hashidx.feedback.learn import LearnSettings, archive_features, learn_run
from hashidx.feedback.marks import Mark, Marks, write_marks
from hashidx.results.examples import Examples, indexed_content, indexed_examples, search_examples
from hashidx.results.query import Searcher

pytestmark = pytest.mark.realdata


def concept_marks(index, cls: str, positives: int = 3, negatives: int = 6) -> Marks:
    """A user's first marks: a few items of `cls` right, a few others wrong (ground truth from the slice's folders)."""
    archive = archive_features(index)
    labels = np.asarray(archive.label_names())
    pos = archive.ids[labels == cls][:positives]
    neg = archive.ids[labels != cls][::7][:negatives]
    return Marks.of([Mark(int(i), cls, True) for i in pos] + [Mark(int(i), cls, False) for i in neg])


def test_same_marks_and_seed_give_the_same_codes_and_a_searchable_folder(itq_index, tmp_path):
    marks = concept_marks(itq_index, "airplane")
    write_marks(marks, tmp_path / "marks.tsv")
    settings = LearnSettings(iterations=4)
    first = learn_run(itq_index, tmp_path / "marks.tsv", tmp_path / "a", settings=settings)
    learn_run(itq_index, tmp_path / "marks.tsv", tmp_path / "b", settings=settings)
    with h5py.File(tmp_path / "a" / "codes.h5") as fa, h5py.File(tmp_path / "b" / "codes.h5") as fb:
        assert np.array_equal(fa["codes"][:], fb["codes"][:]) and np.array_equal(fa["ids"][:], fb["ids"][:])
        assert fa["content"].shape == (80, 32) and np.array_equal(fa["content"][:], fb["content"][:])
    assert first["items"] == 80 and first["concepts"] == ["airplane"] and first["marks"] == len(marks)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "codes.h5", "index.faiss", "index.faiss.json", "learn.json", "marks.tsv", "model.pt"]  # fmt: skip
    assert not list(tmp_path.glob(".a.tmp-*"))

    # The concept's positives as a multi-example query on the learned index: its items come first, and the
    # marked negatives never come back.
    searcher = Searcher(tmp_path / "a" / "index.faiss", tmp_path / "a" / "model.pt")
    pos, neg = marks.examples("airplane")
    ex = Examples("airplane", indexed_examples(searcher, pos), indexed_examples(searcher, neg), set(neg))
    res = search_examples(searcher, ex, k=20)
    got = [res.labels.get(i) for i in res.ids[0].tolist()]
    assert not set(res.ids[0].tolist()) & set(neg)
    assert got.count("airplane") >= 10, got  # 16 airplanes of 80 items: chance gives 4 of 20
    # Ordered inside codes by content vectors as well: the same items' multiset at each distance.
    ex.content = np.concatenate([indexed_content(searcher, pos), indexed_content(searcher, neg)])
    ordered = search_examples(searcher, ex, k=20, rerank="features")
    assert not set(ordered.ids[0].tolist()) & set(neg) and len(ordered.ids[0]) == 20


def test_an_interrupted_learn_leaves_no_folder_and_the_base_whole(itq_index, tmp_path, monkeypatch):
    write_marks(concept_marks(itq_index, "beach"), tmp_path / "marks.tsv")
    import hashidx.feedback.learn as learn_module

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(learn_module.idx, "build", killed)
    with pytest.raises(KeyboardInterrupt):
        learn_run(itq_index, tmp_path / "marks.tsv", tmp_path / "new", settings=LearnSettings(iterations=2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["marks.tsv"]
    monkeypatch.undo()
    assert Searcher(itq_index).search(Searcher(itq_index).encode(itq_index.parent / "run" / "codes.h5"), 3)


@pytest.mark.parametrize(
    ("marks", "says"),
    [
        ("0\tpond\t+\n100000\tpond\t-\n", "marks.tsv: 1 marked item id(s) are not in the index, e.g. 100000;"),
        ("0\tpond\t-\n", "marks.tsv: concept 'pond' has only negative marks;"),
        ("", "marks.tsv: no marks;"),
    ],
)
def test_bad_marks_get_one_line_and_no_folder(itq_index, tmp_path, monkeypatch, marks, says):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "marks.tsv").write_text(marks)
    result = CliRunner().invoke(main, ["learn", str(itq_index), "--marks", "marks.tsv", "-o", "out"])
    assert result.exit_code == 1
    assert result.output.startswith(f"error: {says}") and result.output.count("\n") == 1, result.output
    assert not (tmp_path / "out").exists()


def test_learn_refuses_an_existing_output(itq_index, tmp_path):
    write_marks(concept_marks(itq_index, "forest"), tmp_path / "marks.tsv")
    (tmp_path / "out").mkdir()
    result = CliRunner().invoke(
        main, ["learn", str(itq_index), "--marks", str(tmp_path / "marks.tsv"), "-o", str(tmp_path / "out")]
    )
    assert result.exit_code == 1 and "already exists; learn into a new folder" in result.output


def test_info_describes_a_learned_folder(itq_index, tmp_path):
    write_marks(concept_marks(itq_index, "harbor"), tmp_path / "marks.tsv")
    learn_run(itq_index, tmp_path / "marks.tsv", tmp_path / "out", settings=LearnSettings(iterations=2))
    result = CliRunner().invoke(main, ["info", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "learned folder ('hashidx learn')" in result.output and "concepts: ['harbor']" in result.output
    assert result.output.count("[present]") == 4
