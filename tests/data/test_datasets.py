"""Dataset discovery: class folders and list files."""

import pytest

from hashidx.data.datasets import load_dataset
from hashidx.errors import HashidxError


def test_class_folders(image_folder, tmp_path):
    ds = load_dataset(image_folder(tmp_path))
    assert ds.classes == ("a", "b") and len(ds) == 10 and ds.paths[0] == "a/a0.png"
    assert ds.labels.tolist() == [0] * 5 + [1] * 5


def test_list_file_relative_to_itsimage_folder(image_folder, tmp_path):
    image_folder(tmp_path)
    (tmp_path / "list.tsv").write_text("# comment\na/a0.png\tcat\n\nb/b1.png\tdog\r\nb/b2.png\tcat\n")
    ds = load_dataset(tmp_path / "list.tsv")
    assert ds.classes == ("cat", "dog") and ds.labels.tolist() == [0, 1, 0]
    assert ds.absolute(1) == tmp_path / "b/b1.png"


@pytest.mark.parametrize(
    "text, message",
    [
        ("a/a0.png\n", "expected 'path<TAB>label'"),
        ("a/a0.png\tx\na/a0.png\ty\n", "listed twice"),
        ("a/a0.png\tx\na/a1.png\tx\n", "only one class"),
    ],
)
def test_list_file_errors(tmp_path, text, message):
    (tmp_path / "l.tsv").write_text(text)
    with pytest.raises(HashidxError, match=message):
        load_dataset(tmp_path / "l.tsv")


def test_empty_class_folder_is_refused(image_folder, tmp_path):
    image_folder(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(HashidxError, match="empty: class folder has no"):
        load_dataset(tmp_path)


def test_unlabelled_archives_are_read_only_where_labels_are_not_needed(image_folder, tmp_path):
    root = image_folder(tmp_path / "labelled")
    loose = tmp_path / "archive" / "loose"
    loose.mkdir(parents=True)
    for p in sorted((root / "a").iterdir())[:3]:
        (loose / p.name).symlink_to(p)
    ds = load_dataset(loose, labels_required=False)
    assert not ds.labelled and ds.classes == () and ds.labels.tolist() == [-1, -1, -1]
    assert ds.paths == ("a0.png", "a1.png", "a2.png")
    with pytest.raises(HashidxError, match="no class folders found"):
        load_dataset(loose)
    one = load_dataset(loose / "a1.png", labels_required=False)
    assert one.paths == ("a1.png",) and one.root == loose and not one.labelled
    (tmp_path / "archive" / "paths.txt").write_text("# archive\nloose/a0.png\nloose/a2.png\n")
    listed = load_dataset(tmp_path / "archive" / "paths.txt", labels_required=False)
    assert listed.paths == ("loose/a0.png", "loose/a2.png") and not listed.labelled
    # class folders stay labelled even where labels are optional
    assert load_dataset(root, labels_required=False).classes == ("a", "b")
