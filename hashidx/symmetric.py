"""The symmetric counterpart of AHCL: same head, bits and supervision, but every code is sgn(F(x)).

The pairwise term pulls each sampled output towards the pool's own latest outputs U (a memory
refreshed every outer iteration) instead of towards learned database codes, and the quantisation
term towards sgn(u). Database codes then need every database image through backbone and head.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from .model import HashHead
from .similarity import similarity
from .training import (Checkpointing, TrainConfig, label_targets, network_epochs, new_head, outer_iterations,
                       pair_targets, resume_point, save_state)


def train_symmetric(features: np.ndarray, labels: np.ndarray, n_classes: int, config: TrainConfig,
                    checkpointing: Checkpointing | None = None) -> tuple[HashHead, dict]:
    """Train the head on the pool's features and labels; returns the head and the training log."""
    rng = np.random.default_rng(config.seed)
    head, opt, sched = new_head(features, n_classes, config)
    feats = torch.from_numpy(features.astype(np.float32))
    label_t = label_targets(labels)
    u_memory = head.embed(features).astype(np.float64)
    head.train()
    sim = similarity(labels, labels, n_classes)
    start, log, saved = resume_point(checkpointing, head, opt, sched, rng)
    u_memory = saved.get("u_memory", u_memory)
    for it in outer_iterations(config, start, "symmetric iterations"):
        t0 = time.perf_counter()
        u_memory, losses = network_epochs(head, opt, feats, label_t, pair_targets(u_memory, sim), config, rng)
        sched.step()
        log.append({"iteration": it + 1, **losses, "r": sim.r, "network_s": time.perf_counter() - t0})
        if checkpointing is not None:
            save_state(checkpointing, it + 1, head, opt, rng, log, {"u_memory": u_memory})
    return head.eval(), {"iterations": log, "pool_size": int(len(labels))}
