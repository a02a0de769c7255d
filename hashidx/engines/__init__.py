"""Where chunks of work run: in this process (`local`) or on a Ray actor pool (`ray`), results in input order.

The layers above hand an engine a *stage*, a small picklable recipe that builds a worker (a backbone, a hash
network, an index) once per process, and the chunks to pass through it. Ray is imported only by `ray`.
"""

from typing import TYPE_CHECKING

from hashidx.io.lazy import lazy_exports

# The names this subpackage exports; each loads its module on first use (hashidx.io.lazy).
if TYPE_CHECKING:
    from hashidx.engines.base import Engine, Stage, Worker
    from hashidx.engines.choose import ENGINES, open_engine
    from hashidx.engines.local import LocalEngine, prefetch

__all__, __getattr__, __dir__ = lazy_exports(__name__)
