"""A folder where one archive's marks and learned models live: what a writable search service learns into.

    WORKSPACE/marks.tsv          the marks so far (plain TSV, versionable)
    WORKSPACE/learned/0001/      each learn: model.pt, codes.h5, index.faiss, the marks it used, learn.json

A learn writes a new numbered folder (whole or not at all) and never touches an older one, so undo is going back to
the folder before; the service swaps between them in memory while the old one keeps answering.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path

from hashidx.errors import HashidxError
from hashidx.feedback.learn import (
    DEFAULT_SETTINGS,
    ArchiveFeatures,
    LearnSettings,
    archive_features,
    learn_model,
    write_learned,
)
from hashidx.feedback.marks import Mark, Marks, read_marks, write_marks
from hashidx.index import indexes as idx


class Busy(HashidxError):
    """A learn is already running in this workspace."""


class Workspace:
    def __init__(
        self,
        folder: str | Path,
        index: str | Path,
        features: str | Path | None = None,
        settings: LearnSettings = DEFAULT_SETTINGS,
    ):
        self.folder = Path(folder)
        self.index = Path(index)
        self.settings = settings
        self.archive: ArchiveFeatures = archive_features(index, features)  # in memory: a learn reads no file
        self.bits = int(idx.load_sidecar(index)["bits"])
        self.marks_path = self.folder / "marks.tsv"
        self.marks = read_marks(self.marks_path) if self.marks_path.is_file() else Marks(())
        self.marks.check(self.archive.ids, self.marks_path)
        self._marking = threading.Lock()
        self._learning = threading.Lock()

    def mark(self, rows: Iterable[Mark]) -> Marks:
        """Add marks (a later verdict on an item and concept replaces the earlier one) and save them."""
        rows = list(rows)
        Marks(tuple(rows)).check(self.archive.ids, "marks")
        with self._marking:
            marks = self.marks.plus(rows)
            write_marks(marks, self.marks_path)
            self.marks = marks
        return marks

    def versions(self) -> list[Path]:
        """The learned folders, oldest first."""
        root = self.folder / "learned"
        return sorted(p for p in root.iterdir() if p.is_dir() and p.name.isdigit()) if root.is_dir() else []

    def learn(self) -> tuple[Path, dict]:
        """A new model and index from the marks so far, in the next numbered folder; Busy if one is running."""
        if not self._learning.acquire(blocking=False):
            raise Busy("a learn is already running; wait for it to finish")
        try:
            marks = self.marks
            learned = learn_model(self.archive, marks, self.bits, self.settings, str(self.marks_path))
            done = self.versions()
            out = self.folder / "learned" / f"{int(done[-1].name) + 1 if done else 1:04d}"
            record = write_learned(learned, self.archive, marks, out, self.index, self.settings)
            return out, record
        finally:
            self._learning.release()
