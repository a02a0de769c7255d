"""AHCL training: alternate network epochs on a sampled pool with the discrete database-code step.

Database codes V are free variables learned from labels and the pool's outputs, so no database
image outside the pool ever passes through the network.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from hashidx.codes.binary import pack, unpack
from hashidx.methods.similarity import READ_CHUNK, row_groups, similarity
from hashidx.methods.solver import update_codes
from hashidx.methods.training import (
    Checkpointing,
    Network,
    TrainConfig,
    frozen_network,
    label_targets,
    network_epochs,
    outer_iterations,
    pair_targets,
    resume_point,
    save_state,
)


def label_sets(labels: np.ndarray) -> np.ndarray:
    """Each item's label set as a number: its class, or the index of its distinct multi-hot row."""
    return np.unique(labels, axis=0 if labels.ndim == 2 else None, return_inverse=True)[1].ravel()


def initial_codes(n: int, bits: int, rng: np.random.Generator, keys: np.ndarray | None = None) -> np.ndarray:
    """Random {-1,+1} codes (int8), drawn in row chunks so 10⁶ items never need an n x c float array; with `keys`
    (label_sets), one random code per key, shared by its items."""
    if keys is not None:
        return initial_codes(int(keys.max()) + 1 if len(keys) else 0, bits, rng)[keys]
    v = np.empty((n, bits), dtype=np.int8)
    for lo in range(0, n, READ_CHUNK):
        hi = min(lo + READ_CHUNK, n)
        v[lo:hi] = np.where(rng.standard_normal((hi - lo, bits)) >= 0, 1, -1)
    return v


def train_ahcl(
    features: np.ndarray | Network,
    labels: np.ndarray,
    n_classes: int,
    config: TrainConfig,
    pool: np.ndarray | None = None,
    checkpointing: Checkpointing | None = None,
) -> tuple[torch.nn.Module, np.ndarray, dict]:
    """Learn the hash head and the database codes V ({-1,+1}, n x bits) of every labelled item.

    `features` (p x d) are the backbone outputs of the pool images, whose database positions are
    `pool` (default: all of `labels`); items outside the pool need only their label. A `Network`
    instead trains that module on its own inputs (end-to-end fine-tuning on the pool's images). `labels` are
    class indices (n,) or multi-hot rows (n x C). With `checkpointing`, the state is saved after
    every outer iteration, and a resumed run gives the same head and codes as an uninterrupted one.
    """
    n = len(labels)
    pool = np.arange(n) if pool is None else np.asarray(pool)
    if len(features) != len(pool):
        raise ValueError(f"{len(features)} input rows for a pool of {len(pool)}")
    rng = np.random.default_rng(config.seed)
    net = features if isinstance(features, Network) else frozen_network(features, n_classes, config)
    targets_all = label_targets(labels)
    m = min(config.sample_size or len(pool), len(pool))
    v = initial_codes(n, config.bits, rng, label_sets(labels) if config.code_init == "label" else None)
    opt, sched = net.trainer()
    start, log, saved = resume_point(checkpointing, net.module, opt, sched, rng)
    v = unpack(saved["v"], config.bits) if "v" in saved else v
    keys: np.ndarray | None = None
    for it in outer_iterations(config, start, "AHCL iterations"):
        t0 = time.perf_counter()
        sample = rng.choice(len(pool), m, replace=False)  # positions within the pool
        omega = pool[sample]  # database rows of Ω
        sim = similarity(labels[omega], labels, n_classes, config.multilabel_similarity == "jaccard")
        keys = sim.row_keys()
        groups = row_groups(v, keys)  # shared by the targets and the V step: V is unchanged between them
        targets = pair_targets(v, sim, quant=v[omega], groups=groups)
        u_omega, losses = network_epochs(net, sample, targets_all[omega], targets, config, rng)
        sched.step()
        t1 = time.perf_counter()
        v = update_codes(v, u_omega, omega, sim, config.lam, groups=groups)
        log.append(
            {
                "iteration": it + 1,
                **losses,
                "r": sim.r,
                "code_groups": len(groups.first),
                "network_s": t1 - t0,
                "codes_s": time.perf_counter() - t1,
            }
        )
        if checkpointing is not None and checkpointing.due(it + 1):
            # Packed: 8x smaller, which is what keeps a per-iteration save cheap at 10⁶ codes.
            save_state(checkpointing, it + 1, net.module, opt, rng, log, {"v": pack(v)})
    out = {"iterations": log, "pool_size": len(pool), "sample_size": int(m)}
    if keys is not None:
        out["settling"] = settling(len(row_groups(v, keys).first), len(np.unique(keys)), len(v))
    return net.module.eval(), v, out


def settling(code_groups: int, label_sets: int, items: int) -> dict:
    """Whether the learned codes settled: each label set (a class, or a multi-label row) holds about one code.
    `code_groups` counts distinct (label set, code) pairs; a few more than the label sets is settled (UC Merced's
    21 classes end at 21-22 at 16 bits), many more is codes still split within label sets."""
    judged = label_sets < items  # with every item its own label set, codes cannot be said to clump
    return {
        "code_groups": int(code_groups),
        "label_sets": int(label_sets),
        "settled": None if not judged else bool(code_groups <= label_sets + max(1, label_sets // 20)),
    }
