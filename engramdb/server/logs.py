"""Structured logs: one JSON object per line, a request id on every line, one access line.

* :class:`JsonFormatter` writes each record as one JSON object (``ts``, ``level``,
  ``logger``, ``message``, ``request_id`` when inside a request, and the record's extras).
* :class:`RequestLogMiddleware` (pure ASGI, so the context variable it sets reaches the
  route and, through ``AsyncMemory``'s context-copying calls, the thread doing the work)
  takes the request id from ``X-Request-ID`` when it is a plain token, or makes one;
  returns it in the same header; and leaves one access line per request on the
  ``engramdb.access`` logger: method, route template, status, duration, key id, request id.
  The path's values, the query string and the body never appear: they carry namespaces,
  ids and memory text. The key id is read from ``scope["state"]["key_id"]``, where the
  authentication layer puts it (None until it does).
* :func:`configure_logging` installs the formatter on the root logger (stderr) and
  silences uvicorn's own access log, which would duplicate ours without the route template.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "X-Request-ID"
_RAW_HEADER = REQUEST_ID_HEADER.lower().encode("latin-1")
# A caller's id is echoed into logs and headers: only a plain token is taken as it is.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "engramdb_request_id", default=None
)
access_log = logging.getLogger("engramdb.access")

# Attributes every LogRecord has; anything else on a record came in through ``extra=``.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's ANSI-coloured copy of the message
}


def current_request_id() -> str | None:
    """The id of the request being served in this context, or None outside a request."""
    return _request_id.get()


def accept_request_id(raw: str | None) -> str:
    """Return ``raw`` when it is a plain token (letters, digits, ``._:-``, at most 128), else
    a fresh id: a caller's id lands in logs, so nothing else is taken from it."""
    if raw is not None and _REQUEST_ID.fullmatch(raw):
        return raw
    return uuid.uuid4().hex


@contextmanager
def request_id_context(request_id: str) -> Iterator[str]:
    """Run the block as request ``request_id``: every log line within carries it."""
    token = _request_id.set(request_id)
    try:
        yield request_id
    finally:
        _request_id.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; never raises on a value JSON cannot carry (``repr`` it)."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as one line of JSON."""
        out: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or current_request_id()
        if rid is not None:
            out["request_id"] = rid
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(out, default=repr, ensure_ascii=False)


JsonFormatter.converter = time.gmtime


def configure_logging(*, json_lines: bool = True, level: str = "INFO") -> None:
    """Send every log record to stderr, as JSON lines (or plain text), at ``level``.

    Replaces the root logger's handlers; uvicorn's loggers propagate to it, and its access
    log is turned off (the middleware writes the access line). The SDK's ``mcp`` loggers stay
    at WARNING: at INFO they quote a failed tool's message, which may hold the caller's data.
    """
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("mcp").setLevel(max(logging.WARNING, root.level))


def uvicorn_log_config() -> dict[str, Any]:
    """A ``log_config`` for uvicorn that leaves its loggers to the root handler.

    uvicorn installs its own handlers from its default config when a worker starts; this
    one installs none, so its lines go through :func:`configure_logging`'s formatter.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": False},
        },
    }


def route_template(scope: Scope) -> str:
    """The matched route's path template (``/v1/namespaces/{ns}/records``), never the path:
    the path carries namespaces and ids. ``<unmatched>`` when no route matched."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path or "/"
    return "<unmatched>"


class RequestLogMiddleware:
    """Gives each HTTP request an id (``X-Request-ID``, echoed back) and one access line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call: set the request id, time it, log it."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = next((v for k, v in scope.get("headers", []) if k == _RAW_HEADER), None)
        rid = accept_request_id(raw.decode("latin-1") if raw is not None else None)
        scope.setdefault("state", {})["request_id"] = rid
        status = [500]
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
                headers = [(k, v) for k, v in message.get("headers", []) if k != _RAW_HEADER]
                headers.append((_RAW_HEADER, rid.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        with request_id_context(rid):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                state = scope.get("state") or {}
                access_log.info(
                    "%s %s %d",
                    scope.get("method", "?"),
                    route_template(scope),
                    status[0],
                    extra={
                        "method": scope.get("method"),
                        "route": route_template(scope),
                        "status": status[0],
                        "duration_ms": round((time.perf_counter() - start) * 1000, 3),
                        "key_id": state.get("key_id"),
                        "request_id": rid,
                    },
                )
