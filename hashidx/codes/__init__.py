"""Binary codes: sign, packing to FAISS's layout, Hamming distance, and the codes HDF5."""

from hashidx.codes.binary import hamming, pack, sign, unpack
from hashidx.codes.codefile import CodeFile, Item, items_by_id

__all__ = ["CodeFile", "Item", "hamming", "items_by_id", "pack", "sign", "unpack"]
