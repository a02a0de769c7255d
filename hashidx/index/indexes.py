"""FAISS binary indexes (flat, IVF, HNSW) over packed codes, with ids and a JSON sidecar."""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import struct
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from hashidx.codes.codefile import CodeFile
from hashidx.errors import HashidxError
from hashidx.index import auto
from hashidx.io.atomic import atomic_path, sha256_file, write_json
from hashidx.io.locks import writing
from hashidx.version import __version__

INDEX_TYPES = ("flat", "ivf", "hnsw", "auto")
INDEX_FORMAT = 1


# The id wrappers hashidx reads. It writes IndexBinaryIDMap: IndexBinaryIDMap2 (files before it) keeps a hash map
# from id to position besides, ~44 bytes a code in memory that nothing here looks up (measured: 60 against 16
# bytes a code for a flat index of 2·10⁶ 64-bit codes).
ID_MAPS = (faiss.IndexBinaryIDMap, faiss.IndexBinaryIDMap2)
_ID_MAP_FOURCCS = (b"IBMp", b"IBM2")


def default_nlist(n: int) -> int:
    """About √n lists, but at least 39 training codes per list (FAISS's own floor).

    Not float IVF's 4·√n: k-means cost grows with nlist x its training sample (89 s vs 8 s at 10⁶
    codes, benchmarks/scale_1m.py) and learned codes have few distinct values to split anyway.
    """
    return max(1, min(int(round(math.sqrt(n))), n // 39))


def default_nprobe(nlist: int) -> int:
    """An eighth of the lists: binary codes tie a lot, so IVF needs a wider probe than float IVF."""
    return max(1, math.ceil(nlist / 8))


def _ivf(index: faiss.IndexBinary) -> faiss.IndexBinaryIVF | None:
    inner = faiss.downcast_IndexBinary(index.index if isinstance(index, ID_MAPS) else index)
    return inner if isinstance(inner, faiss.IndexBinaryIVF) else None


def set_nprobe(index: faiss.IndexBinary, nprobe: int) -> None:
    ivf = _ivf(index)
    if ivf is not None:
        ivf.nprobe = int(nprobe)


def build(
    codes: np.ndarray,
    ids: np.ndarray,
    index_type: str = "flat",
    nlist: int | None = None,
    nprobe: int | None = None,
    hnsw_m: int = 32,
) -> tuple[faiss.IndexBinary, dict]:
    """An IndexBinaryIDMap over flat / IVF / HNSW, and the parameters it was built with. "auto" picks the type
    and its parameters for n codes from a measured table (hashidx.index.auto) and records why."""
    n, bits = len(codes), codes.shape[1] * 8
    if n == 0:
        raise HashidxError("no codes to index; the codes file is empty")
    if index_type == "auto":
        chosen = auto.choose(n)
        built, measured = build(codes, ids, chosen["index_type"], chosen["nlist"], chosen["nprobe"], hnsw_m)
        return built, {**measured, "auto": chosen}
    params: dict = {"index_type": index_type, "bits": bits}
    inner: Any  # FAISS's SWIG classes carry fields (use_heap, nprobe, this) its type stubs do not declare
    if index_type == "flat":
        inner = faiss.IndexBinaryFlat(bits)
        # The counting search (use_heap=False) returns ties in insertion order, matching the metrics' stable ranking.
        inner.use_heap = False
    elif index_type == "ivf":
        nlist = nlist or default_nlist(n)
        if nlist > n:
            raise HashidxError(
                f"--nlist {nlist} is larger than the {n} codes; use at most {n} (default: {default_nlist(n)})"
            )
        quantizer: Any = faiss.IndexBinaryFlat(bits)
        inner = faiss.IndexBinaryIVF(quantizer, bits, nlist)
        inner.own_fields = True
        quantizer.this.disown()
        if nlist == 1:  # one list needs no clustering: FAISS would warn on stderr that under 39 codes are few
            inner.cp.min_points_per_centroid = 1
        # FAISS turns every training code into floats before it samples (32 bytes a bit-byte: 26 GB at 10⁸ 64-bit
        # codes), so the sample it would keep, 256 codes a list, is drawn here, seeded.
        sample = 256 * nlist
        inner.train(codes if n <= sample else codes[np.sort(np.random.default_rng(0).choice(n, sample, replace=False))])
        inner.nprobe = nprobe or default_nprobe(nlist)
        params.update(nlist=nlist, nprobe=int(inner.nprobe))
    elif index_type == "hnsw":
        inner = faiss.IndexBinaryHNSW(bits, hnsw_m)
        params.update(M=hnsw_m, efSearch=int(inner.hnsw.efSearch))
    else:
        raise HashidxError(f"unknown index type {index_type!r}; choose one of {', '.join(INDEX_TYPES)}")
    index = faiss.IndexBinaryIDMap(inner)
    index.own_fields = True
    inner.this.disown()
    index.add_with_ids(codes, ids.astype(np.int64))
    params["count"] = int(index.ntotal)
    return index, params


# Most candidates fetched per query to complete the tie shell at the k-th distance.
TIE_FETCH_LIMIT = 1 << 14
_NO_ID = np.iinfo(np.int64).max


def search(
    index: faiss.IndexBinary,
    queries: np.ndarray,
    k: int,
    whole_shell: bool = False,
    allowed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (distances, ids) per query ordered by (distance, id), whatever order FAISS found them in.

    Items tied at the k-th distance are all fetched (up to TIE_FETCH_LIMIT candidates), so the ones
    kept are those with the lowest ids; `whole_shell` keeps them all (rows padded with id -1). An
    approximate index (IVF, HNSW) orders the items it found the same way. Missing slots are id -1.
    `allowed` (sorted ids) restricts the search to those items: the others are left out of the same order.
    """
    if index.ntotal == 0:
        raise HashidxError("the index is empty; build it from a codes file with at least one code")
    k = min(k, index.ntotal)
    dist, ids = _search(index, queries, k, allowed)
    limit = min(index.ntotal, max(TIE_FETCH_LIMIT, k))
    if allowed is None and _ranges(index):
        dist, ids = _whole_shells(index, queries, dist, ids, k, limit)
    else:
        dist, ids = _widened(index, queries, dist, ids, k, limit, allowed)
    dist, ids, _ = top_k(dist, ids, k, whole_shell)
    return dist, ids


def _shells_into(
    shells: dict[int, tuple[np.ndarray, np.ndarray]],
    index: faiss.IndexBinary,
    queries: np.ndarray,
    rows: np.ndarray,
    radius: int,
    limit: int,
) -> None:
    lims, d, i = index.range_search(np.ascontiguousarray(queries), radius + 1)  # distances strictly below
    for j, row in enumerate(rows):
        rd, ri = d[lims[j] : lims[j + 1]], i[lims[j] : lims[j + 1]]
        if len(rd) > limit:
            keep = np.lexsort((ri, rd))[:limit]
            rd, ri = rd[keep], ri[keep]
        shells[int(row)] = (rd, ri)


def _widened(
    index: faiss.IndexBinary,
    queries: np.ndarray,
    dist: np.ndarray,
    ids: np.ndarray,
    k: int,
    limit: int,
    allowed: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """The tie shells through k-nearest searches four times wider each round: for HNSW, which has no range
    search, and for searches restricted to `allowed` ids."""
    while dist.shape[1] < limit:
        # A row may hide more ties when its last slot is filled and still at its k-th distance.
        open_rows = (ids[:, -1] >= 0) & (dist[:, -1] == dist[:, k - 1])
        if not open_rows.any():
            break
        width = min(dist.shape[1] * 4, limit)
        more_d, more_i = _search(index, queries[open_rows], width, allowed)
        pad = width - dist.shape[1]
        dist = np.pad(dist, ((0, 0), (0, pad)), constant_values=np.iinfo(dist.dtype).max)
        ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        dist[open_rows], ids[open_rows] = more_d, more_i
    return dist, ids


# Range searches return every item of a shell before any is dropped: one call covers at most this many items
# (rows x index size), ~200 MB of results in the worst case of one code for the whole index.
RANGE_ITEMS = 1 << 24


def _ranges(index: faiss.IndexBinary) -> bool:
    """Whether tie shells come from range searches: flat and IVF indexes (HNSW has none) up to RANGE_ITEMS items."""
    inner = faiss.downcast_IndexBinary(index.index) if hasattr(index, "index") else index
    return isinstance(inner, (faiss.IndexBinaryFlat, faiss.IndexBinaryIVF)) and index.ntotal <= RANGE_ITEMS


def _whole_shells(
    index: faiss.IndexBinary, queries: np.ndarray, dist: np.ndarray, ids: np.ndarray, k: int, limit: int
) -> tuple[np.ndarray, np.ndarray]:
    """Every item within each row's k-th distance, in one range search per distinct distance: learned codes clump
    (a class is often one code), so a shell can hold thousands of items, and widening k-nearest searches to reach
    them scanned the index four or five times (measured: 4.9 against 0.4 ms a query over 100,000 codes). A
    row keeps at most `limit` candidates, those with the lowest (distance, id)."""
    filled = ids[:, k - 1] >= 0
    rows_d: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    per_call = max(1, RANGE_ITEMS // index.ntotal)
    for radius in np.unique(dist[filled, k - 1]):
        at = np.flatnonzero(filled & (dist[:, k - 1] == radius))
        for rows in (at[lo : lo + per_call] for lo in range(0, len(at), per_call)):
            _shells_into(rows_d, index, queries[rows], rows, int(radius), limit)
    width = max([dist.shape[1], *(len(rd) for rd, _ in rows_d.values())])
    out_d = np.full((len(dist), width), np.iinfo(dist.dtype).max, dtype=dist.dtype)
    out_i = np.full((len(dist), width), -1, dtype=ids.dtype)
    out_d[:, : dist.shape[1]], out_i[:, : ids.shape[1]] = dist, ids
    for row, (rd, ri) in rows_d.items():
        out_d[row], out_i[row] = np.iinfo(dist.dtype).max, -1
        out_d[row, : len(rd)], out_i[row, : len(ri)] = rd, ri
    return out_d, out_i


def _search(index: faiss.IndexBinary, queries: np.ndarray, k: int, allowed: np.ndarray | None):
    """FAISS's k nearest, of the `allowed` ids only where given: a flat index skips the others while it scans
    (an ID selector); IVF and HNSW take no selector, so their lists are fetched wider until k allowed remain."""
    if allowed is None:
        return index.search(queries, k)
    inner = faiss.downcast_IndexBinary(index.index) if hasattr(index, "index") else index
    if isinstance(inner, faiss.IndexBinaryFlat):
        params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed))  # type: ignore[call-arg]
        return index.search(queries, k, params=params)
    width = k
    while True:
        width = min(width * 4, index.ntotal)
        dist, ids = index.search(queries, width)
        keep = np.isin(ids, allowed) & (ids >= 0)
        if width >= index.ntotal or (keep.sum(axis=1) >= k).all():
            break
    # Each row's allowed candidates, in the order FAISS gave them, first: a stable sort on "left out".
    order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
    kept = np.take_along_axis(keep, order, 1)
    dist = np.where(kept, np.take_along_axis(dist, order, 1), np.iinfo(np.int32).max)
    return dist, np.where(kept, np.take_along_axis(ids, order, 1), -1)


def top_k(
    dist: np.ndarray, ids: np.ndarray, k: int, whole_shell: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first k candidates of each row by (distance, id), or with `whole_shell` every one tied with the k-th
    (rows padded with id -1), and the columns they came from: one cut for a search and for merged shards."""
    order = np.lexsort((np.where(ids < 0, _NO_ID, ids), np.where(ids < 0, np.iinfo(dist.dtype).max, dist)), axis=1)
    dist, ids = np.take_along_axis(dist, order, 1), np.take_along_axis(ids, order, 1)
    if not whole_shell:
        return dist[:, :k], ids[:, :k], order[:, :k]
    keep = (dist <= dist[:, k - 1 : k]) & (ids >= 0)
    width = max(k, int(keep.sum(axis=1).max()))
    return np.where(keep, dist, -1)[:, :width], np.where(keep, ids, -1)[:, :width], order[:, :width]


def build_file(
    codes_path: str | Path,
    path: str | Path,
    index_type: str = "flat",
    nlist: int | None = None,
    nprobe: int | None = None,
    hnsw_m: int = 32,
) -> dict:
    """codes.h5 → index file + sidecar (what `hashidx build-index` does); returns the sidecar."""
    cf = CodeFile.load(codes_path)
    if len(cf.codes) == 0:
        raise HashidxError(f"{codes_path}: no codes to index; train a run on a non-empty database")
    index, params = build(cf.codes, cf.ids, index_type, nlist, nprobe, hnsw_m)
    with writing(path):
        return save(index, path, params, codes_path, cf.attrs)


def save(
    index: faiss.IndexBinary,
    path: str | Path,
    params: dict,
    codes_path: str | Path,
    codes_attrs: dict,
    codes_sha256: str | None = None,
    recorded_folder: str | Path | None = None,
) -> dict:
    """Write FAISS's own file and the sidecar `PATH.json`, each atomically; `codes_attrs` are the codes file's.
    `recorded_folder` is where the index and its codes will live, for a folder written under a temporary name."""
    path = Path(path)
    codes_path = Path(codes_path)
    final_codes = codes_path.resolve() if recorded_folder is None else Path(recorded_folder).resolve() / codes_path.name
    sidecar = {
        "kind": "hashidx-index",
        "format": INDEX_FORMAT,
        **params,
        "codes_file": os.path.relpath(codes_path.resolve(), path.resolve().parent),
        # Where it was, for an index copied elsewhere alone; codes_file, relative, is for the two moved together.
        "codes_path": str(final_codes),
        "codes_sha256": codes_sha256 or sha256_file(codes_path),
        "method": codes_attrs.get("method"),
        "model_sha256": codes_attrs.get("model_sha256"),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "faiss_version": faiss.__version__,
        "hashidx_version": __version__,
    }
    with atomic_path(path) as tmp:
        faiss.write_index_binary(index, str(tmp))
        sidecar["index_sha256"] = sha256_file(tmp)
        # The sidecar lands first: killed between the two renames, the new sidecar names an index
        # file that is not there yet, and `load` refuses the pair instead of trusting it.
        write_json(sidecar_path(path), sidecar)
    return sidecar


def sidecar_path(path: str | Path) -> Path:
    return Path(f"{path}.json")


def load_sidecar(path: str | Path) -> dict:
    """An index's sidecar alone (what it is, its codes files, its model), without reading the index."""
    path = Path(path)
    if not path.is_file():
        raise HashidxError(f"{path}: index file not found; build one with 'hashidx build-index CODES.h5 -o {path}'")
    try:
        sidecar = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HashidxError(
            f"{sidecar_path(path)}: index sidecar missing; rebuild the index with 'hashidx build-index'"
        ) from None
    except ValueError as exc:
        raise HashidxError(f"{sidecar_path(path)}: sidecar is not valid JSON ({exc}); rebuild the index") from None
    if not isinstance(sidecar, dict) or not all(isinstance(sidecar.get(k), int) for k in ("bits", "count")):
        raise HashidxError(f"{sidecar_path(path)}: sidecar lacks an integer 'bits' or 'count'; rebuild the index")
    return sidecar


def load(path: str | Path) -> tuple[faiss.IndexBinary, dict]:
    """Read an index and its sidecar; the sidecar is required (it names the codes and model)."""
    path = Path(path)
    sidecar = load_sidecar(path)
    # Checked before FAISS reads a byte: its reader trusts the sizes in the file and can be made to allocate
    # whatever a damaged header says.
    if sidecar.get("index_sha256") and sha256_file(path) != sidecar["index_sha256"]:
        raise HashidxError(
            f"{path}: index file and its sidecar do not match (an interrupted or partial "
            "build-index?); rebuild the index"
        )
    _check_header(path, sidecar)
    try:
        index = faiss.read_index_binary(str(path))
    except (RuntimeError, MemoryError):
        raise HashidxError(f"{path}: not a FAISS binary index; rebuild it with 'hashidx build-index'") from None
    if index.d != sidecar.get("bits"):
        raise HashidxError(
            f"{path}: index has {index.d} bits but its sidecar says {sidecar.get('bits')}; rebuild the index"
        )
    return index, sidecar


_INNER = {b"IBxF": "flat", b"IBwF": "ivf", b"IBHf": "hnsw"}  # FAISS fourccs of the index types hashidx builds


def _check_header(path: Path, sidecar: dict) -> None:
    """The id map's header (IndexBinaryIDMap, or IDMap2 in older files) and its inner index's agree with the
    sidecar (bits, count), and a flat index's code vector has the size they imply; otherwise the file is refused
    before FAISS allocates."""
    bits, count = sidecar["bits"], sidecar["count"]
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(25 + 25 + 8)
    bad = HashidxError(
        f"{path}: not a FAISS binary index matching its sidecar ({bits} bits, {count} codes); rebuild it with "
        "'hashidx build-index'"
    )
    if len(head) < 58 or head[:4] not in _ID_MAP_FOURCCS or head[25:29] not in _INNER:
        raise bad
    for at in (4, 29):  # outer header, inner header: d, code_size, ntotal
        d, code_size, ntotal = struct.unpack_from("<iiq", head, at)
        if (d, code_size, ntotal) != (bits, bits // 8, count):
            raise bad
    if head[25:29] == b"IBxF":
        (n_bytes,) = struct.unpack_from("<Q", head, 50)
        if n_bytes != count * (bits // 8) or size < 58 + n_bytes + 8 * (count + 1):
            raise bad


def recorded_file(path: str | Path, sidecar: dict, key: str) -> Path:
    """A file the sidecar names under `key` (relative to the index's folder) or, where that is not there, under
    its absolute twin (`codes_file` → `codes_path`): an index found with its files or where they were."""
    beside = (Path(path).resolve().parent / sidecar[key]).resolve()
    where = sidecar.get(key.replace("_file", "_path"))
    if not beside.is_file() and isinstance(where, str) and Path(where).is_file():
        return Path(where)
    return beside


def codes_file_of(path: str | Path, sidecar: dict) -> Path:
    """The codes file an index was built from: beside the index as recorded, else where it was built."""
    return recorded_file(path, sidecar, "codes_file")


def code_files_of(path: str | Path, sidecar: dict) -> list[Path]:
    """Every codes file whose items the index holds: the one it was built from, then those `hashidx add` wrote.

    Each must be there: the index holds codes and ids only, and results need the items' paths and labels.
    """
    files = [("codes_file", "the codes file it was built from", "rebuild it with 'hashidx build-index CODES.h5'")]
    if sidecar.get("added_file"):
        files.append(("added_file", "the codes of the images added to it", "add them again"))
    out = []
    for key, what, fix in files:
        found = recorded_file(path, sidecar, key)
        if not found.is_file():
            raise HashidxError(
                f"{path}: {what}, {sidecar[key]} (relative to the index's folder), is not there, nor at "
                f"{sidecar.get(key.replace('_file', '_path'), found)}; copy it beside the index under that name, "
                f"or {fix}"
            )
        out.append(found)
    return out


def check_model(
    source: Path | str,
    have_bits: int,
    have_sha: str | None,
    index_bits: int,
    index_sha: str | None,
    allow_mismatch: bool,
    what: str,
) -> None:
    """Refuse codes from another model than the index's (a different bit length always); `what` is model or codes."""
    if have_bits != index_bits:
        raise HashidxError(
            f"{source}: {have_bits}-bit {what} but the index holds {index_bits}-bit codes; "
            "use the model the index's codes were trained with"
        )
    if index_sha and have_sha and have_sha != index_sha and not allow_mismatch:
        problem = (
            "not the model that produced the index's codes"
            if what == "model"
            else "query codes made by another model than the index's codes"
        )
        raise HashidxError(
            f"{source}: {problem} (sha256 differs); use that run's model.pt, or --allow-model-mismatch to go on anyway"
        )
