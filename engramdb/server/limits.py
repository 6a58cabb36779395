"""Request limits enforced before a route runs: body size, header count, query names, timeouts.

Why here and not in each route: a body must be refused before it is read (a 300 MB post
must not grow the server), which only an ASGI wrapper around ``receive`` can do, and an
unknown query parameter must be refused on every route alike (``?userid=`` silently
widened a list to every user).

* :class:`RequestLimitsMiddleware` answers 431 past ``max_header_count`` headers or
  ``max_header_bytes`` of headers, 413 when
  ``Content-Length`` names more than the route's limit (``max_upload_bytes`` for import and
  restore, ``max_body_bytes`` for the rest), and counts a body sent without a length (chunked)
  as it streams, failing with 413 the moment the count passes the limit; each chunk must
  arrive within ``body_timeout_s`` (408).
* :func:`reject_unknown_query` is an app-wide dependency: a query parameter the route does
  not declare is a 422 naming it.
* connection-level limits (slow request heads, idle keep-alive, the SIGTERM drain) are
  uvicorn's: see :mod:`engramdb.server.connections`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engramdb.config import Settings
from engramdb.errors import ValidationError
from engramdb.server.admission import AdmissionMiddleware
from engramdb.server.errors import error_response

# Routes whose body is a file: they take the larger limit and stream it to disk.
UPLOAD_PATHS = frozenset({"/v1/admin/import", "/v1/admin/restore"})


class LimitHTTPError(HTTPException):
    """A limit hit while the body streams in.

    An ``HTTPException`` so that FastAPI's body parsing lets it through (it turns any other
    exception raised while reading a body into a 400) and the error handler answers it with
    the shared body, ``details`` included.
    """

    def __init__(self, status_code: int, detail: str, **details: Any) -> None:
        # The rest of the body is not wanted: closing the connection stops the client.
        super().__init__(status_code, detail, headers={"Connection": "close"})
        self.details = details


def body_limit(settings: Settings, path: str) -> tuple[str, int]:
    """The name and value of the body limit of a request to ``path``."""
    if path in UPLOAD_PATHS:
        return "max_upload_bytes", settings.max_upload_bytes
    return "max_body_bytes", settings.max_body_bytes


def _too_large(name: str, limit: int, size: int | None) -> tuple[str, dict[str, Any]]:
    said = f" ({size} bytes)" if size is not None else ""
    return (
        f"the request body{said} is larger than the limit {name}={limit} bytes",
        {"limit": name, "max_bytes": limit},
    )


class RequestLimitsMiddleware:
    """Pure ASGI middleware: header count, body size and body timeouts (see the module)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse a request over a limit before the app reads it; count the rest."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        s = self.settings
        headers = scope.get("headers") or []
        if len(headers) > s.max_header_count:
            response = error_response(
                431,
                "header_fields_too_large",
                f"the request has {len(headers)} headers; the limit max_header_count is "
                f"{s.max_header_count}",
                {"limit": "max_header_count", "max_headers": s.max_header_count},
            )
            await response(scope, receive, send)
            return
        head = sum(len(k) + len(v) + 4 for k, v in headers)
        if head > s.max_header_bytes:
            # uvicorn's h11 limit only bounds a head still arriving; one that came whole
            # in a single read is measured here.
            response = error_response(
                431,
                "header_fields_too_large",
                f"the request headers are {head} bytes; the limit max_header_bytes is "
                f"{s.max_header_bytes}",
                {"limit": "max_header_bytes", "max_bytes": s.max_header_bytes},
            )
            await response(scope, receive, send)
            return
        name, limit = body_limit(s, scope.get("path", ""))
        length = _content_length(headers)
        if length is not None and length > limit:
            message, details = _too_large(name, limit, length)
            response = error_response(413, "limit_exceeded", message, details)
            response.headers["Connection"] = "close"
            await response(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, _counting(receive, name, limit, s.body_timeout_s), watched)
        except LimitHTTPError as exc:
            # Raised while a middleware (not a route) read the body: answer it here.
            if started:
                raise
            response = error_response(
                exc.status_code,
                "limit_exceeded" if exc.status_code == 413 else "request_timeout",
                str(exc.detail),
                exc.details,
            )
            response.headers["Connection"] = "close"
            await response(scope, receive, send)


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for key, value in headers:
        if key.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _counting(receive: Receive, name: str, limit: int, timeout_s: float) -> Receive:
    """``receive`` that fails once the body passes ``limit`` bytes or a chunk is late."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        try:
            # asyncio.timeout arms one timer; wait_for wrapped every receive in a new task.
            async with asyncio.timeout(timeout_s):
                message = await receive()
        except TimeoutError as exc:
            raise LimitHTTPError(
                408,
                f"the request body did not arrive within body_timeout_s={timeout_s}",
                limit="body_timeout_s",
            ) from exc
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                text, details = _too_large(name, limit, None)
                raise LimitHTTPError(413, text, **details)
        return message

    return wrapped


_QUERY_NAMES: dict[int, frozenset[str]] = {}


def _declared_query(route: APIRoute) -> frozenset[str]:
    known = _QUERY_NAMES.get(id(route))
    if known is None:
        names: set[str] = set()
        stack = [route.dependant]
        while stack:
            dep = stack.pop()
            names.update(f.alias for f in dep.query_params)
            stack.extend(dep.dependencies)
        known = _QUERY_NAMES[id(route)] = frozenset(names)
    return known


async def reject_unknown_query(request: Request) -> None:
    """App-wide dependency: refuse query parameters the route does not declare (422)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not request.query_params:
        return
    unknown = sorted(set(request.query_params) - _declared_query(route))
    if unknown:
        allowed = sorted(_declared_query(route))
        raise ValidationError(
            f"unknown query parameter {unknown[0]!r}; this route takes "
            f"{', '.join(allowed) if allowed else 'none'}",
            field=unknown[0],
            unknown=unknown,
        )


def install_limits(app: FastAPI, settings: Settings) -> None:
    """Add the request limits, admission control, CORS and trusted hosts to ``app``.

    Call it before the routes are included (the query check is an app-wide dependency).
    Outermost first: trusted hosts, CORS, request limits, admission (which thus sees a
    body already bounded by the size limit).

    CORS stays off unless ``cors_origins`` names origins; ``trusted_hosts`` (when set)
    refuses any other ``Host`` header with 400, which stops DNS-rebinding pages from
    reaching a service on a private address.
    """
    app.router.dependencies.append(Depends(reject_unknown_query))
    app.add_middleware(AdmissionMiddleware, settings=settings)
    app.add_middleware(RequestLimitsMiddleware, settings=settings)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID", "X-Engram-LSN"],
            expose_headers=["Retry-After", "X-Request-ID", "X-Engram-LSN"],
        )
    if settings.trusted_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(settings.trusted_hosts))
