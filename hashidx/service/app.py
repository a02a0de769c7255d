"""The HTTP face of an Archive (FastAPI on uvicorn): routes parse requests into Archive calls and serialise what
they return; security, bounds and errors are here, the work is in hashidx.service.archive."""

from __future__ import annotations

import asyncio
import hmac
import tempfile
from collections.abc import MutableMapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from hashidx.errors import HashidxError
from hashidx.feedback.marks import Mark
from hashidx.feedback.workspace import Busy
from hashidx.results.period import Period
from hashidx.service.archive import Archive, Conflict, NotFound, ReadOnly, Unacceptable, results_records
from hashidx.service.settings import ServeSettings
from hashidx.version import __version__

TOKEN_COOKIE = "hashidx_token"
# Only the server's own scripts, styles and images (thumbnails and tiles; data: for Leaflet's own icons).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
UNGUARDED = ("/health",)  # what answers without a token and never waits for a slot


class MarkIn(BaseModel):
    item: int = Field(description="an indexed item's id")
    concept: str = Field(min_length=1, max_length=100, pattern=r"^[^\t\n\r]+$", description="what the mark is about")
    mark: str = Field(pattern=r"^[+-]$", description="+ (it is) or - (it is not)")


class MarksIn(BaseModel):
    """Marks to add: items by id, or every item whose centre lies in a lon/lat box (west, south, east, north)."""

    marks: list[MarkIn] = Field(default=[], max_length=1000)
    box: list[float] | None = Field(default=None, min_length=4, max_length=4)
    concept: str | None = Field(default=None, min_length=1, max_length=100, pattern=r"^[^\t\n\r]+$")
    mark: str = Field(default="+", pattern=r"^[+-]$")


class ItemsQuery(BaseModel):
    """Items like the positive examples and unlike the negative ones (by id)."""

    positive: list[int] = Field(min_length=1, max_length=64, description="ids of items to find more of")
    negative: list[int] = Field(default=[], max_length=64, description="ids of items that must not come back")
    k: int = Field(default=20, ge=1, le=1000)
    since: str | None = Field(default=None, max_length=40, description="only items acquired on or after (ISO 8601)")
    until: str | None = Field(default=None, max_length=40, description="only items acquired on or before (ISO 8601)")

    def period(self) -> Period | None:
        return Period.parse(self.since, self.until)


# The acquisition period of a GET or an image search, as `hashidx query --since/--until` takes it.
SinceParam = Annotated[str | None, Query(max_length=40, description="only items acquired on or after (ISO 8601)")]
UntilParam = Annotated[str | None, Query(max_length=40, description="only items acquired on or before (ISO 8601)")]


