"""How idle compute threads wait. OpenMP (torch, FAISS) and ONNX Runtime spin between parallel regions by
default: on a quiet machine that saves a little latency, on a busy one the spinning threads take the cores
other processes' threads need, and two trainings started together ran 10.9x slower each
(benchmarks/contention.py). hashidx makes idle threads sleep unless OMP_WAIT_POLICY says otherwise."""

from __future__ import annotations

import os

WAIT_POLICY = "OMP_WAIT_POLICY"


def sleep_when_idle() -> None:
    """Idle OpenMP threads block instead of spinning (OMP_WAIT_POLICY=PASSIVE), unless the environment already
    chose: read by each OpenMP runtime when it loads, so this runs before torch or FAISS is imported."""
    os.environ.setdefault(WAIT_POLICY, "PASSIVE")


def spinning() -> bool:
    """Whether threads may spin while idle: only where OMP_WAIT_POLICY=ACTIVE asks for it (ONNX Runtime's
    sessions follow the same choice)."""
    return os.environ.get(WAIT_POLICY, "").strip().upper() == "ACTIVE"


_chosen: int | None = None  # what an engine gave its worker (features.runtime.set_threads)


def choose(threads: int | None) -> None:
    """The torch threads this process was given (an engine's worker sharing a machine): kept by `use_torch_threads`."""
    global _chosen
    _chosen = threads


def torch_threads() -> int:
    """torch's intra-op threads for training and encoding: the worker's share where an engine chose one, the user's
    OMP_NUM_THREADS where set, else half the cores this process may run on. On the 2-core machine of
    benchmarks/contention.py one thread trained as fast as two alone (20.4 s against 20.3 s) and kept two
    concurrent trainings within 1.16x of one alone, against 1.56x with two threads each; larger machines were not
    measured, and half their cores leaves the other half to a second job."""
    if _chosen is not None:
        return _chosen
    given = os.environ.get("OMP_NUM_THREADS", "").strip()
    if given.isdigit() and int(given) > 0:
        return int(given)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // 2)


def use_torch_threads() -> None:
    """Set torch's intra-op threads to `torch_threads()` (torch is imported here, by the caller's need of it)."""
    import torch

    torch.set_num_threads(torch_threads())
