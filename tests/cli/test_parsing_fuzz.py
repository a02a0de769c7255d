"""Property-based tests of the two text formats users write by hand: query files and list files."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hashidx.data.datasets import parse_list_text
from hashidx.data.queryfile import parse_query_text
from hashidx.errors import HashidxError

# A name as a user would write it: no line breaks, no tab, no surrounding space, not a comment.
_chars = st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\t\x0b\x0c\x1c\x1d\x1e\x85")
name = st.text(_chars, min_size=1, max_size=30).map(str.strip).filter(lambda s: s and not s.startswith("#"))
ending = st.sampled_from(["\n", "\r\n", "\r"])
noise = st.sampled_from(["", "   ", "# a comment", "\t"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(name, ending, noise, ending), min_size=1, max_size=8), st.booleans())
def test_plain_query_lists_read_back_exactly(rows, bom):
    # The first line decides the format: a plain list unless it names a 'path' column.
    if "path" in [c.strip().lower() for c in rows[0][0].split("," if "," in rows[0][0] else "\t")]:
        return
    text = ("\ufeff" if bom else "") + "".join(n + e1 + z + e2 for n, e1, z, e2 in rows)
    assert parse_query_text(text.lstrip("\ufeff"), "q.txt") == [n for n, *_ in rows]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(name.filter(lambda s: "," not in s and '"' not in s), min_size=1, max_size=8),
    st.sampled_from([",", "\t"]),
    ending,
)
def test_tables_with_a_path_column_read_back_exactly(names, delim, end):
    text = f"id{delim}Path{delim}label{end}" + "".join(f"{i}{delim}{n}{delim}x{end}" for i, n in enumerate(names))
    assert parse_query_text(text, "q.csv") == names


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_query_text_parses_or_fails_with_a_hashidx_error(text):
    names = _parsed_or_refused(parse_query_text, text, "q.txt")
    assert names is None or (names and all(n == n.strip() and n for n in names))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(name, name, ending), min_size=1, max_size=8))
def test_list_files_read_back_exactly(rows):
    text = "".join(f"{p}\t{label}{end}" for p, label, end in rows)
    assert parse_list_text(text, "l.txt") == [(p, label) for p, label, _ in rows]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_list_text_parses_or_fails_naming_the_file(text):
    rows = _parsed_or_refused(parse_list_text, text, "l.txt")
    assert rows is None or (rows and all(p and label and "\t" not in p + label for p, label in rows))


def _parsed_or_refused(parse, text: str, source: str):
    """The parse, or None after checking the refusal is a HashidxError that names the file."""
    try:
        return parse(text, source)
    except HashidxError as exc:
        assert str(exc).startswith(source)
        return None
