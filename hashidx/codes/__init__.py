"""Binary codes: sign, packing to FAISS's layout, Hamming distance, and the codes HDF5."""

from typing import TYPE_CHECKING

from hashidx.io.lazy import lazy_exports

# The names this subpackage exports; each loads its module on first use (hashidx.io.lazy).
if TYPE_CHECKING:
    from hashidx.codes.binary import hamming, pack, sign, unpack
    from hashidx.codes.codefile import CodeFile, Item, items_by_id

__all__, __getattr__, __dir__ = lazy_exports(__name__)
