"""What AHCL and its symmetric counterpart share: the settings, the pairwise loss, one network epoch loop."""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hashidx.errors import HashidxError
from hashidx.features.content import CONTENT_DIMS
from hashidx.io.atomic import atomic_path
from hashidx.io.progress import progress
from hashidx.methods.head import HashHead
from hashidx.methods.similarity import RowGroups, gram


@dataclass(frozen=True)
class TrainConfig:
    """Defaults follow the AHCL authors' code (T=30, E=2, batch 64, SGD 1e-3, wd 5e-4, γ=20, λ=200)."""

    bits: int = 32
    iterations: int = 30
    epochs: int = 2
    sample_size: int | None = None  # m; None = the whole training pool
    batch_size: int = 64
    lr: float | None = None  # None: the method's default (default_lr)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_steps: tuple[int, ...] = (10, 20)
    gamma: float = 20.0  # semantic (cross-entropy) weight
    # Multi-label data only: pair similarity "share" (any shared label) or "jaccard" (graded), and the
    # semantic loss "softmax" (cross-entropy on the label set spread evenly) or "bce" (one sigmoid per label).
    multilabel_similarity: str = "jaccard"
    multilabel_loss: str = "softmax"
    lam: float = 200.0  # quantization weight
    # Database codes V start as a random code per item (the authors') or per label set ("label": items sharing
    # their labels start, and outside the sample stay, on one code).
    code_init: str = "random"
    # Length of each database item's content vector (features.content), which orders the items of one code
    # under --rerank features; 0 stores none. Not a training setting: the codes do not depend on it.
    content_dims: int = CONTENT_DIMS
    hidden: int = 1024
    dropout: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.multilabel_similarity not in ("share", "jaccard"):
            raise ValueError(f"multilabel_similarity {self.multilabel_similarity!r}: use share or jaccard")
        if self.multilabel_loss not in ("softmax", "bce"):
            raise ValueError(f"multilabel_loss {self.multilabel_loss!r}: use softmax or bce")
        if self.code_init not in ("random", "label"):
            raise ValueError(f"code_init {self.code_init!r}: use random or label")
        if self.content_dims < 0:
            raise HashidxError(f"--content-dims {self.content_dims}: use 0 (none) or a positive length")

    def to_json(self) -> dict:
        return {**asdict(self), "lr_steps": list(self.lr_steps)}

    def resolved(self, method: str, multilabel: bool, finetune: bool = False) -> TrainConfig:
        """This config with its learning rate filled in where it was left to the method."""
        return self if self.lr is not None else replace(self, lr=default_lr(method, self.bits, multilabel, finetune))


AUTHORS_LR = 1e-3
# The symmetric method's pairwise targets are its own outputs, so a step that aligns them aligns its targets too: at
# the authors' 1e-3 its codes collapsed to 2-4 on multi-label UC Merced at 32 and 64 bits, where most pairs share a
# label, and half collapsed at 16 bits on two seeds of three. The pairwise term grows with the square of the code
# length, and so did the rate each length needed: chosen per length on validation splits carved from the database
# (docs/choices-measured.md), on frozen features. Other lengths follow 1e-4·(32/bits)². Single-label data keep 1e-3.
SYMMETRIC_MULTILABEL_LR = {16: 3e-4, 32: 1e-4, 64: 3e-5}


def default_lr(method: str, bits: int, multilabel: bool, finetune: bool = False) -> float:
    """The learning rate a method trains with unless one is given."""
    if method == "symmetric" and multilabel and not finetune:
        return SYMMETRIC_MULTILABEL_LR.get(bits, min(AUTHORS_LR, 1e-4 * (32 / bits) ** 2))
    return AUTHORS_LR


@dataclass
class PairTargets:
    """What the sampled rows are pulled towards while the network trains with the targets T fixed.

    The pairwise term is Σ_{i∈B, j} (u_iᵀt_j − c·S_ij)² over the n rows of T (learned codes V for
    AHCL, the pool's own outputs for the symmetric method); `quant` holds each sampled row's
    quantisation target, or None for sgn(u) itself.
    """

    ttt: torch.Tensor  # TᵀT (c x c)
    st: torch.Tensor  # (S T) for the m sampled rows (m x c)
    s_sq: torch.Tensor  # Σ_j S_ij² for the m sampled rows (m,)
    n: int  # rows of T: the loss is divided by n·|B|
    quant: torch.Tensor | None = None

    def to(self, device: torch.device) -> PairTargets:
        return PairTargets(
            self.ttt.to(device),
            self.st.to(device),
            self.s_sq.to(device),
            self.n,
            None if self.quant is None else self.quant.to(device),
        )


