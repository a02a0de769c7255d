"""The Ray engine: chunks through a Ray Data actor pool (encoding, replicated search) or a set of shard actors.

Workers are actors that build their stage once (a backbone, an index) and keep it; Ray restarts an actor whose
process dies and retries its task, so a killed worker costs time, never a row. Results come back in input
order, so the driver writes files exactly as the local engine does.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import pickle
import socket
import sys
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from hashidx.engines.base import Engine, Stage
from hashidx.errors import HashidxError
from hashidx.io.progress import inform

# Chunks (and their results) cross process boundaries as pickles: Ray Data columns hold bytes whatever the chunk.
_PROTOCOL = 5
# Chunks per Ray Data block, at most: every block costs the scheduler milliseconds, so one chunk per block caps
# the driver at ~1,500 feature rows/s on 2 CPUs, 64 per block at ~22,000 (benchmarks/ray_engine.py). Jobs of
# few chunks still get 4 blocks per worker, for balance and for a killed worker's retry to stay small.
CHUNKS_PER_BLOCK = 64
# Chunks in flight per shard actor: enough to keep every shard busy while the driver merges.
SHARD_WINDOW = 4


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise HashidxError("--engine ray needs Ray: pip install 'hashidx[ray]'") from None
    return ray


def _check_reachable(address: str) -> None:
    """A HOST:PORT that answers no TCP connection is refused at once, not after Ray's own minute of retries."""
    host, _, port = address.rpartition(":")
    if address == "auto" or address.startswith("ray://") or not port.isdigit():
        return
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except OSError as exc:
        raise HashidxError(
            f"--ray-address {address}: nothing answers there ({exc.strerror or exc}); start a cluster with "
            "'ray start --head', pass its address, or leave --ray-address out to start a local Ray runtime"
        ) from None


def _quiet_ray_data() -> Any:
    """Ray Data's context with ordered output, and without its own progress bars and log lines (hashidx has one bar)."""
    from ray.data import DataContext

    # Its errors too: a worker's failure reaches hashidx as an exception and is reported once, in one line.
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)
    ctx = DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    return ctx


def _actor_class(stage: Stage, threads: int, device: str) -> type:
    """A Ray Data callable class with the stage baked in: shipped with the class, so a restarted actor rebuilds
    its worker without constructor arguments in the object store."""

    class HashidxWorker:
        def __init__(self) -> None:
            self.worker = stage.build(threads, device)

        def __call__(self, batch: dict) -> dict:
            out = []
            for blob in batch["chunk"]:
                result = self.worker.run(self.worker.load(pickle.loads(blob)))
                out.append(pickle.dumps(result, protocol=_PROTOCOL))
            return {"result": out}

        def run(self, chunk: Any) -> Any:
            return self.worker.run(self.worker.load(chunk))

        def node(self) -> str:
            import ray

            return str(ray.get_runtime_context().get_node_id())

    return HashidxWorker


def _reraise(exc: BaseException) -> None:
    """A HashidxError raised in a worker (an unreadable model, say) as itself, not wrapped in Ray's task errors."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, HashidxError):
            raise HashidxError(str(seen)) from None
        seen = getattr(seen, "cause", None) or seen.__cause__
    # An actor that died in its constructor carries the error only as text (its traceback).
    marker = f"{HashidxError.__module__}.{HashidxError.__name__}: "
    if marker in str(exc):
        raise HashidxError(str(exc).split(marker)[-1].strip().splitlines()[0]) from None
    raise exc


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """File descriptor 2 points at /dev/null for the block: what native code writes there is dropped. Python's own
    errors still arrive as exceptions."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _check_placeable(ray: Any, actors: int, options: dict, what: str) -> None:
    """Refuse at once a set of actors the cluster cannot place now: Ray would queue them silently for ever."""
    free = ray.available_resources()
    for key, ray_key in (("num_cpus", "CPU"), ("num_gpus", "GPU")):
        need = actors * float(options.get(key, 0.0))
        if need > free.get(ray_key, 0.0) + 1e-9:
            raise HashidxError(
                f"{what}: {actors} worker(s) need {need:g} {ray_key}(s) of Ray but {free.get(ray_key, 0.0):g} are "
                f"free; use fewer, or join a larger cluster with --ray-address"
            )


