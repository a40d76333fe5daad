"""HTTP API and web page for multilingual image search over a :class:`SearchIndex`.

Endpoints (OpenAPI schema at ``/openapi.json``):

* ``GET /search?q=...&k=...`` — ranked images for a text in any language.
* ``GET /images/{id}`` — the image file of result ``id``.
* ``GET /health``, ``GET /info`` — liveness; index mode, size and model banner.
* ``GET /`` — the search page (``static/``), offline: no CDN, a strict Content-Security-Policy.

Every error has the body ``{"detail": "<one line: what was wrong, what to do>"}``; it never holds a
filesystem path or a stack trace (a 500 says to look at the server log, which has the detail).
``k`` larger than the index is clamped: the response's ``k`` is the number of results returned.
FastAPI's ``/docs`` and ``/redoc`` pages are off because they load their scripts from a CDN.

Safe by default (docs/reliability.md): only requests whose ``Host`` is an allowed name are
answered (a web page the user visits cannot reach a server on 127.0.0.1 through DNS rebinding),
an image is served only if its bytes still match the index, and the uvicorn server closes
connections that do not finish their headers in time and answers 503 above a connection limit.
"""

from __future__ import annotations

import ipaddress
import logging
import mimetypes
import os
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from uclip.data.io import IMAGE_SUFFIXES
from uclip.data.text_quality import has_visible_text
from uclip.encoders.base import EmbeddingModel
from uclip.errors import UclipError
from uclip.serve.index.query import (
    ChangedImageError,
    MissingImageError,
    SearchIndex,
    UnknownImageError,
    UnsafeImagePathError,
)
from uclip.serve.settings import (
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_KEEP_ALIVE_S,
    DEFAULT_LIMIT_CONCURRENCY,
    LOOPBACK_HOSTS,
)

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
MAX_QUERY_CHARS = 512
MAX_K = 100
DEFAULT_K = 24

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
IMAGE_MEDIA_TYPES = sorted(
    {t for s in IMAGE_SUFFIXES if (t := mimetypes.types_map.get(s)) and t.startswith("image/")}
)


class SearchResult(BaseModel):
    id: int = Field(description="Row of the image in the index; fetch it at `url`.")
    path: str = Field(description="Image path relative to the indexed folder.")
    score: float = Field(
        description="Cosine similarity between query and image embedding, or the index's "
        "hubness-corrected score when it was built with a scorer (named in /info's banner)."
    )
    url: str = Field(description="Where the image is served (`/images/{id}`).")


class SearchResponse(BaseModel):
    query: str
    k: int = Field(description="Number of results returned (the request's k, clamped to size).")
    mode: str = Field(description="'image' (image tower) or 'caption' (found via captions).")
    results: list[SearchResult]


class Health(BaseModel):
    status: str
    images: int
    mode: str


class Info(BaseModel):
    mode: str
    banner: str
    images: int
    dim: int
    backend: str
    max_k: int
    max_query_chars: int
    spec: dict[str, Any]


class ErrorResponse(BaseModel):
    detail: str = Field(description="What was wrong and what to do.")


def _hints(max_k: int, max_query_chars: int) -> dict[str, str]:
    return {
        "q": f"send a search text of 1 to {max_query_chars} characters",
        "k": f"send an integer from 1 to {max_k}",
        "image_id": "use an id from the results of /search",
    }


def _validation_message(exc: RequestValidationError, hints: dict[str, str]) -> str:
    """FastAPI's error list -> one line naming the parameter, the problem and the fix."""
    parts = []
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ())]
        name = loc[-1] if loc else "request"
        where = f"{loc[0]} parameter '{name}'" if len(loc) > 1 else name
        hint = hints.get(name)
        parts.append(
            f"invalid {where}: {err.get('msg', 'invalid value')}" + (f"; {hint}" if hint else "")
        )
    return " | ".join(parts) or "invalid request"


