"""The symmetric counterpart of AHCL: same head, bits and supervision, but every code is sgn(F(x)).

The pairwise term pulls each sampled output towards the pool's own latest outputs U (a memory
refreshed every outer iteration) instead of towards learned database codes, and the quantisation
term towards sgn(u). Database codes then need every database image through backbone and head.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from hashidx.methods.similarity import similarity
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


def train_symmetric(
    features: np.ndarray | Network,
    labels: np.ndarray,
    n_classes: int,
    config: TrainConfig,
    checkpointing: Checkpointing | None = None,
) -> tuple[torch.nn.Module, dict]:
    """Train the head on the pool's features (or a `Network` on its own inputs) and labels; returns the
    trained module and the training log."""
    config = config.resolved("symmetric", labels.ndim == 2, isinstance(features, Network))
    rng = np.random.default_rng(config.seed)
    net = features if isinstance(features, Network) else frozen_network(features, n_classes, config)
    label_t = label_targets(labels)
    everyone = np.arange(len(labels))
    u_memory = net.embed(everyone).astype(np.float64)
    sim = similarity(labels, labels, n_classes, config.multilabel_similarity == "jaccard")
    opt, sched = net.trainer()
    start, log, saved = resume_point(checkpointing, net.module, opt, sched, rng)
    u_memory = saved.get("u_memory", u_memory)
    for it in outer_iterations(config, start, "symmetric iterations"):
        t0 = time.perf_counter()
        u_memory, losses = network_epochs(net, everyone, label_t, pair_targets(u_memory, sim), config, rng)
        sched.step()
        log.append({"iteration": it + 1, **losses, "r": sim.r, "network_s": time.perf_counter() - t0})
        if checkpointing is not None and checkpointing.due(it + 1):
            save_state(checkpointing, it + 1, net.module, opt, rng, log, {"u_memory": u_memory})
    return net.module.eval(), {"iterations": log, "pool_size": len(labels)}
