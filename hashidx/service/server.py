"""Run the service: load the archive (a damaged index or model fails here, in one line), then uvicorn."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO

from hashidx.errors import HashidxError
from hashidx.io.progress import set_quiet
from hashidx.service.archive import Archive
from hashidx.service.settings import ServeSettings


def serve(settings: ServeSettings, say: Callable[[str], None] = print) -> None:
    """Load the archive once and answer until SIGINT/SIGTERM (uvicorn finishes the requests in flight first)."""
    import uvicorn

    from hashidx.service.app import create_app

    settings = settings.checked()
    set_quiet(True)  # a request's encoding is no loop to watch: no progress lines in the server's log
    workspace = None
    if settings.learn_dir is not None:
        from hashidx.feedback.workspace import Workspace

        workspace = Workspace(settings.learn_dir, settings.index, settings.features)
    archive = Archive(settings.index, settings.model, settings.runtime, workspace, settings.scale)
    app = create_app(archive, settings)
    info = archive.describe()
    say(
        f"serving {settings.index} ({info['items']} items, {info['scenes']} scenes) at "
        f"http://{settings.host}:{settings.port}/"
        + (" (token required)" if settings.token else "")
        + ("" if workspace is None else f"; marks and learned models in {settings.learn_dir}")
    )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        timeout_graceful_shutdown=30,
        limit_concurrency=settings.max_concurrency * 16,  # connections past this get uvicorn's own 503
    )


def spawn(
    index: str | Path,
    model: str | Path | None = None,
    *options: str,
    env: dict[str, str] | None = None,
    wait_s: float = 90.0,
    stderr: IO[str] | None = None,
) -> tuple[subprocess.Popen, str]:
    """`hashidx serve INDEX` (with `options`) in a child process on a free loopback port, returned with its URL once
    /health answers: how scripts, benchmarks and tests start a real server. The child's stderr goes to `stderr` (a
    file), by default a temporary one: a pipe nobody reads could stall it. A child that exits or does not answer
    within `wait_s` is a HashidxError carrying what it said."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    model_args = [] if model is None else ["--model", str(model)]
    log = stderr or tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (the child writes to it after we return)
    proc = subprocess.Popen(
        [sys.executable, "-m", "hashidx", "serve", str(index), *model_args, "--port", str(port), *options],
        stdout=subprocess.DEVNULL,
        stderr=log,
        text=True,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise HashidxError(f"hashidx serve exited ({proc.returncode}): {log.read().strip()}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1) as answer:
                if answer.status == 200:
                    return proc, url
        except OSError:  # refused while it loads (URLError and timeouts are OSErrors)
            time.sleep(0.3)
    proc.kill()
    raise HashidxError(f"hashidx serve did not answer within {wait_s:g} s")