def pair_targets(t: np.ndarray, sim, quant: np.ndarray | None = None, groups: RowGroups | None = None) -> PairTargets:
    """Products of the fixed targets T (n x c) with S, computed once per outer iteration in bounded memory.

    With `groups` (rows of T sharing a key and a code) each product runs over one weighted row per group.
    """
    rows, weights = (None, None) if groups is None else (groups.first, groups.counts.astype(np.float64))
    ttt = gram(t if rows is None else t[rows], weights)
    return PairTargets(
        torch.from_numpy(ttt),
        torch.from_numpy(sim.matmul(t, rows, weights)),
        torch.from_numpy(sim.row_square_sums()),
        len(t),
        None if quant is None else torch.from_numpy(quant.astype(np.float64)),
    )


def pairwise_loss(u: torch.Tensor, ttt: torch.Tensor, st: torch.Tensor, s_sq: torch.Tensor) -> torch.Tensor:
    """Σ_{i∈B, j≤n} (u_iᵀt_j − c·S_ij)² = Σ_i u_iᵀ(TᵀT)u_i − 2c·u_iᵀ(ST)_i + c²·Σ_j S_ij²: no |B| x n product.

    `st` and `s_sq` are the batch's rows of ST and Σ_j S_ij². The terms are each O(n·c²) and
    cancel, so they are summed in float64.
    """
    bits = u.shape[1]
    u64 = u.double()
    return ((u64 @ ttt) * u64).sum() - 2 * bits * (u64 * st).sum() + bits**2 * s_sq.sum()


@dataclass(frozen=True)
class Checkpointing:
    """Where a training loop saves its whole state every `every` outer iterations, and whether to continue from it.

    `identity` fingerprints the command (method, settings, data): a state written by another command
    is never continued.
    """

    path: Path
    identity: str
    resume: bool = False
    every: int = 1

    def due(self, done: int) -> bool:
        """Save after `done` iterations? (A fine-tuned VGG's state is ~1 GB: saving less often bounds that cost.)"""
        return done % self.every == 0


def save_state(
    ck: Checkpointing,
    iteration: int,
    head: torch.nn.Module,
    opt: torch.optim.Optimizer,
    rng: np.random.Generator,
    log: list[dict],
    arrays: dict[str, np.ndarray],
) -> None:
    """Everything the loop needs to go on as if uninterrupted; plain tensors and strings only."""
    state = {
        "identity": ck.identity,
        "iteration": iteration,
        "head": head.state_dict(),
        "opt": opt.state_dict(),
        "rng": json.dumps(rng.bit_generator.state),
        "torch_rng": torch.get_rng_state(),
        "log": json.dumps(log),
        **{f"array/{k}": torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()},
    }
    with atomic_path(ck.path) as tmp:
        torch.save(state, tmp)


