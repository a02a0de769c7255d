"""What a hashidx file is (features, codes, labels, checkpoint, training state, index, run JSON) and
whether the files it names or sits beside still belong with it."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import h5py

from hashidx.errors import HashidxError
from hashidx.io.atomic import sha256_file
from hashidx.io.h5 import check_sizes, strings

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def _companion(file: Path, status: str, detail: str = "") -> dict:
    return {"file": str(file), "status": status, "detail": detail}


def _sha_check(file: Path, want: str | None, what: str) -> dict:
    """Does `file` have the sha256 another file recorded for it?"""
    if not want:
        return _companion(file, "unrecorded", f"no {what} sha256 was recorded")
    if not file.is_file():
        return _companion(file, "missing", f"the recorded {what} is not there")
    return (
        _companion(file, "matches", f"{what}, sha256 {want[:12]}")
        if sha256_file(file) == want
        else _companion(file, "differs", f"not the {what} recorded (sha256 {want[:12]}); retrained or replaced")
    )


def _attrs(f: h5py.File) -> dict[str, Any]:
    return {k: (v.item() if hasattr(v, "item") and getattr(v, "ndim", 1) == 0 else v) for k, v in f.attrs.items()}


def _layers(backbone: Any, layers: Any) -> str | None:
    from hashidx.features.backbones import recorded_layers  # imports torch: only for the files that name a backbone

    return recorded_layers(str(backbone), layers) if backbone else None


def _look(a: dict) -> str:
    """The bands and scaling images were read with, as hashidx says them."""
    from hashidx.data.rasters import Radiometry

    return Radiometry.from_attrs(a).describe()


def _geo(f: h5py.File) -> str | None:
    """How many items have a footprint, in which CRSs."""
    if "footprints" not in f:
        return None
    crs = strings(f["footprints/crs"])
    known = sorted({c for c in crs if c})
    return f"{sum(map(bool, crs))} of {len(crs)} items ({', '.join(known[:4])}{', ...' if len(known) > 4 else ''})"


def _span(times: list[str], total: int) -> str | None:
    """First to last of the known times (ISO 8601 UTC sorts as text), and how many of `total` items have one."""
    known = [t for t in times if t]
    return f"{min(known)} to {max(known)} ({len(known)} of {total} items dated)" if known else None


def _when(f: h5py.File) -> str | None:
    """The span of the items' acquisition times, and how many have one."""
    g = f.get("footprints")
    if g is None or "datetime" not in g:
        return None
    return _span(list(strings(g["datetime"])), len(g["datetime"]))


def _stac(f: h5py.File) -> str | None:
    """How many STAC items, of which collections, the items come from."""
    g = f.get("footprints")
    if g is None or "item" not in g:
        return None
    items = {t for t in strings(g["item"]) if t}
    collections = sorted({t for t in strings(g["collection"]) if t}) if "collection" in g else []
    return f"{len(items)} items" + (f" of {', '.join(collections[:4])}" if collections else "")


def _features(path: Path, f: h5py.File, a: dict) -> tuple[dict, list]:
    n, d = f["features"].shape
    facts = {
        "images": n,
        "dim": d,
        "classes": len(f["classes"]),
        "backbone": a.get("backbone"),
        "weights": a.get("weights"),
        "image_size": a.get("image_size"),
        "views": a.get("views", 1),
        "layers": _layers(a.get("backbone"), a.get("layers")),
        "runtime": a.get("runtime", "torch"),
        "read_as": _look(a),
        "footprints": _geo(f),
        "acquired": _when(f),
        "stac": _stac(f),
        "preprocessing": a.get("preprocessing"),
        "skipped_images": len(json.loads(a.get("skipped", "[]"))),
        "image_root": a.get("root"),
        "hashidx_version": a.get("hashidx_version"),
    }
    root = Path(str(a.get("root", "")))
    return facts, [_companion(root, "present" if root.is_dir() else "missing", "the images' root folder")]


def _codes(path: Path, f: h5py.File, a: dict) -> tuple[dict, list]:
    facts = {
        "items": len(f["ids"]),
        "bits": a.get("bits"),
        "method": a.get("method"),
        "encoding": a.get("encoding"),
        "label_only_items": a.get("label_only_items", 0),
        "backbone": a.get("backbone"),
        "classes": len(json.loads(a.get("classes", "[]"))),
        "image_root": a.get("image_root"),
        "footprints": _geo(f),
        "acquired": _when(f),
        "stac": _stac(f),
        "sources": _sources(a),
        # What --rerank features orders a code's items by: float16 vectors, 2 bytes a dimension.
        "content_vectors": f"{f['content'].shape[1]} dims, {2 * f['content'].shape[1]} bytes an item"
        if "content" in f
        else None,
        "model_sha256": a.get("model_sha256"),
        "hashidx_version": a.get("hashidx_version"),
    }
    if a.get("model_path"):  # codes `hashidx add` wrote: the model it was given, wherever it was
        companions = [_sha_check(Path(str(a["model_path"])), a.get("model_sha256"), "model")]
    elif a.get("method") == "added":
        sha = str(a.get("model_sha256", ""))[:12]
        companions = [_companion(Path("model.pt"), "unrecorded", f"the model's path was not recorded (sha256 {sha})")]
    else:
        companions = [_sha_check(path.parent / "model.pt", a.get("model_sha256"), "model")]
    if a.get("split_sha256"):
        companions.append(_sha_check(path.parent / "split.json", a.get("split_sha256"), "split"))
    return facts, companions


