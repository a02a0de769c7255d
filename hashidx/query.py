"""Batch queries: a file of image paths → network codes → FAISS search → result rows."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path


from . import index as idx
from .atomic import atomic_path, sha256_file
from .codes import CodeFile
from .encoder import Encoder
from .errors import HashidxError
from .model import load_checkpoint

RESULT_FIELDS = ("query", "rank", "id", "path", "distance")


@dataclass(frozen=True)
class Result:
    query: str
    rank: int
    id: int
    path: str
    distance: int


def read_query_file(path: str | Path) -> list[tuple[str, Path]]:
    """(as written, resolved) image paths: one per line, or a CSV/TSV whose header has a 'path' column.

    Relative paths are taken from the query file's folder; blank lines and '#' comments are skipped.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise HashidxError(f"{path}: query file not found") from None
    except UnicodeDecodeError as exc:
        raise HashidxError(f"{path}: not UTF-8 text (byte {exc.start}); save the query file as UTF-8") from None
    lines = text.splitlines()
    header = next((l for l in lines if l.strip() and not l.lstrip().startswith("#")), "")
    delim = "\t" if "\t" in header else ","
    columns = [c.strip().lower() for c in header.split(delim)]
    if len(columns) > 1 or columns == ["path"]:
        if "path" not in columns:
            raise HashidxError(f"{path}: table has no 'path' column (columns: {', '.join(columns)}); add a header 'path'")
        rows = [r for r in csv.DictReader(io.StringIO(text), delimiter=delim) if any((v or "").strip() for v in r.values())]
        key = next(k for k in rows[0] if k.strip().lower() == "path") if rows else "path"
        names = [(r.get(key) or "").strip() for r in rows]
    else:
        names = [l.strip() for l in lines if l.strip() and not l.lstrip().startswith("#")]
    if not names:
        raise HashidxError(f"{path}: no query image paths in the file")
    out = [(n, (path.parent / n).resolve()) for n in names]
    missing = [n for n, p in out if not p.is_file()]
    if missing:
        raise HashidxError(f"{path}: {len(missing)} query image(s) not found, first {missing[0]!r} "
                           f"(paths are relative to {path.parent}); fix or remove those lines")
    return out


def run_query(index_path: str | Path, model_path: str | Path, query_file: str | Path, k: int = 20,
              nprobe: int | None = None, batch_size: int = 8, allow_model_mismatch: bool = False) -> list[Result]:
    """Encode the query images with the model and search the index; k results per query."""
    index, sidecar = idx.load(index_path)
    head, config = load_checkpoint(model_path)
    encoder = Encoder(head, config)
    if encoder.bits != sidecar["bits"]:
        raise HashidxError(f"{model_path}: {encoder.bits}-bit model but {index_path} holds {sidecar['bits']}-bit codes; "
                           "use the model the index's codes were trained with")
    if sidecar.get("model_sha256") and sidecar["model_sha256"] != sha256_file(model_path) and not allow_model_mismatch:
        raise HashidxError(f"{model_path}: not the model that produced {index_path}'s codes (sha256 differs); "
                           "pass that run's model.pt, or --allow-model-mismatch to search anyway")
    if k < 1:
        raise HashidxError(f"-k {k}: ask for at least one result")
    queries = read_query_file(query_file)
    if nprobe is not None:
        idx.set_nprobe(index, nprobe)
    codes = encoder.encode_images([p for _, p in queries], batch_size)
    dist, ids = idx.search(index, codes, k)
    paths = _paths_by_id(index_path, sidecar)
    return [Result(name, r + 1, int(i), paths.get(int(i), ""), int(d))
            for (name, _), drow, irow in zip(queries, dist, ids)
            for r, (d, i) in enumerate(zip(drow, irow)) if i >= 0]


def _paths_by_id(index_path: str | Path, sidecar: dict) -> dict[int, str]:
    codes_path = idx.codes_file_of(index_path, sidecar)
    if not codes_path.is_file():
        return {}
    cf = CodeFile.load(codes_path)
    return dict(zip(cf.ids.tolist(), cf.paths))


def write_results(results: list[Result], path: str | Path, fmt: str = "tsv") -> None:
    """TSV with a header row, or JSON lines; written atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            if fmt == "tsv":
                w = csv.writer(fh, delimiter="\t", lineterminator="\n")
                w.writerow(RESULT_FIELDS)
                w.writerows((r.query, r.rank, r.id, r.path, r.distance) for r in results)
            elif fmt == "jsonl":
                fh.writelines(json.dumps(r.__dict__) + "\n" for r in results)
            else:
                raise HashidxError(f"unknown result format {fmt!r}; use tsv or jsonl")
