"""Run the service: load the archive (a damaged index or model fails here, in one line), then uvicorn."""

from __future__ import annotations

from collections.abc import Callable

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
    archive = Archive(settings.index, settings.model, settings.runtime, workspace)
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
