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


def initial_codes(n: int, bits: int, rng: np.random.Generator) -> np.ndarray:
    """Random {-1,+1} codes (int8), drawn in row chunks so 10⁶ items never need an n x c float array."""
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
    v = initial_codes(n, config.bits, rng)
    opt, sched = net.trainer()
    start, log, saved = resume_point(checkpointing, net.module, opt, sched, rng)
    v = unpack(saved["v"], config.bits) if "v" in saved else v
    for it in outer_iterations(config, start, "AHCL iterations"):
        t0 = time.perf_counter()
        sample = rng.choice(len(pool), m, replace=False)  # positions within the pool
        omega = pool[sample]  # database rows of Ω
        sim = similarity(labels[omega], labels, n_classes, config.multilabel_similarity == "jaccard")
        groups = row_groups(v, sim.row_keys())  # shared by the targets and the V step: V is unchanged between them
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
    return net.module.eval(), v, {"iterations": log, "pool_size": len(pool), "sample_size": int(m)}
