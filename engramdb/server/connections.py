"""Connection-level limits enforced by uvicorn: head size, slow heads, idle keep-alive, drain.

Why: uvicorn bounds an idle keep-alive connection but not a request head that trickles in
a byte at a time (a slow-loris client holds a connection, and a worker slot, for ever).
:class:`HeadTimedH11` is uvicorn's h11 protocol with one more timer: a request head must arrive
whole within ``header_timeout_s`` of its first byte (or of the connection), else the
connection is closed. A body's chunks are timed by
:class:`~engramdb.server.limits.RequestLimitsMiddleware` (``body_timeout_s``).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from engramdb.config import Settings

WORKER_HEALTHCHECK_S = 60


class HeadTimedH11(H11Protocol):
    """uvicorn's h11 protocol with a deadline on receiving each request head.

    A module-level class (worker processes receive it pickled by name); its deadline is
    set by :func:`uvicorn_options` in this process, and read from ``ENGRAM_HEADER_TIMEOUT_S``
    in a worker (the runner exports every setting before starting workers).
    """

    header_timeout_s: float | None = None
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the head deadline with the connection."""
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        """Time a head from its first byte; stop timing once it is complete."""
        if self._between_requests():
            self._arm()
        super().data_received(data)
        if not self._between_requests():
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        """Drop the timer with the connection."""
        self._disarm()
        super().connection_lost(exc)

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(_head_timeout(), self._head_late)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if self._between_requests() and not self.transport.is_closing():
            self.transport.close()


def _head_timeout() -> float:
    if HeadTimedH11.header_timeout_s is None:
        default = Settings.model_fields["header_timeout_s"].default
        HeadTimedH11.header_timeout_s = float(os.environ.get("ENGRAM_HEADER_TIMEOUT_S", default))
    return HeadTimedH11.header_timeout_s


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The uvicorn keyword arguments that enforce the service's connection limits.

    h11 is used because its request-head limit is a setting (httptools has a fixed one);
    the head itself is also measured in the app (``max_header_bytes``), since h11 only
    bounds a head still arriving.
    """
    HeadTimedH11.header_timeout_s = settings.header_timeout_s
    return {
        "http": HeadTimedH11,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "timeout_keep_alive": max(1, round(settings.keepalive_timeout_s)),
        "timeout_graceful_shutdown": max(1, round(settings.shutdown_grace_s)),
        # A worker answers uvicorn's health pings only once it has unpickled its config,
        # which imports this module and so the whole stack: on a loaded machine that took
        # longer than uvicorn's 5 s, and every worker was killed as hung, again and again.
        # A worker that dies is still noticed at once (``supervisor.answers``).
        "timeout_worker_healthcheck": WORKER_HEALTHCHECK_S,
    }