def _sources(a: dict) -> list[str] | None:
    """What each `hashidx add` read, and how: its source, ids and scaling."""
    try:
        sources = json.loads(str(a.get("sources", "[]")))
    except ValueError:
        return None
    out = []
    for s in sources if isinstance(sources, list) else []:
        ids = s.get("ids") or []
        span = f"ids {ids[0]}-{ids[1]}" if len(ids) == 2 else "no items"
        scale = s.get("scaling", "")
        if s.get("scale") and scale != "the model's":
            scale += " [" + ", ".join(f"{lo:g}:{hi:g}" for lo, hi in s["scale"]) + "]"
        out.append(f"{s.get('source')}: {s.get('items', 0)} items ({span}), read with {scale}")
    return out or None


def _labels(path: Path, f: h5py.File, a: dict) -> tuple[dict, list]:
    return {"items": len(f["labels"]), "classes": len(f["classes"]), "hashidx_version": a.get("hashidx_version")}, []


H5_KINDS = {
    "hashidx-features": ("feature cache", _features),
    "hashidx-codes": ("codes file", _codes),
    "hashidx-labels": ("labels file", _labels),
}


def _hdf5(path: Path) -> dict:
    try:
        with h5py.File(path, "r") as f:
            a = _attrs(f)
            kind = str(a.get("kind", ""))
            if kind not in H5_KINDS:
                what = (
                    "an unfinished feature extraction (rerun 'hashidx features' to finish it)"
                    if path.name.endswith(".partial")
                    else f"HDF5 but not a hashidx file (kind {kind or 'none'})"
                )
                return {"kind": kind or "hdf5", "what": what, "facts": {}, "companions": []}
            what, read = H5_KINDS[kind]
            check_sizes(f, path)
            facts, companions = read(path, f, a)
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise HashidxError(
            f"{path}: unreadable HDF5 ({str(exc)[:200]}); the file is damaged or was cut short"
        ) from None
    return {"kind": kind, "what": what, "facts": facts, "companions": companions}


def _torch_file(path: Path) -> dict:
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # never relay torch's weights_only=False advice
        raise HashidxError(f"{path}: not a checkpoint of plain tensors ({type(exc).__name__})") from None
    if isinstance(obj, dict) and "identity" in obj and "iteration" in obj:
        return {
            "kind": "hashidx-training-state",
            "what": "training state of an interrupted run (train --resume)",
            "facts": {"iterations_done": int(obj["iteration"])},
            "companions": [],
        }
    if not (isinstance(obj, dict) and "config" in obj and "state_dict" in obj):
        raise HashidxError(f"{path}: a torch file, but not a hashidx checkpoint (no config/state_dict)")
    c = obj["config"]
    facts = {
        "method": c.get("method"),
        "bits": c.get("bits"),
        "backbone": c.get("backbone"),
        "image_size": c.get("image_size"),
        "views": c.get("views"),
        "layers": _layers(c.get("backbone"), c.get("layers")),
        "classes": len(c.get("classes", [])),
        "weights": c.get("weights", "imagenet"),
        "features_runtime": c.get("runtime", "torch") if not c.get("finetune") else None,
        "read_as": _look(c),
        "finetuned": bool(c.get("finetune", False)),
        "seed": c.get("seed"),
        "parameters": sum(int(t.numel()) for t in obj["state_dict"].values()),
        "sha256": sha256_file(path),
        "hashidx_version": c.get("hashidx_version"),
    }
    companions = []
    codes = path.parent / "codes.h5"
    if codes.is_file():
        with h5py.File(codes, "r") as f:
            recorded = f.attrs.get("model_sha256")
        companions.append(
            _companion(
                codes,
                "matches" if recorded == facts["sha256"] else "differs",
                "its codes were made by this model"
                if recorded == facts["sha256"]
                else "its codes came from another model",
            )
        )
    return {"kind": "hashidx-checkpoint", "what": "model checkpoint", "facts": facts, "companions": companions}