def load_state(
    ck: Checkpointing,
    head: torch.nn.Module,
    opt: torch.optim.Optimizer,
    sched,
    rng: np.random.Generator,
) -> tuple[int, list[dict], dict[str, np.ndarray]]:
    """Restore a saved state into head, optimiser, scheduler and RNGs: (iterations done, log, arrays)."""
    if not ck.path.is_file():
        raise HashidxError(f"{ck.path}: nothing to resume (no saved state); run without --resume")
    try:
        state = torch.load(ck.path, map_location="cpu", weights_only=True)
    except Exception as exc:  # never relay torch's weights_only=False advice
        raise HashidxError(
            f"{ck.path}: unreadable training state ({type(exc).__name__}); run without --resume"
        ) from None
    if state.get("identity") != ck.identity:
        raise HashidxError(
            f"{ck.path}: saved by a different command (method, settings or data differ); rerun "
            "that command with --resume, or drop --resume to start over"
        )
    head.load_state_dict(state["head"])
    done = int(state["iteration"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # stepping the schedule without optimiser steps is the point here
        for _ in range(done):
            sched.step()
    opt.load_state_dict(state["opt"])
    rng.bit_generator.state = json.loads(state["rng"])
    torch.set_rng_state(state["torch_rng"])
    arrays = {k.split("/", 1)[1]: v.numpy() for k, v in state.items() if k.startswith("array/")}
    return done, json.loads(state["log"]), arrays


def resume_point(
    ck: Checkpointing | None, head: torch.nn.Module, opt: torch.optim.Optimizer, sched, rng: np.random.Generator
) -> tuple[int, list[dict], dict[str, np.ndarray]]:
    """(iterations done, log, saved arrays): the saved state when resuming, else a fresh start."""
    if ck is None or not ck.resume:
        return 0, [], {}
    return load_state(ck, head, opt, sched, rng)


def outer_iterations(config: TrainConfig, start: int, desc: str):
    """Iterations start..T-1 behind a progress bar that counts from `start`."""
    return progress(range(start, config.iterations), desc, unit="iter", initial=start, total=config.iterations)


def label_targets(labels: np.ndarray) -> torch.Tensor:
    """Cross-entropy targets: class indices for single-label data, label sets spread evenly for multi-hot rows."""
    if labels.ndim == 1:
        return torch.from_numpy(labels.astype(np.int64))
    y = labels.astype(np.float32)
    return torch.from_numpy(y / np.maximum(y.sum(axis=1, keepdims=True), 1.0))


@dataclass
class Network:
    """What the epochs train: a module from an input batch to (u, logits), its optimiser and schedule, and the
    inputs it reads by pool position (cached features, or images for end-to-end fine-tuning)."""

    module: torch.nn.Module
    opt: torch.optim.Optimizer | None  # None: inference only
    sched: torch.optim.lr_scheduler.LRScheduler | None
    inputs: Any  # batch(positions, train) → tensor
    device: torch.device = torch.device("cpu")
    amp: bool = False  # bf16 autocast (CUDA)

    def __len__(self) -> int:
        return len(self.inputs)

    def trainer(self) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
        """The optimiser and schedule; a network built for inference only has none."""
        if self.opt is None or self.sched is None:
            raise ValueError("this network was built for inference only: it has no optimiser to train with")
        return self.opt, self.sched

    def batch(self, positions: np.ndarray, rng: np.random.Generator | None = None) -> torch.Tensor:
        """Inputs at pool positions; `rng` (training only) drives any augmentation, so a resumed run repeats it."""
        x = self.inputs.batch(positions, rng) if hasattr(self.inputs, "batch") else self.inputs[positions]
        return x.to(self.device, non_blocking=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            u, logits = self.module(x)
        return u.float(), logits.float()

    @torch.no_grad()
    def embed(self, positions: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Outputs u (eval mode) for pool positions."""
        self.module.eval()
        out = [
            self.forward(self.batch(positions[i : i + batch_size]))[0].cpu().numpy()
            for i in range(0, len(positions), batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def sgd(module: torch.nn.Module, config: TrainConfig):
    """The authors' optimiser and step schedule."""
    lr = AUTHORS_LR if config.lr is None else config.lr
    opt = torch.optim.SGD(module.parameters(), lr=lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return opt, torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(config.lr_steps), gamma=0.1)


def new_head(features: np.ndarray, n_classes: int, config: TrainConfig):
    """A seeded head standardised on the pool, with the SGD optimiser and step schedule."""
    torch.manual_seed(config.seed)
    head = HashHead(features.shape[1], config.bits, n_classes, config.hidden, config.dropout)
    head.set_normalisation(features)
    return (head, *sgd(head, config))


def frozen_network(features: np.ndarray, n_classes: int, config: TrainConfig) -> Network:
    """The hash head on cached backbone features (p x d, in pool order)."""
    head, opt, sched = new_head(features, n_classes, config)
    return Network(head, opt, sched, torch.from_numpy(features.astype(np.float32)))


def network_epochs(
    net: Network,
    positions: np.ndarray,
    labels: torch.Tensor,
    targets: PairTargets,
    config: TrainConfig,
    rng: np.random.Generator,
) -> tuple[np.ndarray, dict]:
    """E epochs over the m sampled pool `positions` (with their `labels`) with the targets fixed.

    Returns the latest outputs U (m x c) and the mean loss terms.
    """
    opt, _ = net.trainer()
    m = len(positions)
    u_all = np.zeros((m, config.bits), dtype=np.float64)
    totals = np.zeros(3)
    targets = targets.to(net.device)
    labels = labels.to(net.device)
    net.module.train()
    for _ in range(config.epochs):
        order = rng.permutation(m)
        for start in range(0, m, config.batch_size):
            rows = order[start : start + config.batch_size]
            u, logits = net.forward(net.batch(positions[rows], rng))
            u_all[rows] = u.detach().cpu().numpy()
            rows_t = torch.from_numpy(rows).to(net.device)
            scale = targets.n * len(rows)
            quant_target = torch.where(u >= 0, 1.0, -1.0).double() if targets.quant is None else targets.quant[rows_t]
            pair = pairwise_loss(u, targets.ttt, targets.st[rows_t], targets.s_sq[rows_t]) / scale
            quant = config.lam * ((quant_target - u.double()) ** 2).sum() / scale
            if labels.ndim == 2 and config.multilabel_loss == "bce":
                semantic = F.binary_cross_entropy_with_logits(logits, (labels[rows_t] > 0).to(logits.dtype))
            else:
                semantic = F.cross_entropy(logits, labels[rows_t])
            loss = pair + quant + config.gamma * semantic
            opt.zero_grad()
            loss.backward()
            opt.step()
            totals += [pair.item(), quant.item(), semantic.item()]
    pair_l, quant_l, sem_l = totals / (config.epochs * -(-m // config.batch_size))
    return u_all, {
        "pairwise": pair_l,
        "quantization": quant_l,
        "semantic": sem_l,
        "loss": pair_l + quant_l + config.gamma * sem_l,
    }
