"""Input/output plumbing every layer shares: atomic writes and their OS errors, writer locks, the HDF5 reader,
progress bars."""

from typing import TYPE_CHECKING

from hashidx.io.lazy import lazy_exports

# The names this subpackage exports; each loads its module on first use (hashidx.io.lazy).
if TYPE_CHECKING:
    from hashidx.io.atomic import atomic_path, check_room, output_folder, sha256_file, write_json
    from hashidx.io.h5 import read_h5
    from hashidx.io.locks import set_wait, writing
    from hashidx.io.progress import set_quiet

__all__, __getattr__, __dir__ = lazy_exports(__name__)
