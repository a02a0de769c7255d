"""The search service: an archive loaded once (index, model, items, scenes) and its HTTP app and page."""

from typing import TYPE_CHECKING

from hashidx.io.lazy import lazy_exports

# The names this subpackage exports; each loads its module on first use (hashidx.io.lazy).
if TYPE_CHECKING:
    from hashidx.service.app import create_app
    from hashidx.service.archive import Archive
    from hashidx.service.server import serve
    from hashidx.service.settings import ServeSettings

__all__, __getattr__, __dir__ = lazy_exports(__name__)
