"""AHCL training: alternate network epochs on a sampled pool with the discrete database-code step.

Database codes V are free variables learned from labels and the pool's outputs, so no database
image outside the pool ever passes through the network.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .model import HashHead
from .progress import progress
from .similarity import LabelSimilarity
from .solver import update_codes


@dataclass(frozen=True)
class AHCLConfig:
    """Defaults follow the authors' code (T=30, E=2, batch 64, SGD 1e-3, wd 5e-4, γ=20, λ=200)."""

    bits: int = 32
    iterations: int = 30
    epochs: int = 2
    sample_size: int | None = None  # m; None = the whole training pool
    batch_size: int = 64
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_steps: tuple[int, ...] = (10, 20)
    gamma: float = 20.0  # semantic (cross-entropy) weight
    lam: float = 200.0  # quantization weight
    hidden: int = 1024
    dropout: float = 0.5
    seed: int = 0

    def to_json(self) -> dict:
        return {**asdict(self), "lr_steps": list(self.lr_steps)}


def pairwise_loss(u: torch.Tensor, vtv: torch.Tensor, sv: torch.Tensor, sq: torch.Tensor) -> torch.Tensor:
    """Σ_{i∈B, j≤n} (u_iᵀv_j − c·S_ij)² = Σ_i u_iᵀ(VᵀV)u_i − 2c·u_iᵀ(SV)_i + c²·Σ_j S_ij²: no |B| x n product.

    `sv` and `sq` are the batch's rows of SV and Σ_j S_ij². The terms are each O(n·c²) and
    cancel, so they are summed in float64.
    """
    bits = u.shape[1]
    u64 = u.double()
    return ((u64 @ vtv) * u64).sum() - 2 * bits * (u64 * sv).sum() + bits ** 2 * sq.sum()


def train_ahcl(features: np.ndarray, labels: np.ndarray, n_classes: int, config: AHCLConfig,
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
    torch.manual_seed(config.seed)
    head = HashHead(features.shape[1], config.bits, n_classes, config.hidden, config.dropout)
    head.set_normalisation(features)
    feats = torch.from_numpy(features.astype(np.float32))
    targets = torch.from_numpy(labels)
    opt = torch.optim.SGD(head.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(config.lr_steps), gamma=0.1)
    m = min(config.sample_size or len(pool), len(pool))
    v = np.where(rng.standard_normal((n, config.bits)) >= 0, 1, -1).astype(np.int8)
    log: list[dict] = []
    for it in progress(range(config.iterations), "AHCL iterations", unit="iter"):
        t0 = time.perf_counter()
        sample = rng.choice(len(pool), m, replace=False)  # positions within the pool
        omega = pool[sample]  # database rows of Ω
        sim = LabelSimilarity(labels[omega], labels, n_classes)
        v64 = v.astype(np.float64)
        # V is fixed for the epochs: its products with S are computed once per iteration.
        vtv = torch.from_numpy(v64.T @ v64)
        sv = torch.from_numpy(sim.matmul_rows(v64, np.arange(m)))
        sq = torch.from_numpy(sim.row_square_sums(np.arange(m)))
        v_omega = torch.from_numpy(v64[omega])
        u_pool = np.zeros((m, config.bits), dtype=np.float64)
        head.train()
        totals = np.zeros(3)
        for _ in range(config.epochs):
            order = rng.permutation(m)
            for start in range(0, m, config.batch_size):
                rows = order[start:start + config.batch_size]
                u, logits = head(feats[sample[rows]])
                u_pool[rows] = u.detach().numpy()
                scale = n * len(rows)
                pair = pairwise_loss(u, vtv, sv[rows], sq[rows]) / scale
                quant = config.lam * ((v_omega[rows] - u.double()) ** 2).sum() / scale
                semantic = F.cross_entropy(logits, targets[omega[rows]])
                loss = pair + quant + config.gamma * semantic
                opt.zero_grad()
                loss.backward()
                opt.step()
                totals += [pair.item(), quant.item(), semantic.item()]
        sched.step()
        t1 = time.perf_counter()
        v = update_codes(v, u_pool, omega, sim, config.lam)
        t2 = time.perf_counter()
        steps = config.epochs * -(-m // config.batch_size)
        pair_l, quant_l, sem_l = totals / steps
        log.append({"iteration": it + 1, "pairwise": pair_l, "quantization": quant_l, "semantic": sem_l,
                    "loss": pair_l + quant_l + config.gamma * sem_l, "r": sim.r,
                    "network_s": t1 - t0, "codes_s": t2 - t1})
    return head.eval(), v, {"iterations": log, "pool_size": int(len(pool)), "sample_size": int(m)}
