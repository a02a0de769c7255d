"""Marks: a user's verdicts on archive items, `item_id<TAB>concept<TAB>+|-`, one row per mark, several concepts.

The file is plain text so that it can be versioned next to the archive; a later row for the same item and concept
replaces an earlier one (a flipped mark is an appended line). JSON (a list of {"item", "concept", "mark"}) is read
too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hashidx.errors import HashidxError
from hashidx.io.atomic import atomic_path

HEADER = "item_id\tconcept\tmark"
SIGNS = {"+": True, "-": False, "1": True, "0": False, "yes": True, "no": False}


@dataclass(frozen=True)
class Mark:
    item: int
    concept: str
    positive: bool


@dataclass(frozen=True)
class Marks:
    """Each (item, concept)'s latest verdict, in the order they were first made."""

    rows: tuple[Mark, ...]

    @classmethod
    def of(cls, marks: Iterable[Mark]) -> Marks:
        latest: dict[tuple[int, str], Mark] = {}
        for m in marks:
            if latest.get((m.item, m.concept)) == m:
                continue  # the same verdict again changes nothing
            latest.pop((m.item, m.concept), None)  # a changed verdict moves to the end, like an appended line
            latest[(m.item, m.concept)] = m
        return cls(tuple(latest.values()))

    def __len__(self) -> int:
        return len(self.rows)

    def plus(self, more: Iterable[Mark]) -> Marks:
        return Marks.of([*self.rows, *more])

    @property
    def concepts(self) -> tuple[str, ...]:
        """Every concept named, in the order first marked."""
        return tuple(dict.fromkeys(m.concept for m in self.rows))

    @property
    def items(self) -> np.ndarray:
        """The marked item ids, once each, sorted."""
        return np.unique(np.asarray([m.item for m in self.rows], dtype=np.int64))

    def examples(self, concept: str) -> tuple[list[int], list[int]]:
        """(positive ids, negative ids) of one concept."""
        pos = [m.item for m in self.rows if m.concept == concept and m.positive]
        neg = [m.item for m in self.rows if m.concept == concept and not m.positive]
        return pos, neg

    def check(self, known: np.ndarray, source: str | Path) -> None:
        """Refuse ids the archive does not hold, naming the first."""
        missing = np.setdiff1d(self.items, known)
        if len(missing):
            raise HashidxError(
                f"{source}: {len(missing)} marked item id(s) are not in the index, e.g. {int(missing[0])}; "
                "mark ids that the index holds ('hashidx info INDEX' gives the count, results give the ids)"
            )

    def learnable(self, source: str | Path) -> tuple[str, ...]:
        """The concepts with at least one positive; a concept marked only negative names nothing to learn."""
        concepts = self.concepts
        if not concepts:
            raise HashidxError(f"{source}: no marks; add lines 'item_id<TAB>concept<TAB>+' (or -)")
        for c in concepts:
            if not self.examples(c)[0]:
                raise HashidxError(
                    f"{source}: concept {c!r} has only negative marks; mark at least one item '+' for it "
                    "(negatives say what it is not)"
                )
        return concepts


def parse_marks(text: str, source: str | Path) -> Marks:
    """Marks from a TSV (header optional, '#' comments) or a JSON list."""
    stripped = text.lstrip()
    if stripped.startswith(("[", "{")):
        return _from_json(stripped, source)
    rows = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#") or line.lower().replace(" ", "") == HEADER.replace(" ", ""):
            continue
        parts = [p.strip() for p in line.split("\t")]
        if len(parts) != 3:
            raise HashidxError(f"{source}:{lineno}: expected 'item_id<TAB>concept<TAB>+|-', got {raw!r}")
        rows.append(_mark(parts[0], parts[1], parts[2], f"{source}:{lineno}"))
    return Marks.of(rows)


def _mark(item: object, concept: object, sign: object, where: str) -> Mark:
    try:
        item_id = int(str(item))
    except ValueError:
        raise HashidxError(f"{where}: item id {item!r} is not an integer (ids come from the index)") from None
    if not isinstance(concept, str) or not concept.strip():
        raise HashidxError(f"{where}: the concept is empty; name what the mark is about (e.g. solar_farm)")
    verdict = SIGNS.get(str(sign).strip().lower())
    if verdict is None:
        raise HashidxError(f"{where}: mark {sign!r} is neither + nor -")
    return Mark(item_id, concept.strip(), verdict)


def _from_json(text: str, source: str | Path) -> Marks:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HashidxError(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno}); fix the file") from None
    rows = obj.get("marks") if isinstance(obj, dict) else obj
    if not isinstance(rows, list):
        raise HashidxError(f"{source}: expected a list of {{'item', 'concept', 'mark'}} objects")
    out = []
    for n, row in enumerate(rows):
        if not isinstance(row, dict) or not {"item", "concept", "mark"} <= row.keys():
            raise HashidxError(f"{source}: entry {n} is not an object with 'item', 'concept' and 'mark'")
        out.append(_mark(row["item"], row["concept"], row["mark"], f"{source}: entry {n}"))
    return Marks.of(out)


def read_marks(path: str | Path) -> Marks:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise HashidxError(f"{path}: marks file not found") from None
    except UnicodeDecodeError:
        raise HashidxError(f"{path}: not UTF-8 text; marks are 'item_id<TAB>concept<TAB>+|-' lines") from None
    return parse_marks(text, path)


def format_marks(marks: Marks) -> str:
    return "\n".join([HEADER, *(f"{m.item}\t{m.concept}\t{'+' if m.positive else '-'}" for m in marks.rows)]) + "\n"


def write_marks(marks: Marks, path: str | Path) -> None:
    """The marks as TSV, atomically: a reader never sees half a file."""
    with atomic_path(Path(path)) as tmp:
        Path(tmp).write_text(format_marks(marks), encoding="utf-8")
