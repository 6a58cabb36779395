"""What the sync and async HTTP faces share: the retry rule, request building, answers.

Only the I/O differs between ``Client`` and ``AsyncClient`` (``http.py``): each runs the
same loop — send, :meth:`Policy.delay` decides whether and when to send again, then
:func:`answer` turns the last response into a result or an ``engramdb.errors`` exception.

Retry rule: a connection that was never made (nothing sent) is always retried; a timeout,
a dropped connection or a 502/503/504 is retried only for a repeatable request (a read, or a
write carrying an Idempotency-Key, which the service applies once); a 429 is retried after
its ``Retry-After``. Waits grow exponentially with full jitter, so clients that failed
together do not come back together.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from engramdb.client import decode, wire
from engramdb.errors import EngramError, StoreUnavailableError, error_from_body

RETRY_STATUSES = frozenset({502, 503, 504})
MAX_RETRY_AFTER_S = 30.0
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class Policy:
    """How often and how long to retry (``retries`` = extra attempts after the first)."""

    retries: int = 3
    backoff_s: float = 0.1
    max_backoff_s: float = 2.0

    def delay(self, req: wire.Request, attempt: int, outcome: object) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None: the outcome is final.

        ``outcome`` is the response or the ``httpx.TransportError`` of attempt ``attempt``
        (counted from 0).
        """
        if attempt >= self.retries:
            return None
        if isinstance(outcome, httpx.Response):
            if outcome.status_code == 429:
                return _retry_after(outcome) or self._backoff(attempt)
            if outcome.status_code in RETRY_STATUSES and req.repeatable:
                return self._backoff(attempt)
            return None
        if isinstance(outcome, _NOT_SENT) or (
            isinstance(outcome, httpx.TransportError) and req.repeatable
        ):
            return self._backoff(attempt)
        return None

    def _backoff(self, attempt: int) -> float:
        return random.uniform(0.0, min(self.max_backoff_s, self.backoff_s * (2**attempt)))


def _retry_after(resp: httpx.Response) -> float | None:
    raw = resp.headers.get("retry-after", "")
    try:
        return min(max(float(raw), 0.0), MAX_RETRY_AFTER_S)
    except ValueError:
        return None


@dataclass(frozen=True)
class Endpoint:
    """The service a client talks to, and the headers every request of it carries."""

    url: str
    api_key: str | None = None

    def headers(self, req: wire.Request, idempotency_key: str | None) -> dict[str, str]:
        """The headers of one request: the key, the idempotency key, the upload's type."""
        out = {"Accept": "application/json"}
        if self.api_key:
            out["Authorization"] = f"Bearer {self.api_key}"
        if idempotency_key is not None:
            out["Idempotency-Key"] = idempotency_key
        if req.upload is not None:
            out["Content-Type"] = req.upload_type
        return out

    def request_args(self, req: wire.Request) -> dict[str, Any]:
        """Keyword arguments of ``httpx.Client.build_request`` (the body aside for uploads).

        A write gets one Idempotency-Key for all its attempts: that is what makes its retry
        safe.
        """
        key = uuid.uuid4().hex if req.keyed else None
        args: dict[str, Any] = {
            "method": req.method,
            "url": req.path,
            "params": req.params or None,
            "headers": self.headers(req, key),
        }
        if req.body is not None:
            args["json"] = req.body
        return args


def unreachable(
    endpoint: Endpoint, req: wire.Request, exc: Exception, attempts: int
) -> EngramError:
    """The error of a call whose every attempt failed in transport."""
    return StoreUnavailableError(
        f"the service at {endpoint.url} did not answer {req.op} "
        f"({type(exc).__name__}: {exc or 'no detail'}) after {attempts} attempt(s)",
        url=endpoint.url,
        op=req.op,
        attempts=attempts,
    )


def answer(req: wire.Request, status: int, body: Any) -> Any:
    """The result of ``req`` from the service's final status and JSON body (None if empty).

    Raises:
        EngramError: the class the body's ``error`` code names (401 and 403 included).
    """
    if status not in req.ok_statuses:
        raise error_from_body(status, body)
    result = decode.decode(req.op, body)
    if req.progress is not None:
        req.progress(result if isinstance(result, int) else sum(result.values()))
    return result


def read_json(resp: httpx.Response) -> Any:
    """The body as JSON, or None when it is empty or not JSON (the error then says so)."""
    if not resp.content:
        return None
    try:
        return resp.json()
    except ValueError:
        return None


def count_exported(path: Path) -> int:
    """The number of records in an export file (its ``"kind": "record"`` lines)."""
    n = 0
    with open(path, "rb") as fh:
        for line in fh:
            if line.startswith(b'{"kind": "record"'):
                n += 1
    return n
