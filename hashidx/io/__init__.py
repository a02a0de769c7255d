"""Input/output plumbing every layer shares: atomic writes, the HDF5 reader, progress bars."""

from hashidx.io.atomic import atomic_path, sha256_file, write_json
from hashidx.io.h5 import read_h5
from hashidx.io.progress import progress, set_quiet

__all__ = ["atomic_path", "progress", "read_h5", "set_quiet", "sha256_file", "write_json"]
