"""The engine contract: a stage builds a worker per process; an engine maps chunks through workers, in order."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol


class Worker(Protocol):
    """What a stage builds: `load` (reading, thread-safe: run ahead on threads locally) then `run` (compute)."""

    def load(self, chunk: Any) -> Any: ...

    def run(self, loaded: Any) -> Any: ...


class Stage(Protocol):
    """A picklable recipe for a worker; `threads` caps its compute threads (None: the library's default), `device`
    is where its network runs (cpu, or cuda on a worker given a GPU)."""

    def build(self, threads: int | None = None, device: str = "cpu") -> Worker: ...


class Engine:
    """Maps chunks through workers built from stages; every result comes back in the order of its chunk."""

    name = "local"
    remote = False  # True where workers live in other processes (stages must then be recipes, not Prebuilt)
    workers = 1

    def map(self, stage: Stage, chunks: Iterable[Any]) -> Iterator[Any]:
        """worker.run(worker.load(chunk)) for each chunk, in order, over a pool of workers built from `stage`."""
        raise NotImplementedError

    def scatter(self, stages: Sequence[Stage], chunks: Iterable[Any]) -> Iterator[list[Any]]:
        """Each chunk through one worker of every stage (one per shard): per chunk the list of their results."""
        raise NotImplementedError

    def describe(self) -> str:
        return self.name

    def close(self) -> None:
        """Release what the engine started (a Ray runtime it launched); joining a cluster leaves it running."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
