"""How `hashidx serve` runs: one settings object for the CLI, the app and the server."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from hashidx.errors import HashidxError
from hashidx.features.runtime import DEFAULT_RUNTIME

TOKEN_ENV = "HASHIDX_TOKEN"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServeSettings:
    """The index and model to serve, where to listen, and the bounds every request is held to."""

    index: Path
    model: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None  # required off loopback; also read from $HASHIDX_TOKEN
    runtime: str = DEFAULT_RUNTIME
    max_upload_bytes: int = 32 * 2**20
    max_pixels: int = 64 * 2**20  # an upload's width x height, read from its header before any decoding
    max_concurrency: int = 4  # requests at work at once
    max_queue: int = 64  # requests waiting for one of those slots; one more is answered 503 with Retry-After
    queue_timeout_s: float = 10.0  # how long a queued request waits for a slot before its 503
    request_timeout_s: float = 60.0
    cors_origin: str | None = None  # the one origin allowed to call the API from a browser; none by default
    learn_dir: Path | None = None  # where marks and learned models are kept; None: read-only
    features: Path | None = None  # the archive's feature cache for learning [default: the one its run recorded]
    scale: str | None = None  # how uploads the model's scaling cannot read are scaled (auto, LO:HI); None: refused

    def checked(self) -> ServeSettings:
        """The settings with the token from the environment where none was given; refused where unsafe."""
        token = self.token or os.environ.get(TOKEN_ENV) or None
        if not is_loopback(self.host) and not token:
            raise HashidxError(
                f"--host {self.host}: off this machine the service needs a token; pass --token or set {TOKEN_ENV}"
            )
        if token is not None and len(token) < 16:
            raise HashidxError(
                "--token: use at least 16 characters (e.g. python -c 'import secrets; print(secrets.token_urlsafe())')"
            )
        for name in ("max_upload_bytes", "max_pixels", "max_concurrency"):
            if getattr(self, name) < 1:
                raise HashidxError(f"--{name.replace('_', '-')}: use 1 or more")
        return ServeSettings(**{**self.__dict__, "token": token})