class RayEngine(Engine):
    """Workers as Ray actors, on a local runtime started here (stopped on close) or on a cluster joined by address.

    `workers` actors (default: one per CPU of the cluster), each running its stage with CPUs // workers threads
    and asking Ray for a fraction of a CPU (whole-CPU actors on a small machine leave none for Ray Data's own
    tasks and stall), plus `gpus_per_worker` GPUs.
    """

    name = "ray"
    remote = True

    def __init__(self, address: str | None = None, workers: int | None = None, gpus_per_worker: float = 0.0):
        ray = _import_ray()
        if workers is not None and workers < 1:
            raise HashidxError(f"--workers {workers}: use at least 1")
        if gpus_per_worker < 0:
            raise HashidxError(f"--gpus-per-worker {gpus_per_worker}: use 0 or more")
        self.started = False
        if not ray.is_initialized():
            if address:
                _check_reachable(address)
            # Ray's C++ core logs notes (constructor arguments of restartable actors) as errors on stderr; real
            # failures reach hashidx as exceptions. RAY_BACKEND_LOG_LEVEL set by the user wins.
            os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
            try:
                with _native_stderr_silenced():  # where the core announces the level it read from the environment
                    ray.init(
                        # "local" starts a runtime of this command's own even where a 'ray start' cluster runs here
                        address=address or "local",
                        include_dashboard=False,
                        logging_level=logging.ERROR,
                        log_to_driver=False,
                        **({} if address else {"_node_ip_address": "127.0.0.1"}),  # a local runtime stays on loopback
                    )
            except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                # Ray's own advice names its CLI's flag; hashidx's option is --ray-address
                first = first.replace("`--address` flag", "--ray-address").replace("--address", "--ray-address")
                raise HashidxError(
                    f"--ray-address {address or '(local)'}: cannot start or join Ray ({first[:200]}); check the "
                    "address ('ray status' on the head node) or leave --ray-address out to start a local runtime"
                ) from None
            self.started = not address
        self.cpus = float(ray.cluster_resources().get("CPU", 1.0))
        gpus = float(ray.cluster_resources().get("GPU", 0.0))
        if gpus_per_worker and gpus < gpus_per_worker:
            raise HashidxError(
                f"--gpus-per-worker {gpus_per_worker}: the Ray cluster has {gpus:g} GPU(s); use 0 or join a cluster "
                "with GPUs (--ray-address)"
            )
        self.workers = workers or max(1, int(self.cpus))
        self.gpus_per_worker = gpus_per_worker
        self.threads = max(1, int(self.cpus // self.workers))
        self.cpus_per_worker = min(float(self.threads), self.cpus / (self.workers + 1))
        self.device = "cuda" if gpus_per_worker else "cpu"

    def describe(self) -> str:
        gpu = f", {self.gpus_per_worker:g} GPU each" if self.gpus_per_worker else ""
        return f"ray ({self.workers} workers x {self.threads} thread(s){gpu}, {self.cpus:g} CPUs)"

    def _options(self) -> dict:
        """What each actor asks Ray for (no GPU key where it asks for none)."""
        gpus = {"num_gpus": self.gpus_per_worker} if self.gpus_per_worker else {}
        return {"num_cpus": self.cpus_per_worker, **gpus}

    def map(self, stage: Stage, chunks: Iterable[Any]) -> Iterator[Any]:
        import ray.data

        rows = [{"chunk": pickle.dumps(c, protocol=_PROTOCOL)} for c in chunks]
        if not rows:
            return
        _quiet_ray_data()
        blocks = min(len(rows), max(4 * self.workers, math.ceil(len(rows) / CHUNKS_PER_BLOCK)))
        ds = ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
            _actor_class(stage, self.threads, self.device),
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=min(self.workers, len(rows))),
            **self._options(),
        )
        del rows
        try:
            for row in ds.iter_rows():
                yield pickle.loads(row["result"])
        except Exception as exc:  # Ray wraps a worker's exception in its own task error types
            _reraise(exc)

    def shard_options(self, shards: int) -> tuple[int, dict]:
        """Threads and the Ray reservation of each of `shards` shard actors. The shards stay up while the query
        images are encoded by the `map` pool, which reserves all but CPUs/(workers+1): the shards share that
        remainder with room for one more, so every shard and every encoder can be placed whatever their number."""
        threads = max(1, int(self.cpus // shards))
        options = self._options()
        options["num_cpus"] = min(float(threads), self.cpus / ((self.workers + 1) * (shards + 1)))
        return threads, options

    def scatter(self, stages: Sequence[Stage], chunks: Iterable[Any]) -> Iterator[list[Any]]:
        ray = _import_ray()
        threads, options = self.shard_options(len(stages))
        _check_placeable(ray, len(stages), options, "--shards")
        # Spread over the cluster's nodes: each shard holds its own part of the index, so shards on different
        # machines divide the memory and the scans between them.
        actors = [
            ray.remote(_actor_class(stage, threads, self.device))
            .options(max_restarts=-1, max_task_retries=-1, scheduling_strategy="SPREAD", **options)
            .remote()
            for stage in stages
        ]
        try:
            nodes = len(set(ray.get([a.node.remote() for a in actors])))
            inform(f"ray: {len(actors)} shard(s) on {nodes} node(s)")
            yield from self._gather(actors, chunks)
        except Exception as exc:  # Ray wraps a worker's exception in its own task error types
            _reraise(exc)
        finally:
            for a in actors:
                ray.kill(a)

    @staticmethod
    def _gather(actors: list, chunks: Iterable[Any]) -> Iterator[list[Any]]:
        """Each chunk to every actor, SHARD_WINDOW chunks in flight; the answers per chunk, in chunk order."""
        import ray

        pending: deque[list[Any]] = deque()
        for chunk in chunks:
            shared = ray.put(chunk)  # stored once, read by every shard
            pending.append([a.run.remote(shared) for a in actors])
            if len(pending) >= SHARD_WINDOW:
                yield ray.get(pending.popleft())
        while pending:
            yield ray.get(pending.popleft())

    def close(self) -> None:
        if self.started:
            import ray

            ray.shutdown()
            self.started = False
