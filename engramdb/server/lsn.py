"""Read-your-writes over HTTP: the ``X-Engram-LSN`` header.

See :mod:`engramdb.consistency` for the read floor it sets and the positions it carries.

A response to a write request (POST, PUT, PATCH, DELETE) carries the WAL position of the
store's last committed write, which covers that request's own write. A request that sends
the header back gets reads at least that fresh: the store reads the primary until its
replica has replayed past the position. Without a read replica the store keeps no position
and no header is sent; a header received is then harmless.

A pure ASGI middleware (not ``BaseHTTPMiddleware``) so the context variable it sets is seen
by the route and, through ``AsyncMemory``'s context-copying calls, by the store.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engramdb.consistency import parse_lsn, read_at_least
from engramdb.errors import ValidationError, status_for
from engramdb.server.errors import error_response

LSN_HEADER = "X-Engram-LSN"
_RAW_HEADER = LSN_HEADER.lower().encode("latin-1")
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class ReadFloorMiddleware:
    """Applies a request's ``X-Engram-LSN`` as its read floor; stamps write responses."""

    def __init__(self, app: ASGIApp, last_write_lsn: Callable[[], str | None]) -> None:
        self.app = app
        self.last_write_lsn = last_write_lsn

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call: 4xx on a malformed header, else pass through with the floor."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = next((v for k, v in scope.get("headers", []) if k == _RAW_HEADER), None)
        floor: int | None = None
        if raw is not None:
            try:
                floor = parse_lsn(raw.decode("latin-1"))
            except ValidationError as exc:
                exc.details["header"] = LSN_HEADER
                response = error_response(
                    status_for(exc), exc.code, f"header {LSN_HEADER}: {exc.message}", exc.details
                )
                await response(scope, receive, send)
                return
        stamp = scope.get("method", "GET") in WRITE_METHODS

        async def send_stamped(message: Message) -> None:
            if stamp and message["type"] == "http.response.start":
                lsn = self.last_write_lsn()
                if lsn is not None:
                    headers: list[Any] = list(message.get("headers", []))
                    headers.append((_RAW_HEADER, lsn.encode("latin-1")))
                    message = {**message, "headers": headers}
            await send(message)

        with read_at_least(floor):
            await self.app(scope, receive, send_stamped)
