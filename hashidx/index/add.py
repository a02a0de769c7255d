"""New images into an existing index: network-encoded codes (sgn F(x)), ids after the index's own.

The added items' codes, ids and paths go to INDEX.added.h5 (the codes.h5 layout, method "added"),
so query results can name them; the sidecar counts them and names that file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import faiss
import numpy as np

from hashidx.codes.binary import pack, sign
from hashidx.codes.codefile import CodeFile
from hashidx.data.chips import Tiling
from hashidx.data.footprints import Footprints
from hashidx.engines.base import Engine
from hashidx.features.runtime import DEFAULT_RUNTIME
from hashidx.index import indexes as idx
from hashidx.index.indexes import check_model
from hashidx.io.atomic import sha256_file
from hashidx.io.locks import writing
from hashidx.methods.encoder import load_encoder
from hashidx.methods.inputs import image_inputs

ADDED_ENCODING = "network: sgn(F(x)) of the image (hashidx add)"


def added_path(index_path: str | Path) -> Path:
    return Path(f"{index_path}.added.h5")


def add_images(
    index_path: str | Path,
    model_path: str | Path,
    source: str | Path,
    batch_size: int = 8,
    on_error: str = "fail",
    allow_model_mismatch: bool = False,
    runtime: str = DEFAULT_RUNTIME,
    tiling: Tiling | None = None,
    bands: str | None = None,
    engine: Engine | None = None,
    scale: str | None = None,
) -> tuple[dict, list[tuple[str, str]]]:
    """Encode the images (a list, folder, scene or STAC catalog; scenes cut into chips with `tiling`) with the
    model (backbone on `runtime`, here or on `engine`'s workers) and add them to the index; returns (new sidecar,
    skipped). The model's bands and scaling read every image (`bands`, when given, must be the model's), unless
    `scale` gives this source its own (LO:HI pairs, or auto: fitted on it); the added-codes file records each
    source's choice."""
    index_path = Path(index_path)
    _, sidecar = idx.load(index_path)  # checked before the images' encoding, the long part
    encoder = load_encoder(model_path, runtime)
    model_sha = sha256_file(model_path)
    check_model(
        model_path, encoder.bits, model_sha, sidecar["bits"], sidecar.get("model_sha256"), allow_model_mismatch, "model"
    )
    model_radiometry = encoder.radiometry
    inputs = image_inputs(source, model_radiometry, bands, tiling, scale)
    items, encoder.radiometry = inputs.items, inputs.radiometry
    names, outputs, skipped = encoder.embed_named(items, source, batch_size, on_error, engine, with_content=True)
    u, content = encoder.split(outputs)
    codes = pack(sign(u))
    where = dict(items)
    files = tuple(str(where[n]) for n in names)  # resolved: a gallery finds the pixels wherever the list was
    geo = encoder.footprints_of(items, names, inputs.catalog)
    record = inputs.record(source, model_radiometry)
    with writing(index_path):
        # Read again under the lock: another `add` may have landed while these images were encoded.
        index, sidecar = idx.load(index_path)
        return _append(
            index_path, index, sidecar, codes, tuple(names), files, model_sha, Path(model_path), geo, record, content
        ), skipped


def sources_of(added: CodeFile | None) -> list[dict]:
    """The sources an added-codes file records (files from before they were recorded: none)."""
    if added is None:
        return []
    try:
        out = json.loads(str(added.attrs.get("sources", "[]")))
    except ValueError:
        return []
    return out if isinstance(out, list) else []


def _joined_content(old: CodeFile | None, new: np.ndarray | None, n_new: int) -> np.ndarray | None:
    """The added file's content vectors after this add: zeros (no content preference) for items whose model had
    no projection; none at all when no item has one, or when two models' projections differ in size."""
    parts = ([] if old is None else [(old.content, len(old.paths))]) + [(new, n_new)]
    dims = {c.shape[1] for c, _ in parts if c is not None}
    if len(dims) != 1:
        return None
    d = dims.pop()
    return np.concatenate([c if c is not None else np.zeros((n, d), np.float16) for c, n in parts])


def _append(
    index_path: Path,
    index: faiss.IndexBinary,
    sidecar: dict,
    codes: np.ndarray,
    added: tuple[str, ...],
    files: tuple[str, ...],
    model_sha: str,
    model_path: Path,
    geo: Footprints | None = None,
    record: dict | None = None,
    content: np.ndarray | None = None,
) -> dict:
    """Give the codes the ids after the index's and write the added-codes file, then the index and sidecar."""
    id_map = index.id_map  # type: ignore[attr-defined]  # an id map (indexes.ID_MAPS), which the stubs do not say
    existing = faiss.vector_to_array(id_map) if index.ntotal else np.empty(0, np.int64)
    extra = added_path(index_path)
    # Where the sidecar finds it: beside the index, or where it was before the index was copied away.
    previous = idx.recorded_file(index_path, sidecar, "added_file") if sidecar.get("added_file") else None
    old = CodeFile.load(previous) if previous is not None and previous.is_file() else None
    # Past the added file's ids too: a kill between its write and the index's leaves ids only it knows.
    start = max(
        [int(existing.max()) + 1 if len(existing) else 0, *([int(old.ids.max()) + 1] if old and len(old.ids) else [])]
    )
    ids = np.arange(start, start + len(added), dtype=np.int64)
    if old is not None:
        codes_all, ids_all, names_all = (
            np.concatenate([old.codes, codes]),
            np.concatenate([old.ids, ids]),
            old.paths + added,
        )
        files_all = (old.files or ("",) * len(old.paths)) + files
        if geo is not None or old.geo is not None:
            geo = Footprints.concat(
                [old.geo or Footprints.unknown(len(old.paths)), geo or Footprints.unknown(len(added))]
            )
    else:
        codes_all, ids_all, names_all, files_all = codes, ids, added, files
    content_all = _joined_content(old, content, len(added))
    # Added items first: a kill before the index lands leaves paths for ids the index lacks, which is harmless.
    CodeFile(
        codes_all,
        ids_all,
        names_all,
        np.full(len(ids_all), -1, dtype=np.int64),
        sidecar["bits"],
        "added",
        {
            "model_sha256": model_sha,
            "encoding": ADDED_ENCODING,
            "model_path": str(Path(model_path).resolve()),
            # Each add's source and how its pixels were read, with the ids it got.
            "sources": json.dumps(
                sources_of(old)
                + (
                    [{**record, "items": len(ids), "ids": [int(ids[0]), int(ids[-1])] if len(ids) else []}]
                    if record
                    else []
                )
            ),
        },
        files_all,
        geo,
        content_all,
    ).save(extra)
    index.add_with_ids(codes, ids)
    params = {k: v for k, v in sidecar.items() if k in ("index_type", "bits", "nlist", "nprobe", "M", "efSearch")}
    params.update(
        count=int(index.ntotal),
        added=len(ids_all),
        added_file=os.path.relpath(extra.resolve(), index_path.resolve().parent),
        added_path=str(extra.resolve()),
    )
    codes_path = idx.codes_file_of(index_path, sidecar)
    new = idx.save(
        index,
        index_path,
        params,
        codes_path,
        {"method": sidecar.get("method"), "model_sha256": sidecar.get("model_sha256")},
        codes_sha256=sidecar.get("codes_sha256"),
    )
    return new