def _index(path: Path, sidecar: dict) -> dict:
    from hashidx.index import indexes as idx

    facts = {
        k: sidecar.get(k)
        for k in (
            "index_type",
            "count",
            "bits",
            "nlist",
            "nprobe",
            "M",
            "added",
            "method",
            "created",
            "faiss_version",
            "hashidx_version",
        )
        if k in sidecar
    }
    if isinstance(chosen := sidecar.get("auto"), dict):
        facts["chosen_by"] = (
            f"--type auto: recall@20 {chosen.get('recall')} measured at {chosen.get('measured_at')} codes"
            + (" (extrapolated)" if chosen.get("extrapolated") else "")
        )
    facts["acquired"] = _index_time(path, sidecar)
    companions = [_sha_check(path, sidecar.get("index_sha256"), "FAISS index file")]
    companions.append(_sha_check(idx.codes_file_of(path, sidecar), sidecar.get("codes_sha256"), "codes file"))
    if sidecar.get("added_file"):
        added = idx.recorded_file(path, sidecar, "added_file")
        companions.append(_companion(added, "present" if added.is_file() else "missing", "codes of added images"))
    return {
        "kind": "hashidx-index",
        "what": f"FAISS binary index ({sidecar.get('index_type')})",
        "facts": facts,
        "companions": companions,
    }


def _index_time(path: Path, sidecar: dict) -> str | None:
    """The span of the indexed items' acquisition times, over its codes files (those that are there)."""
    from hashidx.codes.codefile import read_ids_times
    from hashidx.index import indexes as idx

    times: list[str] = []
    for key in ("codes_file", "added_file"):
        if sidecar.get(key) and (found := idx.recorded_file(path, sidecar, key)).is_file():
            times += read_ids_times(found)[1]
    return _span(times, len(times))


def _json(path: Path, obj: dict) -> dict:
    if obj.get("kind") == "hashidx-index":
        return _index(Path(str(path)[: -len(".json")]), obj)
    if {"query", "database", "seed"} <= obj.keys():
        return {
            "kind": "hashidx-split",
            "what": "split",
            "facts": {
                "queries": len(obj["query"]),
                "database": len(obj["database"]),
                "seed": obj["seed"],
                "query_fraction": obj.get("query_fraction"),
            },
            "companions": [],
        }
    if "method" in obj and "times_s" in obj:
        facts = {k: obj.get(k) for k in ("method", "bits", "seed", "backbone", "views", "n_codes", "pool_size")}
        facts["train_s"] = round(obj["times_s"].get("train", 0.0), 1)
        if isinstance(settle := obj.get("settling"), dict):
            verdict = {True: "settled", False: "did not settle", None: "every item its own label set"}
            per = [it.get("code_groups") for it in obj.get("log", [])]
            facts["code_groups"] = (
                f"{settle.get('code_groups')} for {settle.get('label_sets')} label sets "
                f"({verdict.get(settle.get('settled'), '?')}; per iteration {', '.join(map(str, per))})"
            )
        return {"kind": "hashidx-train-log", "what": "training log", "facts": facts, "companions": []}
    if "mAP" in obj:
        return {
            "kind": "hashidx-eval",
            "what": "evaluation",
            "facts": {k: obj[k] for k in obj if k.startswith(("mAP", "P@", "bits", "n_"))},
            "companions": [],
        }
    raise HashidxError(f"{path}: JSON, but not a file hashidx writes")


RUN_FILES = ("codes.h5", "model.pt", "split.json")


def _learned_folder(path: Path) -> dict:
    """A folder `hashidx learn` wrote: what it learned from, and its model, codes, index and marks."""
    record = _read_json(path / "learn.json")
    facts = {k: record.get(k) for k in ("concepts", "marks", "items", "bits", "base_index", "features")}
    facts["seconds"] = round(sum(record.get("times_s", {}).values()), 2)
    parts = (
        ("model.pt", "the learned model"),
        ("codes.h5", "every item's code"),
        ("index.faiss", "the index"),
        ("marks.tsv", "the marks it learned from"),
    )
    companions = [
        _companion(path / name, "present" if (path / name).is_file() else "missing", what) for name, what in parts
    ]
    return {
        "kind": "hashidx-learned",
        "what": "learned folder ('hashidx learn')",
        "facts": facts,
        "companions": companions,
    }


