"""The local engine: one worker in this process, its loading run ahead on threads."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from hashidx.engines.base import Engine, Stage

T = TypeVar("T")
R = TypeVar("R")

# Threads loading ahead of the compute: JPEG/TIFF decoding and resizing release the GIL, so the backbone
# never waits on them (benchmarks/runtimes.py measures 0, 1 and 2).
AHEAD = 2


def prefetch(fn: Callable[[T], R], items: Iterable[T], workers: int = AHEAD) -> Iterator[R]:
    """fn(item) for each item, in order; with `workers` > 0 up to workers + 1 items run on threads ahead of
    the consumer (bounded memory), 0 runs them in line."""
    if workers <= 0:
        yield from map(fn, items)
        return
    pool = ThreadPoolExecutor(workers, thread_name_prefix="hashidx-load")
    pending: deque[Future] = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class LocalEngine(Engine):
    """Everything in this process: the worker is built once, chunks load `ahead` threads ahead of its compute."""

    def __init__(self, ahead: int = AHEAD):
        self.ahead = ahead

    def map(self, stage: Stage, chunks: Iterable[Any]) -> Iterator[Any]:
        worker = stage.build()
        yield from map(worker.run, prefetch(worker.load, chunks, self.ahead))

    def scatter(self, stages: Sequence[Stage], chunks: Iterable[Any]) -> Iterator[list[Any]]:
        workers = [stage.build() for stage in stages]
        for chunk in chunks:
            yield [w.run(w.load(chunk)) for w in workers]