def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def create_app(archive: Archive, settings: ServeSettings) -> FastAPI:
    """The service's ASGI app over a warm archive."""
    app = FastAPI(
        title="hashidx",
        version=__version__,
        description="Search a remote-sensing archive by item, place or image, over learned binary codes.",
        # FastAPI's schema browsers load their scripts from a CDN: neither works offline nor under the CSP
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(Guard, settings=settings)

    if settings.cors_origin:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=[settings.cors_origin], allow_methods=["GET", "POST"])

    @app.exception_handler(HashidxError)
    async def library_error(request: Request, exc: HashidxError) -> JSONResponse:
        return error(_status(exc), str(exc))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "malformed request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "request"
        return error(422, f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail))

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/info")
    def info() -> dict:
        return {"hashidx": __version__, **archive.describe()}

    @app.get("/items")
    def items(offset: Annotated[int, Query(ge=0)] = 0, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict:
        ids = archive.ids[offset : offset + limit].tolist()
        return {"total": len(archive.ids), "items": [archive.item_record(i) for i in ids]}

    @app.get("/items/{item_id}")
    def item(item_id: int) -> dict:
        archive.item(item_id)
        return archive.item_record(item_id)

    @app.get("/items/{item_id}/thumbnail", response_class=Response)
    def thumbnail(item_id: int, size: Annotated[int, Query(ge=16, le=512)] = 128) -> Response:
        data, media = archive.thumbnail(item_id, size)
        return Response(data, media_type=media, headers={"Cache-Control": "max-age=3600"})

    @app.get("/scenes")
    def scenes() -> dict:
        """The scenes as a GeoJSON FeatureCollection of their extents (EPSG:4326)."""
        return {
            "type": "FeatureCollection",
            "features": [
                {
                    "type": "Feature",
                    "id": s.id,
                    "geometry": {"type": "Polygon", "coordinates": [_box(s.lonlat_bounds)]},
                    "properties": {
                        "id": s.id,
                        "name": s.name,
                        "crs": s.crs,
                        "items": s.items,
                        "tiles": f"/scenes/{s.id}/tiles/{{z}}/{{x}}/{{y}}.png",
                    },
                }
                for s in archive.scenes.values()
            ],
        }

    @app.get("/scenes/{scene_id}/items")
    def scene_items(scene_id: str) -> JSONResponse:
        """The scene's indexed chips as a GeoJSON FeatureCollection of their footprints (what the page outlines)."""
        records = [archive.item_record(i) for i in archive.scene_items(scene_id)]
        return JSONResponse(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "id": r["id"],
                        "geometry": r["footprint"],
                        "properties": {k: r[k] for k in ("id", "path", "label", "window")},
                    }
                    for r in records
                ],
            }
        )

    @app.get("/scenes/{scene_id}/tiles/{z}/{x}/{y}.png", response_class=Response)
    def tile(
        scene_id: str,
        z: Annotated[int, PathParam(ge=0, le=24)],
        x: Annotated[int, PathParam(ge=0)],
        y: Annotated[int, PathParam(ge=0)],
    ) -> Response:
        return Response(archive.tile(scene_id, z, x, y), media_type="image/png")

    # Search answers are built as plain JSON here: FastAPI's generic encoder of returned dicts costs more than
    # the search itself (benchmarks/serve_load.py).
    @app.post("/search/items")
    def search_items(query: ItemsQuery) -> JSONResponse:
        results = archive.search_items(query.positive, query.negative, query.k, query.period())
        return JSONResponse({"queries": results_records(archive, results)})

    @app.get("/search/point")
    def search_point(
        lon: Annotated[float, Query(ge=-180, le=180)],
        lat: Annotated[float, Query(ge=-90, le=90)],
        k: Annotated[int, Query(ge=1, le=1000)] = 20,
        since: SinceParam = None,
        until: UntilParam = None,
    ) -> JSONResponse:
        period = Period.parse(since, until)
        at = archive.item_at(lon, lat)
        results = archive.search_items([at], [], k, period)
        return JSONResponse({"item": archive.item_record(at), "queries": results_records(archive, results)})

    @app.post("/search/image")
    async def search_image(
        request: Request,
        k: Annotated[int, Query(ge=1, le=1000)] = 20,
        rerank: Annotated[str | None, Query(pattern=r"^(none|ties|features|\d{1,6})$")] = None,
        tile: Annotated[str | None, Query(pattern=r"^\d{1,5}(:\d{1,5})?$")] = None,
        since: SinceParam = None,
        until: UntilParam = None,
    ) -> JSONResponse:
        """The image as the request's body (any Content-Type) or as the `file` field of a multipart form."""
        period = Period.parse(since, until)
        data = await _upload(request, settings.max_upload_bytes)
        from hashidx.data.chips import Tiling

        tiling = None if tile is None else Tiling.parse(tile)
        work = asyncio.to_thread(archive.search_upload, data, k, rerank, tiling, settings.max_pixels, period)
        try:
            results = await asyncio.wait_for(work, settings.request_timeout_s)
        except asyncio.TimeoutError:
            raise Unacceptable(
                f"the search took over {settings.request_timeout_s:g}s; send a smaller image", 503
            ) from None
        return JSONResponse({"queries": results_records(archive, results)})

    @app.post("/export/geojson")
    def export_geojson(query: Annotated[ItemsQuery, Body()]) -> Response:
        """The results of an items query as a GeoJSON file (the `--format geojson` layout)."""
        import io

        from hashidx.results.query import write_geojson

        buf = io.StringIO()
        write_geojson([archive.search_items(query.positive, query.negative, query.k, query.period())], buf)
        return Response(
            buf.getvalue(),
            media_type="application/geo+json",
            headers={"Content-Disposition": 'attachment; filename="hashidx-results.geojson"'},
        )

    @app.post("/export/geoparquet")
    def export_geoparquet(query: Annotated[ItemsQuery, Body()]) -> Response:
        """The results of an items query as GeoParquet (the `--format geoparquet` layout)."""
        from hashidx.results.geoparquet import write_results_geoparquet

        results = archive.search_items(query.positive, query.negative, query.k, query.period())
        with tempfile.TemporaryDirectory(prefix="hashidx-export-") as tmp:
            path = Path(tmp) / "results.parquet"
            write_results_geoparquet([results], path)
            data = path.read_bytes()
        return Response(
            data,
            media_type="application/vnd.apache.parquet",
            headers={"Content-Disposition": 'attachment; filename="hashidx-results.parquet"'},
        )

    # Learning from marks: only where the service was started with a place to keep them (--learn-dir).
    @app.get("/marks")
    def marks() -> dict:
        ws = archive.workspace
        rows = [] if ws is None else ws.marks.rows
        return {"marks": [{"item": m.item, "concept": m.concept, "mark": "+" if m.positive else "-"} for m in rows]}

    @app.post("/marks")
    def add_marks(body: MarksIn) -> dict:
        rows = [Mark(m.item, m.concept.strip(), m.mark == "+") for m in body.marks]
        if body.box is not None:
            if body.concept is None:
                raise HashidxError("box: name the concept its items are marked for")
            rows += [Mark(i, body.concept.strip(), body.mark == "+") for i in archive.items_in_box(*body.box)]
        if not rows:
            raise HashidxError("no marks: give marks, or a box and a concept")
        marks = archive.mark(rows)
        return {"added": len(rows), "marks": len(marks), "concepts": list(marks.concepts)}

    @app.post("/learn")
    async def learn() -> dict:
        """Learn a model from the marks so far and answer with it from now on (the old one answers meanwhile)."""
        return await asyncio.to_thread(archive.learn)

    @app.post("/undo")
    def undo() -> dict:
        return {"version": archive.undo()}

    static = resources.files("hashidx.service") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.get("/", response_class=Response)
    def page() -> Response:
        return Response((static / "index.html").read_bytes(), media_type="text/html; charset=utf-8")

    return app


