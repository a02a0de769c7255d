"""Choosing an engine by name: what the CLI's --engine, --ray-address, --workers and --gpus-per-worker make."""

from __future__ import annotations

from hashidx.engines.base import Engine
from hashidx.errors import HashidxError

ENGINES = ("local", "ray")


def open_engine(
    kind: str = "local", address: str | None = None, workers: int | None = None, gpus_per_worker: float = 0.0
) -> Engine:
    """The engine named `kind`: local, or ray (a local Ray runtime, or the cluster at `address`: auto or HOST:PORT)."""
    if kind == "local":
        options = {"--ray-address": address, "--workers": workers, "--gpus-per-worker": gpus_per_worker}
        given = [name for name, value in options.items() if value]
        if given:
            raise HashidxError(f"{', '.join(given)}: only with --engine ray (the local engine runs in this process)")
        from hashidx.engines.local import LocalEngine

        return LocalEngine()
    if kind == "ray":
        from hashidx.engines.ray_engine import RayEngine

        return RayEngine(address, workers, gpus_per_worker)
    raise HashidxError(f"--engine {kind}: choose {' or '.join(ENGINES)}")
