"""The benchmark harness: every method x code length on one split and one backbone, plus a scaling run.

Database encoding (images → database codes) is what the asymmetric method saves: AHCL needs
backbone passes over the training pool plus its solver; the symmetric method and the unsupervised
baselines need backbone passes over every database image plus their head. The main table derives
the backbone part from passes x the ms/pass measured while extracting features in the same run;
the scaling run measures both sides for real, side by side, over growing database sizes.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import faiss
import numpy as np
import torch

from hashidx.codes.binary import pack, sign
from hashidx.codes.codefile import CodeFile
from hashidx.data.datasets import Dataset, load_dataset
from hashidx.data.images import load_image
from hashidx.data.labels import read_label_table, relabel
from hashidx.data.rasters import RGB, Radiometry
from hashidx.data.split import make_split, save_split
from hashidx.errors import HashidxError
from hashidx.evaluation.evaluate import TIE_RULE, evaluate_run
from hashidx.evaluation.metrics import retrieval_metrics
from hashidx.evaluation.report import pyplot, write_report
from hashidx.features.backbones import DEFAULT_BACKBONE, BackboneSpec, FeatureExtractor, backbone_spec
from hashidx.features.cache import FeatureCache
from hashidx.features.extract import DEFAULT_VIEWS, extract
from hashidx.features.runtime import DEFAULT_RUNTIME, RUNTIMES
from hashidx.index import indexes as idx
from hashidx.io.atomic import check_room, write_json
from hashidx.io.progress import inform, progress
from hashidx.methods.ahcl import train_ahcl
from hashidx.methods.checkpoints import load_checkpoint
from hashidx.methods.encoder import Encoder
from hashidx.methods.runs import METHODS, pool_positions, train_run
from hashidx.methods.symmetric import train_symmetric
from hashidx.methods.training import TrainConfig
from hashidx.results.rerank import DEFAULT_RERANK, candidates_for, rerank
from hashidx.version import __version__


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _timed_extract(
    ds: Dataset,
    positions: np.ndarray,
    extractor: FeatureExtractor,
    size: int,
    views: int,
    desc: str,
    radiometry: Radiometry = RGB,
) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    paths = [ds.absolute(i) for i in positions]
    feats = extract(paths, extractor, size, views, desc=desc, radiometry=radiometry).features
    return feats, time.perf_counter() - t0


def scaling_run(
    ds: Dataset,
    db_idx: np.ndarray,
    pool_size: int,
    sizes: Sequence[int] | np.ndarray,
    extractor: FeatureExtractor,
    size: int,
    bits: int = 32,
    views: int = 1,
    seed: int = 0,
    iterations: int = 30,
    queries: tuple[np.ndarray, np.ndarray] | None = None,
    radiometry: Radiometry = RGB,
) -> list[dict]:
    """Time images → database codes for AHCL and symmetric at each database size n, pool fixed.

    Both methods' backbone passes run for real here: AHCL's over the pool, symmetric's over all n. With
    `queries` (their features and labels), each row also holds both methods' tie-aware mAP on them, by Hamming
    distance and with the default re-ranking. `radiometry` reads every image (default: each file's RGB).
    """
    order = np.random.default_rng(seed).permutation(db_idx)
    pool = order[:pool_size]
    pool_feats, _ = _timed_extract(ds, pool, extractor, size, views, "scaling: pool features", radiometry)
    config = TrainConfig(bits=bits, seed=seed, iterations=iterations)
    sym_head, _ = train_symmetric(pool_feats, ds.labels[pool], len(ds.classes), config)
    encoder = Encoder(sym_head, {"bits": bits})
    rows = []
    for n in progress(sizes, "scaling run", unit="size"):
        items = order[:n]  # the pool comes first, so it is always inside the database
        _, t_pool = _timed_extract(ds, pool, extractor, size, views, f"AHCL n={n}: pool", radiometry)
        ahcl_head, v, log = train_ahcl(pool_feats, ds.labels[items], len(ds.classes), config, np.arange(pool_size))
        ahcl_s = t_pool + sum(it["codes_s"] for it in log["iterations"])
        db_feats, t_backbone = _timed_extract(
            ds, items, extractor, size, views, f"symmetric n={n}: database", radiometry
        )
        t0 = time.perf_counter()
        sym_codes = encoder.encode_features(db_feats)
        symmetric_s = t_backbone + time.perf_counter() - t0
        row = {
            "n": int(n),
            "pool": int(pool_size),
            "views": views,
            "ahcl_s": ahcl_s,
            "symmetric_s": symmetric_s,
            "ratio": symmetric_s / ahcl_s,
            "ahcl_images": int(pool_size),
            "symmetric_images": int(n),
        }
        if queries is not None:
            q_feats, q_labels = queries
            for name, head, codes in (("ahcl", ahcl_head, pack(v)), ("symmetric", sym_head, sym_codes)):
                u = Encoder(head, {"bits": bits}).embed_features(q_feats)
                for mode in ("none", DEFAULT_RERANK):
                    m = retrieval_metrics(pack(sign(u)), q_labels, codes, ds.labels[items], query_real=u, rerank=mode)
                    row[f"{name}_mAP" + ("" if mode == "none" else "_reranked")] = m["mAP"]
        rows.append(row)
    return rows


def backbone_timings(
    images: np.ndarray,
    spec: BackboneSpec,
    batch_sizes: Sequence[int] = (1, 8),
    views: Sequence[int] = (1, 8),
    repeats: int = 5,
    weights: str = "imagenet",
) -> list[dict]:
    """ms per backbone pass on each runtime, side by side: for each (batch, views) every runtime runs the same
    [0,1] NCHW `images` once to warm up, then `repeats` interleaved rounds; the best round counts."""
    extractors = {rt: FeatureExtractor(spec, weights, rt) for rt in RUNTIMES}
    rows = []
    for b in batch_sizes:
        for v in views:
            x = images[:b]
            out = {rt: fx(x, v) for rt, fx in extractors.items()}  # warm-up, and the outputs compared
            best = dict.fromkeys(extractors, float("inf"))
            for _ in range(repeats):
                for rt, fx in extractors.items():
                    t0 = time.perf_counter()
                    fx(x, v)
                    best[rt] = min(best[rt], time.perf_counter() - t0)
            row: dict = {"batch": b, "views": v}
            row.update({f"{rt}_ms_per_pass": 1000 * best[rt] / (b * v) for rt in extractors})
            row["speedup"] = best["torch"] / best["onnx"]
            row["max_abs_diff"] = float(np.abs(out["torch"] - out["onnx"]).max())
            row["onnx_ran"] = extractors["onnx"].runtime  # "torch" where the ONNX twin fell back
            rows.append(row)
    return rows


def _search_timing(run: Path, query_real: np.ndarray, k: int) -> dict:
    """Flat index build time over the run's codes, and per-query search time for the queries, without and
    with the default re-ranking (the K′ candidates' codes looked up and scored by uᵀv), side by side."""
    cf = CodeFile.load(run / "codes.h5")
    queries = pack(sign(query_real))
    t0 = time.perf_counter()
    index, _ = idx.build(cf.codes, cf.ids, "flat")
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    idx.search(index, queries, k)
    t_plain = time.perf_counter() - t0
    t0 = time.perf_counter()
    dist, ids = idx.search(index, queries, candidates_for(k, DEFAULT_RERANK), whole_shell=True)
    rerank(dist, ids, cf.codes[np.maximum(ids, 0)], query_real, k, DEFAULT_RERANK)  # ids are rows here
    t_rerank = time.perf_counter() - t0
    return {
        "index_build_ms": 1000 * t_build,
        "search_ms_per_query": 1000 * t_plain / len(queries),
        "search_rerank_ms_per_query": 1000 * t_rerank / len(queries),
    }


def run_bench(
    data: str | Path,
    out: str | Path,
    bits_list: Sequence[int] = (16, 32, 64),
    methods: Sequence[str] = METHODS,
    views: int = DEFAULT_VIEWS,
    train_pool: float | None = 0.2,
    scaling_sizes: int = 5,
    scaling_views: int = 1,
    seed: int = 0,
    backbone: str = DEFAULT_BACKBONE,
    iterations: int = 30,
    labels: str | Path | None = None,
    runtime: str = DEFAULT_RUNTIME,
) -> dict:
    """Run everything, write report.json, report.md and the plots under `out`; returns the report.

    Retrieval figures are tie-aware, with the default re-ranking and without (`*_no_rerank`); with
    `labels` (multi-label annotations) the runs train and are scored on them, NDCG@100, ACG@100 and WAP@100 included.
    Backbone passes run on `runtime`; the report also times both runtimes side by side on the first images.
    """
    out = Path(out)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise HashidxError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    pyplot()  # the report's last step needs it: say so now, not after the runs
    t_start = time.perf_counter()
    ds = load_dataset(data)
    dim = backbone_spec(backbone).feature_dim
    # features.h5, then per run a model (~2 MB for the head) and codes; with slack
    check_room(out, 2 * len(ds) * dim * 4 + len(methods) * len(bits_list) * (4 << 20), "the benchmark")
    out.mkdir(parents=True, exist_ok=True)
    if labels is not None:
        ds = relabel(ds, read_label_table(labels), labels)
    multilabel = ds.labels.ndim == 2
    split = make_split(ds, 0.2, 0)
    save_split(split, out / "split.json")
    query_idx, db_idx = split.indices(ds)
    spec = backbone_spec(backbone)
    extractor = FeatureExtractor(spec, runtime=runtime)
    first = [ds.absolute(i) for i in range(min(8, len(ds)))]
    probe = np.stack([load_image(p, spec.image_size) for p in first]).transpose(0, 3, 1, 2)
    runtimes = backbone_timings(probe, spec, batch_sizes=(len(first),), views=(views,), repeats=3)
    feats, t_features = _timed_extract(ds, np.arange(len(ds)), extractor, spec.image_size, views, "features")
    ms_per_pass = 1000 * t_features / (len(ds) * views)
    FeatureCache(feats, ds, backbone, spec.image_size, views, runtime=extractor.runtime).save(out / "features.h5")
    names = ["mAP", "mAP@100", "P@10", "P@100", "P@H<=2"] + (["NDCG@100", "ACG@100", "WAP@100"] if multilabel else [])
    results = []
    for step, (method, bits) in enumerate(((m, b) for m in methods for b in bits_list), 1):
        # one stage line per run: a piped bench says what it is on
        inform(f"bench: run {step}/{len(methods) * len(bits_list)}, {method} at {bits} bits")
        run = out / "runs" / f"{method}-{bits}"
        rec = train_run(
            out / "features.h5",
            run,
            method,
            bits,
            split_path=out / "split.json",
            seed=seed,
            train_pool=train_pool,
            config=TrainConfig(iterations=iterations),
            labels=labels,
        )
        plain = evaluate_run(run, rerank="none")
        metrics = evaluate_run(run, with_curve=True)  # the default re-ranking; its eval.json stays
        head, config = load_checkpoint(run / "model.pt")
        q_real = Encoder(head, config).embed_features(feats[query_idx])
        n_db, pool = rec["split"]["n_database"], rec["pool_size"]
        if method == "ahcl":
            images, extra_s = pool, sum(it["codes_s"] for it in rec["log"])
        else:
            images, extra_s = n_db, rec["times_s"]["database_head"]
        results.append(
            {
                "method": method,
                "bits": bits,
                "pool": pool,
                "n_database": n_db,
                **{k: metrics[k] for k in names},
                **{f"{k}_no_rerank": plain[k] for k in names},
                "mAP_db_order": metrics["mAP_db_order"],
                "pr_curve": metrics["pr_curve"],
                "p_at_k_curve": metrics["p_at_k_curve"],
                "train_s": rec["times_s"]["train"],
                "database_images_through_network": int(images),
                "database_backbone_passes": int(images * views),
                "database_encoding_s": images * views * ms_per_pass / 1000 + extra_s,
                "query_encoding_ms_per_image": views * ms_per_pass + 1000 * metrics["query_head_s"] / len(query_idx),
                **_search_timing(run, q_real, 100),
            }
        )
    pool_size = len(pool_positions(len(db_idx), train_pool, seed))
    sizes = np.unique(np.linspace(pool_size, len(db_idx), scaling_sizes).round().astype(int))
    scaling = scaling_run(
        ds, db_idx, pool_size, sizes, extractor, spec.image_size, max(bits_list), scaling_views, seed, iterations
    )
    report = {
        "command": sys.argv,
        "dataset": str(Path(data).resolve()),
        "n_images": len(ds),
        "classes": len(ds.classes),
        "split": {
            "seed": split.seed,
            "query_fraction": split.query_fraction,
            "n_query": len(query_idx),
            "n_database": len(db_idx),
            "stratified": "iterative stratification over label sets" if multilabel else "per class",
        },
        "labels": None if labels is None else str(Path(labels).resolve()),
        "label_names": len(ds.classes),
        "multilabel": multilabel,
        "rerank": DEFAULT_RERANK,
        "tie_rule": TIE_RULE,
        "backbone": backbone,
        "views": views,
        "train_pool": train_pool,
        "seed": seed,
        "features_s": t_features,
        "runtime": extractor.runtime,
        "backbone_ms_per_pass": ms_per_pass,
        "backbone_runtimes": runtimes,
        "results": results,
        "scaling": scaling,
        "total_s": time.perf_counter() - t_start,
        "versions": {
            "hashidx": __version__,
            "torch": torch.__version__,
            "faiss": faiss.__version__,
            "onnxruntime": _version("onnxruntime"),
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
        },
    }
    write_json(out / "report.json", report)
    write_report(report, out)
    return report