class Guard:
    """Pure ASGI middleware (Starlette's BaseHTTPMiddleware costs milliseconds a request): the token, bounded
    concurrency (a bounded queue, then 503 + Retry-After) and the security headers of every answer."""

    def __init__(self, app: Any, settings: ServeSettings):
        self.app = app
        self.settings = settings
        self.slots = asyncio.Semaphore(settings.max_concurrency)
        self.waiting = 0  # requests queued for a slot: bounded in number, each for a bounded time

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        settings, path = self.settings, scope["path"]
        request = Request(scope)
        set_cookie = bool(settings.token) and path == "/" and request.query_params.get("token") == settings.token

        async def secured_send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", [])) + SECURITY_HEADERS
                if set_cookie:
                    cookie = f"{TOKEN_COOKIE}={settings.token}; HttpOnly; SameSite=Strict; Path=/"
                    headers.append((b"set-cookie", cookie.encode()))
                message = {**message, "headers": headers}
            await send(message)

        if settings.token and path not in UNGUARDED and not _authorised(request, settings.token):
            await error(401, "missing or wrong token: send 'Authorization: Bearer TOKEN'")(scope, receive, secured_send)
            return
        if path in UNGUARDED or path.startswith("/static/"):
            await self.app(scope, receive, secured_send)
            return
        busy = error(503, "the server is busy; retry shortly", {"Retry-After": "1"})
        if self.slots.locked() and self.waiting >= settings.max_queue:
            await busy(scope, receive, secured_send)
            return
        if self.slots.locked():  # wait in the bounded queue; a free slot is taken without a timer task
            self.waiting += 1
            try:
                await asyncio.wait_for(self.slots.acquire(), settings.queue_timeout_s)
            except asyncio.TimeoutError:
                await busy(scope, receive, secured_send)
                return
            finally:
                self.waiting -= 1
        else:
            await self.slots.acquire()
        try:
            await self.app(scope, receive, secured_send)
        finally:
            self.slots.release()


SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


def _status(exc: HashidxError) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Unacceptable):
        return exc.status
    if isinstance(exc, ReadOnly):
        return 403
    if isinstance(exc, (Conflict, Busy)):
        return 409
    return 400


def _box(b: tuple[float, float, float, float]) -> list[list[float]]:
    west, south, east, north = b
    return [[west, south], [east, south], [east, north], [west, north], [west, south]]


def _authorised(request: Request, token: str) -> bool:
    """The token from the Authorization header or the page's cookie, compared in constant time."""
    given = request.headers.get("authorization", "")
    candidate = given[7:] if given.lower().startswith("bearer ") else request.cookies.get(TOKEN_COOKIE, "")
    if request.url.path == "/" and not candidate:
        candidate = request.query_params.get("token", "")
    return hmac.compare_digest(candidate.encode(), token.encode())


async def _upload(request: Request, limit: int) -> bytes:
    """The uploaded bytes, read in pieces and refused past `limit` (a declared length past it is refused unread)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit + 4096:
        raise Unacceptable(f"the upload is {int(declared):,} bytes; the service takes at most {limit:,}", 413)
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > limit + 4096:
            raise Unacceptable(f"the upload is over {limit:,} bytes; the service takes at most that", 413)
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data"):
        return _multipart_file(bytes(body), ctype, limit)
    if len(body) > limit:
        raise Unacceptable(f"the upload is {len(body):,} bytes; the service takes at most {limit:,}", 413)
    return bytes(body)


def _multipart_file(body: bytes, ctype: str, limit: int) -> bytes:
    """The `file` field of a multipart form (python-multipart's parser), or a one-line refusal."""
    from python_multipart import MultipartParser
    from python_multipart.multipart import parse_options_header

    _, params = parse_options_header(ctype)
    boundary = params.get(b"boundary")
    if not boundary:
        raise Unacceptable("a multipart upload without a boundary; send the form as a browser does", 400)
    parts: list[dict] = []

    def on_part_begin() -> None:
        parts.append({"headers": b"", "data": bytearray(), "field": b""})

    def on_header_field(data: bytes, start: int, end: int) -> None:
        parts[-1]["field"] = data[start:end].lower()

    def on_header_value(data: bytes, start: int, end: int) -> None:
        if parts[-1]["field"] == b"content-disposition":
            parts[-1]["headers"] += data[start:end]

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1]["data"] += data[start:end]

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_part_data": on_part_data,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except Exception:  # python-multipart's own parse errors
        raise Unacceptable("a malformed multipart upload; send the image as the form's 'file' field", 400) from None
    for part in parts:
        _, disp = parse_options_header(part["headers"])
        if disp.get(b"name") == b"file":
            if len(part["data"]) > limit:
                raise Unacceptable(f"the upload is over {limit:,} bytes; the service takes at most that", 413)
            return bytes(part["data"])
    raise Unacceptable("the multipart form has no 'file' field; send the image as 'file'", 400)
