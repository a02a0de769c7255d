"""A simulated user searching an unlabelled archive for a concept it has never been trained on, five rounds of marks.

    python benchmarks/feedback.py --ucmd UCMD_FEATURES.h5 --eurosat EUROSAT_FEATURES.h5 -o OUT [--seeds 3]
    python benchmarks/feedback.py ... --validate --sweep   # the settings sweep, on other seeds of UC Merced only
    python benchmarks/feedback.py ... --validate --methods b_learn --epochs 10   # one setting (also --lr, --background)

Each class (or, for the UC Merced multi-label annotations, each label) in turn is the concept. The archive is every
image of the feature cache, unlabelled; the base model is ITQ at 64 bits fitted to the archive's own features. A
round shows the 20 best unmarked items, the simulated user marks them from the ground truth (right = +, wrong = −),
and the method searches again. It starts from 3 random positives. Methods, side by side on the same marks:

- (a) hashidx multi-example query on the base ITQ codes, no learning (rule `mean`, and `fusion`);
- (b) hashidx learning from the marks (hashidx.feedback.learn: AHCL on the marked items), codes re-encoded, then the
  default multi-example rule (fusion) on the learned index (`b_learn_mean`: the mean rule; `b_hybrid`: its list
  fused again with the base ITQ index's, two codes an item);
- (c) cosine over the frozen backbone features with 2·mean(pos) − mean(neg) (GeoVibes' rule);
- (d) L2-regularised logistic regression on the standardised frozen features, fitted to the marks (negatives: the
  marked ones plus the same random "other" sample (b) uses).

Reported per dataset: precision of each round's 20 shown items, recall@100 after rounds 1-5 (marked positives
first, then the method's ranking of everything not marked negative), bytes per item in the search structure and
seconds per round. --scale N also times one (b) round on N archive items (the real features repeated with a 1%
jitter, since timing depends only on N and the feature width), through files as `hashidx learn` writes them.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from hashidx.codes.binary import hamming, pack, sign, unpack
from hashidx.data.labels import read_label_table, table_labels
from hashidx.features.cache import FeatureCache
from hashidx.feedback.learn import ArchiveFeatures, LearnSettings, learn_model, write_learned
from hashidx.feedback.marks import Mark, Marks
from hashidx.index import indexes as idx
from hashidx.io.atomic import write_json
from hashidx.methods.baselines import fit_itq
from hashidx.results.examples import Examples, search_examples
from hashidx.results.query import Searcher

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
SHOWN, ROUNDS, START, BITS = 20, 5, 3, 64


def popcount_rank(codes: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Items by Hamming distance to sgn(q), ties by qᵀv, then by id: the library's mean rule with re-ranking."""
    d = hamming(pack(sign(q[None, :])), codes)[0]
    score = unpack(codes, q.shape[0]).astype(np.float32) @ q
    return np.lexsort((np.arange(len(codes)), -score, d))


def fusion_rank(codes: np.ndarray, u: np.ndarray, n_pos: int) -> np.ndarray:
    """Reciprocal-rank fusion of each example's own Hamming list (the library's fusion rule)."""
    score = np.zeros(len(codes))
    for e, row in enumerate(u):
        order = popcount_rank(codes, row)[:200]
        score[order] += (1.0 if e < n_pos else -1.0) / (60 + np.arange(1, len(order) + 1))
    return np.lexsort((np.arange(len(codes)), -score))


def fuse_orders(orders: list[np.ndarray], depth: int = 200) -> np.ndarray:
    """Reciprocal-rank fusion of whole rankings (each item's best ranks add)."""
    score = np.zeros(len(orders[0]))
    for order in orders:
        score[order[:depth]] += 1.0 / (60 + np.arange(1, depth + 1))
    return np.lexsort((np.arange(len(score)), -score))


def logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2) -> np.ndarray:
    """Weights of an L2-regularised logistic regression (LBFGS), bias last."""
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.float32))
    w = torch.zeros(x.shape[1] + 1, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        z = xt @ w[:-1] + w[-1]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z, yt) + l2 * (w[:-1] ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy()


class Archive:
    """One dataset's features, the base ITQ model and codes, and what each method needs precomputed."""

    def __init__(self, name: str, cache: FeatureCache, relevant: np.ndarray, concepts: list[str]):
        self.name, self.relevant, self.concepts = name, relevant, concepts  # relevant: (C x n) bool
        self.features = np.ascontiguousarray(cache.features, dtype=np.float32)
        n = len(self.features)
        self.itq = fit_itq(self.features, BITS, seed=0)
        self.itq_u = self.itq.embed(self.features)
        self.itq_codes = pack(sign(self.itq_u))
        unit = self.features / np.linalg.norm(self.features, axis=1, keepdims=True)
        self.unit = unit
        mu, sd = self.features.mean(0), self.features.std(0) + 1e-6
        self.standard = ((self.features - mu) / sd).astype(np.float32)
        self.archive = ArchiveFeatures(
            np.arange(n, dtype=np.int64),
            self.features,
            tuple(cache.dataset.paths),
            np.full(n, -1, np.int64),
            None,
            cache,
            Path(name),
        )


def ranking(method: str, ar: Archive, pos: list[int], neg: list[int], settings: LearnSettings, seed: int) -> np.ndarray:
    """Every item, best first, under `method` given the marks so far."""
    n = len(ar.features)
    if method in ("a_mean", "a_fusion"):
        u = ar.itq_u[pos + neg]
        if method == "a_fusion":
            return fusion_rank(ar.itq_codes, u, len(pos))
        q = u[: len(pos)].mean(0) - (u[len(pos) :].mean(0) if neg else 0)
        return popcount_rank(ar.itq_codes, q)
    if method in ("b_learn", "b_learn_mean", "b_hybrid"):
        marks = Marks.of([Mark(i, "concept", True) for i in pos] + [Mark(i, "concept", False) for i in neg])
        learned = learn_model(ar.archive, marks, BITS, LearnSettings(**{**settings.__dict__, "seed": seed}))
        u = learned.embed(ar.features[pos + neg])
        if method == "b_learn":  # the default rule, as `query` and the service search the learned index
            return fusion_rank(learned.codes, u, len(pos))
        if method == "b_hybrid":  # the learned and the base index's fused lists, fused again (16 bytes an item)
            return fuse_orders(
                [fusion_rank(learned.codes, u, len(pos)), ranking("a_fusion", ar, pos, neg, settings, seed)]
            )
        q = u[: len(pos)].mean(0) - (u[len(pos) :].mean(0) if neg else 0)
        return popcount_rank(learned.codes, q)
    if method == "c_cosine":
        q = 2 * ar.unit[pos].mean(0) - (ar.unit[neg].mean(0) if neg else 0)
        return np.lexsort((np.arange(n), -(ar.unit @ q)))
    if method == "d_logistic":
        rng = np.random.default_rng(seed)
        free = np.setdiff1d(np.arange(n), pos + neg)
        other = list(rng.choice(free, min(settings.background, len(free)), replace=False))
        rows = pos + neg + other
        w = logistic(ar.standard[rows], np.asarray([1] * len(pos) + [0] * (len(neg) + len(other))))
        return np.lexsort((np.arange(n), -(ar.standard @ w[:-1])))
    raise ValueError(method)


def simulate(ar: Archive, c: int, method: str, seed: int, settings: LearnSettings) -> dict:
    rel = ar.relevant[c]
    rng = np.random.default_rng(1000 * seed + c)
    pos = [int(i) for i in rng.choice(np.flatnonzero(rel), START, replace=False)]
    neg: list[int] = []
    precision, recall, seconds = [], [], []

    def search() -> np.ndarray:
        t0 = time.perf_counter()
        order = ranking(method, ar, pos, neg, settings, seed)
        seconds.append(time.perf_counter() - t0)
        return order

    order = search()
    for _ in range(ROUNDS):
        marked = set(pos) | set(neg)
        shown = [int(i) for i in order if int(i) not in marked][:SHOWN]
        precision.append(float(rel[shown].mean()))
        pos += [i for i in shown if rel[i]]
        neg += [i for i in shown if not rel[i]]
        # the method searches again with the round's marks: marked positives first, marked negatives never
        order = search()
        known, negs = set(pos), set(neg)
        listed = pos + [int(i) for i in order if int(i) not in negs and int(i) not in known]
        recall.append(float(rel[listed[:100]].sum() / rel.sum()))
    return {"precision": precision, "recall": recall, "seconds": float(np.mean(seconds))}


def load(args) -> list[Archive]:
    out = []
    ucmd = FeatureCache.load(args.ucmd)
    classes = ucmd.dataset.classes
    out.append(
        Archive(
            "UC Merced (21 classes)",
            ucmd,
            np.stack([ucmd.dataset.labels == k for k in range(len(classes))]),
            list(classes),
        )
    )
    if args.validate:
        return out
    if args.eurosat:
        eu = FeatureCache.load(args.eurosat)
        out.append(
            Archive(
                "EuroSAT_MS true colour (10 classes)",
                eu,
                np.stack([eu.dataset.labels == k for k in range(len(eu.dataset.classes))]),
                list(eu.dataset.classes),
            )
        )
    table = read_label_table(args.multilabel)
    names = [Path(p).stem for p in ucmd.dataset.paths]
    multi = table_labels(table, names, args.multilabel).astype(bool).T
    out.append(Archive("UC Merced multi-label (17 labels)", ucmd, multi, list(table.classes)))
    return out


def scale_round(args, ar: Archive, settings: LearnSettings) -> dict:
    """One (b) round on N items through files: learn, re-encode, write model/codes/index, load, answer."""
    rng = np.random.default_rng(0)
    reps = -(-args.scale // len(ar.features))
    feats = np.tile(ar.features, (reps, 1))[: args.scale]
    feats = (feats * (1 + 0.01 * rng.standard_normal(feats.shape))).astype(np.float32)
    n = len(feats)
    big = ArchiveFeatures(
        np.arange(n, dtype=np.int64),
        feats,
        tuple(f"item{i}" for i in range(n)),
        np.full(n, -1, np.int64),
        None,
        ar.archive.cache,
        Path("scale"),
    )
    rel = np.tile(ar.relevant[0], reps)[:n]
    pos = [int(i) for i in np.flatnonzero(rel)[:23]]
    neg = [int(i) for i in np.flatnonzero(~rel)[:40]]
    marks = Marks.of([Mark(i, "c", True) for i in pos] + [Mark(i, "c", False) for i in neg])
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base.faiss"
        codes = pack(sign(ar.itq.embed(feats)))
        from hashidx.codes.codefile import CodeFile

        CodeFile(codes, big.ids, big.paths, np.full(n, -1), BITS, "itq", {}).save(Path(tmp) / "base.h5")
        idx.build_file(Path(tmp) / "base.h5", base)
        t0 = time.perf_counter()
        learned = learn_model(big, marks, BITS, settings)
        t1 = time.perf_counter()
        write_learned(learned, big, marks, Path(tmp) / "learned", base, settings)
        t2 = time.perf_counter()
        searcher = Searcher(Path(tmp) / "learned" / "index.faiss")
        u = learned.embed(feats[pos + neg])
        ex = Examples("c", u[: len(pos)], u[len(pos) :], set(neg))
        search_examples(searcher, ex, SHOWN)
        t3 = time.perf_counter()
    return {
        "items": n,
        "learn_and_reencode_s": round(t1 - t0, 2),
        "train_s": round(learned.log["train_s"], 2),
        "reencode_s": round(learned.log["encode_s"], 2),
        "write_model_codes_index_s": round(t2 - t1, 2),
        "load_and_answer_s": round(t3 - t2, 2),
        "round_s": round(t3 - t0, 2),
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ucmd", required=True, help="UC Merced feature cache (hashidx features --views 1)")
    ap.add_argument("--eurosat", help="EuroSAT_MS feature cache read with --bands 4,3,2")
    ap.add_argument("--multilabel", default=str(SHARED / "UCMerced_LandUse" / "LandUse_Multilabeled.txt"))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--methods", default="a_mean,a_fusion,b_learn,c_cosine,d_logistic")
    ap.add_argument("--validate", action="store_true", help="UC Merced only, starting examples from seeds 100+")
    ap.add_argument("--sweep", action="store_true", help="the settings sweep (with --validate)")
    ap.add_argument("--epochs", type=int, default=0, help="learn: epochs per iteration [default: LearnSettings']")
    ap.add_argument("--background", type=int, default=0, help="learn: unmarked items drawn [default: LearnSettings']")
    ap.add_argument("--lr", type=float, default=0.0, help="learn: SGD learning rate [default: LearnSettings']")
    ap.add_argument("--scale", type=int, default=0, help="also time one learning round on this many items")
    ap.add_argument("-o", "--out", type=Path, default=Path("feedback-out"))
    args = ap.parse_args()
    torch.set_num_threads(1)  # one thread: the figures hold on a busy machine, and runs are reproducible
    archives = load(args)
    report: dict = {
        "machine": f"{cpu_model()}, {os.cpu_count()} CPUs, torch threads 1",
        "rounds": ROUNDS,
        "shown": SHOWN,
        "start_positives": START,
        "bits": BITS,
        "bytes_per_item": {
            "a_mean": BITS // 8,
            "a_fusion": BITS // 8,
            "b_learn": BITS // 8,
            "b_learn_mean": BITS // 8,
            "b_hybrid": 2 * BITS // 8,
            "c_cosine": 4 * archives[0].features.shape[1],
            "d_logistic": 4 * archives[0].features.shape[1],
        },
        "datasets": {},
    }
    # (method, settings) pairs; --sweep (with --validate) tries the rule of (a) and the learn settings of (b)
    given = (("epochs", args.epochs), ("background", args.background), ("lr", args.lr))
    chosen = LearnSettings(**{k: v for k, v in given if v})
    runs_of = [(m, chosen) for m in args.methods.split(",") if m]
    if args.sweep:
        runs_of = [("a_mean", LearnSettings()), ("a_fusion", LearnSettings())] + [
            ("b_learn_mean", LearnSettings(iterations=it, background=bg))
            for it, bg in ((10, 50), (10, 200), (10, 500), (20, 200))
        ]
    seeds = range(100, 100 + args.seeds) if args.validate else range(args.seeds)
    for ar in archives:
        table: dict = {}
        for method, settings in runs_of:
            key = (
                method
                if not args.sweep
                else f"{method} iterations={settings.iterations} background={settings.background}"
            )
            t0 = time.perf_counter()
            runs = [
                simulate(ar, c, method, s, settings)
                for c in range(len(ar.concepts))
                for s in seeds
                if ar.relevant[c].sum() > START
            ]
            table[key] = {
                "precision": np.mean([r["precision"] for r in runs], axis=0).round(3).tolist(),
                "recall@100": np.mean([r["recall"] for r in runs], axis=0).round(3).tolist(),
                "seconds_per_round": round(float(np.mean([r["seconds"] for r in runs])), 3),
                "runs": len(runs),
            }
            print(ar.name, key, table[key], f"{time.perf_counter() - t0:.0f}s", flush=True)
        report["datasets"][ar.name] = table
    if args.scale:
        torch.set_num_threads(os.cpu_count() or 1)  # one round as a user runs it: every core of the machine
        # twice: the first round in a process also pays torch's one-time start (a service pays it once)
        first, again = (scale_round(args, archives[0], LearnSettings()) for _ in range(2))
        report["scale"] = {"torch_threads": torch.get_num_threads(), "first": first, "again": again}
        print("scale", report["scale"], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "feedback.json" if not args.validate else ("validate-sweep.json" if args.sweep else "validate.json")
    write_json(args.out / name, report)
    print(markdown(report))


def markdown(report: dict) -> str:
    """The report as the docs' table: per dataset and method, P@20 shown per round and recall@100 after each."""
    lines = [
        "| data | method | bytes/item | precision of the 20 shown, rounds 1-5 | recall@100, rounds 1-5 | s/round |",
        "|---|---|---:|---|---|---:|",
    ]
    for data, table in report["datasets"].items():
        for method, row in table.items():
            size = report["bytes_per_item"].get(method.split()[0], "")
            lines.append(
                f"| {data} | {method} | {size} | {' '.join(f'{x:.3f}' for x in row['precision'])} | "
                f"{' '.join(f'{x:.3f}' for x in row['recall@100'])} | {row['seconds_per_round']:.2f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