def _run_folder(path: Path) -> dict:
    """A folder `hashidx train` wrote: its training log's facts, and whether its files still belong together."""
    if (path / "learn.json").is_file():
        return _learned_folder(path)
    if not (path / "train.json").is_file():
        raise HashidxError(
            f"{path}: a folder, but not a run folder (no train.json or learn.json); pass one file, or the "
            "folder 'hashidx train -o' or 'hashidx learn -o' wrote"
        )
    log = _json(path / "train.json", _read_json(path / "train.json"))
    codes = path / "codes.h5"
    if codes.is_file():  # the codes, then the model and split they were made with
        companions = [_companion(codes, "present", "database codes"), *_hdf5(codes)["companions"]]
    else:
        companions = [_companion(path / n, "present" if (path / n).is_file() else "missing") for n in RUN_FILES[:3]]
    if (path / "eval.json").is_file():
        companions.append(_companion(path / "eval.json", "present", "the last 'hashidx evaluate'"))
    return {
        "kind": "hashidx-run",
        "what": "run folder ('hashidx train')",
        "facts": log["facts"],
        "companions": companions,
    }


RESULT_COLUMNS = ("query", "rank", "id", "path", "distance")


def _results(path: Path, fmt: str, rows: list[dict] | None, extra: dict | None = None) -> dict:
    facts: dict[str, Any] = {"format": fmt}
    if rows is not None:
        facts.update(results=len(rows), queries=len({str(r.get("query")) for r in rows}))
        ranks = [int(r["rank"]) for r in rows if str(r.get("rank", "")).isdigit()]
        facts["k"] = max(ranks) if ranks else None
    return {
        "kind": "hashidx-results",
        "what": f"query results ({fmt})",
        "facts": {**facts, **(extra or {})},
        "companions": [],
    }


def _text_results(path: Path, head: bytes) -> dict | None:
    """Results as TSV (header row), JSON lines or GeoJSON, or a gallery page; None for any other text."""
    text_head = head.decode("utf-8", "replace")
    if text_head.startswith("\t".join(RESULT_COLUMNS)):
        with open(path, encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        return _results(path, "tsv", rows)
    if '"generator": "hashidx' in text_head and '"FeatureCollection"' in text_head:
        features = _read_json(path).get("features", [])
        return _results(path, "geojson", [f.get("properties", {}) for f in features])
    if "<!DOCTYPE html>" in text_head[:40] and 'name="generator" content="hashidx' in text_head:
        return {"kind": "hashidx-gallery", "what": "gallery page (open it in a browser)", "facts": {}, "companions": []}
    first = text_head.split("\n", 1)[0]
    if first.startswith("{") and all(f'"{c}"' in first for c in RESULT_COLUMNS):
        with open(path, encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh if line.strip()]
        return _results(path, "jsonl", rows)
    return None


def _parquet(path: Path) -> dict | None:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        return None
    meta = pq.read_metadata(path)
    names = set(meta.schema.names)
    geo = json.loads((meta.metadata or {}).get(b"geo", b"null"))
    if geo and {"id", "code"} <= names:
        return {
            "kind": "hashidx-export",
            "what": f"GeoParquet {geo.get('version')} of an index's items",
            "facts": {
                "items": meta.num_rows,
                "row_groups": meta.num_row_groups,
                "bbox": geo["columns"]["geometry"].get("bbox"),
            },
            "companions": [],
        }
    if not set(RESULT_COLUMNS) <= names:
        return None
    queries = pq.read_table(path, columns=["query"]).column("query")
    fmt = "geoparquet" if geo else "parquet"
    return _results(path, fmt, None, {"results": meta.num_rows, "queries": len(queries.unique())})


def describe(path: str | Path) -> dict:
    """{file, kind, what, facts, companions}: companions are the files this one names or belongs with,
    each 'matches', 'differs', 'missing', 'present' or 'unrecorded'."""
    path = Path(path)
    if path.is_dir():
        return {"file": str(path), **_run_folder(path)}
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except FileNotFoundError:
        raise HashidxError(f"{path}: not found") from None
    sidecar = Path(f"{path}.json")
    try:
        if head[:8] == HDF5_MAGIC:
            out = _hdf5(path)
        elif sidecar.is_file():
            out = _json(sidecar, _read_json(sidecar))
        elif head[:2] == b"PK":
            out = _torch_file(path)
        elif (found := _parquet(path) if head[:4] == b"PAR1" else _text_results(path, head)) is not None:
            out = found
        elif head.lstrip()[:1] == b"{":
            out = _json(path, _read_json(path))
        else:
            raise HashidxError(
                f"{path}: not a file hashidx writes (features/codes/labels .h5, model.pt, index + .json, "
                "split/train/eval .json, results, a gallery, or a run folder)"
            )
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
        # A file of a known kind whose fields are not what hashidx wrote (hand-edited or damaged).
        raise HashidxError(
            f"{path}: damaged or hand-edited: a field is malformed ({type(exc).__name__}: {str(exc)[:120]})"
        ) from None
    return {"file": str(path), **out}


def _read_json(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise HashidxError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise HashidxError(f"{path}: JSON, but not a file hashidx writes")
    return obj