def create_app(
    index: SearchIndex,
    model: EmbeddingModel,
    *,
    max_k: int = MAX_K,
    max_query_chars: int = MAX_QUERY_CHARS,
    allowed_hosts: Sequence[str] = LOOPBACK_HOSTS,
) -> FastAPI:
    """The search app for ``index``; queries are encoded by ``model.encode_text`` (any language).

    The caller is responsible for ``model`` being the one the index was built with
    (:meth:`SearchIndex.load` with ``model=`` checks it). ``allowed_hosts``: the ``Host``
    header values answered (Starlette's patterns: ``*.example.org``; ``*`` for any); other
    requests get a 400.
    """
    app = FastAPI(
        title="uclip multilingual image search",
        version="1",
        description=(
            "Search an image folder with text in any language (uCLIP: multilingual encoder + f_M "
            "for queries, CLIP image tower or English captions + f_C for images)."
        ),
        docs_url=None,
        redoc_url=None,
    )
    app.state.index = index
    app.state.model = model
    # Tokenizers and some encoders are not safe to call from several threads at once; encoding
    # one short query is fast, the similarity search after it runs unlocked.
    encode_lock = threading.Lock()
    page = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    errors = {400: {"model": ErrorResponse}, 422: {"model": ErrorResponse}}
    hints = _hints(max_k, max_query_chars)

    @app.exception_handler(RequestValidationError)
    async def _on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": _validation_message(exc, hints)})

    @app.exception_handler(StarletteHTTPException)
    async def _on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            status_code=exc.status_code,
            content={"detail": str(exc.detail)},
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _on_server_error(request: Request, exc: Exception) -> JSONResponse:
        # The traceback goes to the server log (uvicorn logs the re-raised exception), never to
        # the client: it would show file paths and code.
        return JSONResponse(
            status_code=500,
            content={"detail": "internal server error; the server log has the details"},
        )

    @app.middleware("http")
    async def _security_headers(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    @app.get("/", include_in_schema=False)
    def page_view() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": PAGE_CSP})

    @app.get("/search", response_model=SearchResponse, responses=errors)
    def search(
        request: Request,
        q: str = Query(
            min_length=1,
            max_length=max_query_chars,
            description="Search text in any language; must not be only whitespace.",
        ),
        k: int = Query(DEFAULT_K, ge=1, le=max_k, description="Number of results wanted."),
    ) -> SearchResponse:
        query = q.strip()
        if not has_visible_text(query):
            raise StarletteHTTPException(
                422,
                "invalid query parameter 'q': it has no visible characters (only whitespace, "
                f"control or blank characters, or combining marks alone); {hints['q']}",
            )
        try:
            with encode_lock:
                query_emb = model.encode_text([query])
            scores, ids = index.search(query_emb, k)
        except UclipError as exc:
            # A model or index problem on the server's side; its message may name local paths.
            log.error("search failed: %s", exc)
            raise StarletteHTTPException(
                500, "the server could not search; the server log has the details"
            ) from exc
        prefix = request.scope.get("root_path", "")
        results = [
            SearchResult(id=int(i), path=index.paths[i], score=float(s), url=f"{prefix}/images/{i}")
            for s, i in zip(scores[0].tolist(), ids[0].tolist(), strict=True)
            if i >= 0  # FAISS IVF pads with -1 when the probed lists hold fewer than k
        ]
        return SearchResponse(query=query, k=len(results), mode=index.mode, results=results)

    image_errors: dict[type[UclipError], tuple[int, str]] = {
        UnknownImageError: (404, f"no image with id {{}}: ids run from 0 to {len(index) - 1}"),
        MissingImageError: (404, "image {} is no longer in the images folder; rebuild the index"),
        UnsafeImagePathError: (
            403,
            "image {} lies outside the images folder; refusing to serve it",
        ),
        ChangedImageError: (
            409,
            "image {} has changed since the index was built; rebuild the index",
        ),
    }

    @app.get(
        "/images/{image_id}",
        response_class=Response,
        responses={
            200: {
                "content": {
                    t: {"schema": {"type": "string", "format": "binary"}} for t in IMAGE_MEDIA_TYPES
                },
                "description": "The image file.",
            },
            403: {"model": ErrorResponse},
            404: {"model": ErrorResponse},
            409: {"model": ErrorResponse},
            422: {"model": ErrorResponse},
        },
    )
    def image(
        image_id: int = PathParam(ge=0, description="An id from /search results."),
    ) -> Response:
        try:
            data = index.image_bytes(image_id)
        except tuple(image_errors) as exc:
            log.warning("not serving image %s: %s", image_id, exc)
            status, message = image_errors[type(exc)]
            raise StarletteHTTPException(status, message.format(image_id)) from exc
        # The content type comes from the indexed name (always an image suffix), not the target.
        media_type = mimetypes.guess_type(index.paths[image_id])[0] or "application/octet-stream"
        return Response(data, media_type=media_type, headers={"Cache-Control": "max-age=3600"})

    @app.get("/health", response_model=Health)
    def health() -> Health:
        return Health(status="ok", images=len(index), mode=index.mode)

    @app.get("/info", response_model=Info)
    def info() -> Info:
        return Info(
            mode=index.mode,
            banner=index.banner(),
            images=len(index),
            dim=index.dim,
            backend=index.backend,
            max_k=max_k,
            max_query_chars=max_query_chars,
            spec=index.spec,
        )

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(HeadAsGet)
    # Outermost, so a request for a foreign Host reaches nothing else.
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    return app


class HeadAsGet:
    """ASGI middleware: answer HEAD like GET without the body (HTTP requires HEAD wherever GET
    works; FastAPI routes declared with ``@app.get`` would answer 405)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_headers_only(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, send_headers_only)


def serve(
    index_path: str | os.PathLike[str],
    model: EmbeddingModel | str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    images_root: str | os.PathLike[str] | None = None,
    allowed_hosts: Sequence[str] = (),
    limit_concurrency: int = DEFAULT_LIMIT_CONCURRENCY,
    timeout_keep_alive: float = DEFAULT_KEEP_ALIVE_S,
    header_timeout: float = DEFAULT_HEADER_TIMEOUT_S,
    log_level: str = "info",
) -> None:
    """Load the index (checking it matches ``model``) and serve it with uvicorn until stopped.

    ``model`` is a loaded model or a saved model's spec (``uclip.load``). ``images_root``: the
    folder the images are served from (default: the index directory; see
    :meth:`SearchIndex.load`). Binds to loopback by default; pass ``host="0.0.0.0"`` deliberately
    to expose it, with ``allowed_hosts`` naming the host names clients use, behind a reverse
    proxy (docs/reliability.md). The answered ``Host`` names are :func:`host_allow_list`.
    """
    import uvicorn

    check_listen_address(host, port)
    hosts = host_allow_list(host, allowed_hosts)
    options = server_options(limit_concurrency, timeout_keep_alive, header_timeout)
    if isinstance(model, str | os.PathLike):
        from uclip.loading import load

        model = load(model)
    index = SearchIndex.load(index_path, model, images_root=images_root)
    app = create_app(index, model, allowed_hosts=hosts)
    uvicorn.run(app, host=host, port=port, log_level=log_level, **options)


def host_allow_list(host: str, extra: Sequence[str] = ()) -> list[str]:
    """The ``Host`` names a server bound to ``host`` answers: the loopback names, ``host``
    itself, and ``extra``. A wildcard bind (``0.0.0.0``, ``::``) needs ``extra``: no name can be
    guessed for it, and answering every name would undo the DNS-rebinding guard."""
    names = list(LOOPBACK_HOSTS)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None and address.is_unspecified:
        if not extra:
            raise UclipError(
                f"--host {host} listens on every interface: pass --allowed-hosts with the "
                "host names clients use (e.g. search.example.org), behind a reverse proxy"
            )
    elif host:
        names.append(f"[{host}]" if address is not None and address.version == 6 else host)
    for name in extra:
        if not name or (any(c in name for c in "/ :") and not name.startswith("[")):
            raise UclipError(
                f"--allowed-hosts entry {name!r} is not a host name: pass names such as "
                "search.example.org or *.example.org, comma-separated"
            )
        names.append(name.lower())
    return list(dict.fromkeys(n.lower() for n in names))


def server_options(
    limit_concurrency: int = DEFAULT_LIMIT_CONCURRENCY,
    timeout_keep_alive: float = DEFAULT_KEEP_ALIVE_S,
    header_timeout: float = DEFAULT_HEADER_TIMEOUT_S,
) -> dict[str, Any]:
    """uvicorn settings for every server this module starts (``serve``, ``BackgroundServer``)."""
    for name, value in (
        ("limit_concurrency", limit_concurrency),
        ("timeout_keep_alive", timeout_keep_alive),
        ("header_timeout", header_timeout),
    ):
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise UclipError(f"{name} must be a positive number, got {value!r}")
    return {
        "http": header_timeout_protocol(float(header_timeout)),
        "limit_concurrency": int(limit_concurrency),
        "timeout_keep_alive": timeout_keep_alive,
    }


def header_timeout_protocol(seconds: float) -> type:
    """uvicorn's h11 protocol that closes a connection whose request headers are not complete
    ``seconds`` after it opened, or after its previous response. uvicorn has no such timeout:
    connections dripping header bytes (slowloris) stay open forever, and each counts against
    ``limit_concurrency``."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutH11Protocol(H11Protocol):
        _header_timer: Any = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm_header_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            super().connection_lost(exc)

        def _arm_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            self._header_timer = self.loop.call_later(seconds, self._on_header_timeout)

        def _on_header_timeout(self) -> None:
            self._header_timer = None
            # IDLE: h11 has not parsed a complete request line and headers since the timer
            # was armed (the state moves on as soon as it has).
            if self.conn.their_state is h11.IDLE:
                self.timeout_keep_alive_handler()

    return HeaderTimeoutH11Protocol


def check_listen_address(host: str, port: int) -> None:
    """Fail with one line before loading anything if ``host:port`` cannot be listened on (a port
    out of range, in use, or privileged)."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise UclipError(
            f"port {port!r} is out of range: pass --port from 0 (any free port) to 65535"
        )
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(infos[0][4])
    except (OSError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise UclipError(
            f"cannot listen on {host}:{port} ({reason}): pass another --host or --port"
        ) from None


class BackgroundServer:
    """Run an ASGI app with uvicorn in a daemon thread on a free loopback port.

    For tests and benchmarks: ``with BackgroundServer(app) as server: httpx.get(server.url)``.
    The socket is bound before the thread starts, so there is no port race.
    """

    def __init__(
        self, app: Any, host: str = "127.0.0.1", log_level: str = "warning", **options: Any
    ) -> None:
        """``options``: :func:`server_options` arguments (the same limits as ``serve``)."""
        import uvicorn

        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self.host, self.port = self._sock.getsockname()[:2]
        self.url = f"http://{self.host}:{self.port}"
        config = uvicorn.Config(
            app, log_level=log_level, lifespan="off", access_log=False, **server_options(**options)
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def start(self, timeout: float = 15.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise UclipError(f"the server on {self.url} did not start within {timeout} s")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
