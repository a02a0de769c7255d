"""AHCL training: alternate network epochs on a sampled pool with the discrete database-code step.

Database codes V are free variables learned from labels and the pool's outputs, so no database
image outside the pool ever passes through the network.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from .model import HashHead
from .progress import progress
from .similarity import LabelSimilarity
from .solver import update_codes
from .training import TrainConfig, network_epochs, new_head, pair_targets


def train_ahcl(features: np.ndarray, labels: np.ndarray, n_classes: int, config: TrainConfig,
               pool: np.ndarray | None = None) -> tuple[HashHead, np.ndarray, dict]:
    """Learn the hash head and the database codes V ({-1,+1}, n x bits) of every labelled item.

    `features` (p x d) are the backbone outputs of the pool images, whose database positions are
    `pool` (default: all of `labels`); items outside the pool need only their label.
    """
    n = len(labels)
    pool = np.arange(n) if pool is None else np.asarray(pool)
    if len(features) != len(pool):
        raise ValueError(f"{len(features)} feature rows for a pool of {len(pool)}")
    rng = np.random.default_rng(config.seed)
    head, opt, sched = new_head(features, n_classes, config)
    feats = torch.from_numpy(features.astype(np.float32))
    label_t = torch.from_numpy(labels)
    m = min(config.sample_size or len(pool), len(pool))
    v = np.where(rng.standard_normal((n, config.bits)) >= 0, 1, -1).astype(np.int8)
    log: list[dict] = []
    for it in progress(range(config.iterations), "AHCL iterations", unit="iter"):
        t0 = time.perf_counter()
        sample = rng.choice(len(pool), m, replace=False)  # positions within the pool
        omega = pool[sample]  # database rows of Ω
        sim = LabelSimilarity(labels[omega], labels, n_classes)
        targets = pair_targets(v, sim, quant=v[omega])
        u_omega, losses = network_epochs(head, opt, feats[sample], label_t[omega], targets, config, rng)
        sched.step()
        t1 = time.perf_counter()
        v = update_codes(v, u_omega, omega, sim, config.lam)
        log.append({"iteration": it + 1, **losses, "r": sim.r, "network_s": t1 - t0,
                    "codes_s": time.perf_counter() - t1})
    return head.eval(), v, {"iterations": log, "pool_size": int(len(pool)), "sample_size": int(m)}
