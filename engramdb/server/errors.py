"""Exception handlers: every error leaves the service as ``{error, message, details}``.

* :class:`~engramdb.errors.EngramError` -> the one status of ``engramdb.errors.status_for``;
* request validation (bad JSON, unknown or server-owned fields, wrong types) -> 422
  ``validation_error``;
* HTTP errors raised by routing (unknown path 404, wrong method 405) -> their status;
* anything else -> 500 ``internal_error`` with a fixed message: the exception (which may
  carry SQL, paths or a traceback) is logged, never sent.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from engramdb.errors import EngramError, status_for

log = logging.getLogger("engramdb.server")
ERROR_MEDIA_TYPE = "application/problem+json"
_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    413: "limit_exceeded",
    415: "unsupported_media_type",
    431: "header_fields_too_large",
}


def error_response(
    status: int, error: str, message: str, details: dict[str, Any] | None = None
) -> JSONResponse:
    """Return a JSON error response with the shared body shape."""
    body = {"error": error, "message": message, "details": jsonable_encoder(details or {})}
    return JSONResponse(body, status_code=status, media_type=ERROR_MEDIA_TYPE)


async def _engram_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, EngramError)
    status = status_for(exc)
    if status >= 500:
        log.error("%s %s failed: %s", request.method, request.url.path, exc, exc_info=exc)
    response = error_response(status, exc.code, exc.message, _safe_details(exc.details))
    retry_after = exc.details.get("retry_after")
    if isinstance(retry_after, int | float) and status in (429, 503):
        response.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return response


def _safe_details(details: dict[str, Any]) -> dict[str, Any]:
    # details come from our own code but may hold arbitrary values (e.g. the bad input):
    # keep what JSON can carry and stringify the rest rather than fail while failing.
    out: dict[str, Any] = {}
    for key, value in details.items():
        try:
            out[key] = jsonable_encoder(value)
        except (TypeError, ValueError):
            out[key] = repr(value)
    return out


# Path parameters named for the caller: the URL's {ns} is the namespace.
_PATH_NAMES = {"ns": "namespace"}


def _location(loc: Any) -> str:
    parts = [str(p) for p in loc]
    if len(parts) == 2 and parts[0] == "path":
        parts[1] = _PATH_NAMES.get(parts[1], parts[1])
    return ".".join(parts)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = []
    for err in exc.errors():
        # Only location, message and type: "input" and "ctx" may hold arbitrary objects.
        errors.append(
            {
                "loc": [str(p) for p in err.get("loc", ())],
                "msg": err.get("msg", ""),
                "type": err.get("type", ""),
            }
        )
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = _location(first["loc"])
    message = f"{where}: {first['msg']}" if where else str(first["msg"])
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more)"
    return error_response(422, "validation_error", message, {"errors": errors})


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        # FastAPI's "error parsing the body" (e.g. bytes that are not UTF-8) and a malformed
        # multipart body: malformed input, which is 422 everywhere else.
        detail = exc.detail if isinstance(exc.detail, str) else "malformed request"
        return error_response(422, "validation_error", f"{detail} (malformed request body)")
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    detail = exc.detail if isinstance(exc.detail, str) else "request failed"
    response = error_response(exc.status_code, code, detail, getattr(exc, "details", None))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s raised", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "internal server error; see the server log")


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that give every error the ``{error, message, details}`` shape."""
    app.add_exception_handler(EngramError, _engram_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)
