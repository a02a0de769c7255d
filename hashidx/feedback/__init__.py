"""Results → feedback: a user's marks on archive items, and AHCL models learned from them."""

from typing import TYPE_CHECKING

from hashidx.io.lazy import lazy_exports

# The names this subpackage exports; each loads its module on first use (hashidx.io.lazy).
if TYPE_CHECKING:
    from hashidx.feedback.learn import ArchiveFeatures, Learned, LearnSettings, archive_features, learn_model, learn_run
    from hashidx.feedback.marks import Mark, Marks, read_marks, write_marks

__all__, __getattr__, __dir__ = lazy_exports(__name__)
