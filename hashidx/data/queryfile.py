"""Query and image-list files: one path a line, or a CSV/TSV with a 'path' column; a folder of images."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from hashidx.data.datasets import IMAGE_SUFFIXES
from hashidx.data.rasters import split_chip
from hashidx.errors import HashidxError


def parse_query_text(text: str, source: str | Path) -> list[str]:
    """Query names from a query file's text: a CSV/TSV with a 'path' column, else one path a line.

    Blank lines and '#' comments are skipped; surrounding whitespace is stripped.
    """
    lines = text.splitlines()
    header = next((l for l in lines if l.strip() and not l.lstrip().startswith("#")), "")
    delim = "\t" if "\t" in header else ","
    columns = [c.strip().lower() for c in header.split(delim)]
    # A table only when its header names a 'path' column: a plain path may itself contain a comma.
    if "path" in columns:
        try:
            rows = [
                r
                for r in csv.DictReader(io.StringIO(text, newline=""), delimiter=delim)
                if any((v or "").strip() for v in r.values() if isinstance(v, str))
            ]
        except csv.Error as exc:
            raise HashidxError(
                f"{source}: not a readable CSV/TSV ({exc}); fix the table or list one path a line"
            ) from None
        key = next(k for k in rows[0] if k is not None and k.strip().lower() == "path") if rows else "path"
        names = [n for n in ((r.get(key) or "").strip() for r in rows) if n]
    else:
        names = [l.strip() for l in lines if l.strip() and not l.lstrip().startswith("#")]
    if not names:
        raise HashidxError(f"{source}: no query image paths in the file")
    return names


def read_query_file(path: str | Path) -> list[tuple[str, Path]]:
    """(as written, resolved) image paths: one per line, or a CSV/TSV whose header has a 'path' column.

    Relative paths are taken from the query file's folder; blank lines and '#' comments are skipped.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise HashidxError(f"{path}: query file not found") from None
    except IsADirectoryError:
        raise HashidxError(f"{path}: is a folder; pass a file of image paths") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise HashidxError(
            f"{path}:{line}: not UTF-8 text; save the query file as UTF-8 (or rename the image to a UTF-8 name)"
        ) from None
    names = parse_query_text(text, path)
    if any("\x00" in n for n in names):
        raise HashidxError(f"{path}: a line holds a NUL byte; save the query file as plain text")
    out = [(n, (path.parent / n).resolve()) for n in names]
    missing = [n for n, p in out if not split_chip(p)[0].is_file()]  # a chip `scene.tif#c,r,w,h` names its scene
    if missing:
        hint = "; a CSV/TSV needs a header with a 'path' column" if ("," in missing[0] or "\t" in missing[0]) else ""
        raise HashidxError(
            f"{path}: {len(missing)} query image(s) not found, first {missing[0]!r} "
            f"(paths are relative to {path.parent}); fix or remove those lines{hint}"
        )
    return out


def split_queries(path: Path) -> list[tuple[str, Path]] | None:
    """The query images of a run's split.json (under the images' folder it records); None for any other file."""
    from hashidx.data.split import is_split, load_split

    if path.suffix.lower() != ".json" or not path.is_file():
        return None
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    if not is_split(obj):
        return None
    split = load_split(path)
    if split.image_root is None:
        raise HashidxError(
            f"{path}: this split records no images' folder (it was not written by 'hashidx train'); use the run "
            "folder's split.json, or list the query images one a line"
        )
    root = Path(split.image_root)
    out = [(name, (root / name).resolve()) for name in split.query]
    missing = [n for n, p in out if not split_chip(p)[0].is_file()]
    if missing:
        raise HashidxError(
            f"{path}: {len(missing)} of the split's query images are not in {root}, first {missing[0]!r}; the "
            "images moved since training: list the query images one a line instead"
        )
    return out


def image_list(source: str | Path) -> list[tuple[str, Path]]:
    """(name, path) of the images to add or query: an image file or one chip of a scene (`scene.tif#c,r,w,h`), every
    image under a folder (sorted), a run's split.json (its query images), or a query-style list file."""
    source = Path(source)
    queries = split_queries(source)
    if queries is not None:
        return queries
    if source.is_file() and source.suffix.lower() in IMAGE_SUFFIXES:  # one image or scene, not a list of them
        return [(source.name, source.resolve())]
    scene, window = split_chip(source)
    if window is not None and scene.is_file():  # one chip of a scene: `scene.tif#COL,ROW,WIDTH,HEIGHT`
        return [(source.name, source.resolve())]
    if source.is_dir():
        found = sorted(
            p
            for p in source.rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        )
        if not found:
            raise HashidxError(f"{source}: no JPEG/PNG/TIFF images in this folder")
        return [(p.relative_to(source).as_posix(), p.resolve()) for p in found]
    return read_query_file(source)


EXAMPLE_COLUMNS = ("query", "example", "mark")


def read_examples_file(path: str | Path) -> list[tuple[str, list[str], list[str]]] | None:
    """Multi-example queries from a TSV/CSV whose header is `query, example, mark`: rows sharing a query name make
    one query; an example is an indexed item's id or an image path (relative to the file's folder); mark is + or -.
    None for any other file (a plain query list)."""
    path = Path(path)
    if not path.is_file() or path.suffix.lower() in (".h5", ".hdf5", ".json") + IMAGE_SUFFIXES:
        return None
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (UnicodeDecodeError, OSError):
        return None
    lines = [l for l in text.splitlines() if l.strip() and not l.lstrip().startswith("#")]
    delim = "\t" if lines and "\t" in lines[0] else ","
    if not lines or tuple(c.strip().lower() for c in lines[0].split(delim)) != EXAMPLE_COLUMNS:
        return None
    queries: dict[str, tuple[list[str], list[str]]] = {}
    for n, row in enumerate(csv.reader(io.StringIO("\n".join(lines[1:])), delimiter=delim), 2):
        if len(row) != 3 or not row[0].strip() or not row[1].strip():
            raise HashidxError(f"{path}:{n}: expected 'query{delim}example{delim}mark' (+ or -), got {row!r}")
        name, example, mark = (x.strip() for x in row)
        if mark not in ("+", "-"):
            raise HashidxError(f"{path}:{n}: mark {mark!r} is neither + nor -")
        if not example.isdigit() and not split_chip((path.parent / example).resolve())[0].is_file():
            raise HashidxError(
                f"{path}:{n}: example {example!r} is neither an indexed id nor an image (paths are relative to "
                f"{path.parent})"
            )
        pos, neg = queries.setdefault(name, ([], []))
        (pos if mark == "+" else neg).append(example)
    if not queries:
        raise HashidxError(f"{path}: no example rows under the 'query, example, mark' header")
    for name, (pos, _) in queries.items():
        if not pos:
            raise HashidxError(f"{path}: query {name!r} has only negative examples; give it at least one '+'")
    return [(name, pos, neg) for name, (pos, neg) in queries.items()]
