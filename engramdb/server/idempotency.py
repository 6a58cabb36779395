"""``Idempotency-Key``: a write sent twice with the same key is applied once.

A client that loses the answer to a write (a timeout, a dropped connection) cannot know
whether it was applied; ``engramdb.client`` sends every write with a fresh key and sends
the same key again when it retries. The first request with a key runs; its answer is kept
for ``TTL_S`` and replayed, with ``Idempotent-Replayed: true``, to every later request with
the same key, caller (its Authorization header), method and path. A request that arrives
while the first is still running waits for its answer. An answer of 5xx or 429 is not kept:
nothing is known to be applied, so the retry runs again.

The table lives in the process, bounded by entries and bytes (oldest out first). A retry
lands on the process that ran the write when the service runs one worker; with several
workers, a retry on a new connection may reach another worker, which does not know the key
(a store-backed table would close that gap).
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engramdb.server.errors import error_response

HEADER = b"idempotency-key"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
TTL_S = 24 * 3600.0
MAX_ENTRIES = 10_000
MAX_BYTES = 64 * 1024 * 1024
WAIT_S = 120.0
"""How long a repeat waits for the first request with its key before answering 409."""
_POLL_S = 0.02
_KEY_CHARS = frozenset(range(0x21, 0x7F))  # visible ASCII


@dataclass
class _Entry:
    expires: float
    done: bool = False
    released: bool = False
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""


class KeyTable:
    """Answers by key, bounded and expiring; safe to share between threads and loops."""

    def __init__(
        self, ttl_s: float = TTL_S, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def claim(self, key: str) -> _Entry | None:
        """None: the caller owns ``key`` now and runs the request; else the key's entry."""
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.expires > now:
                return entry
            if entry is not None:
                self._drop(key)
            self._entries[key] = _Entry(expires=now + self.ttl_s)
            self._evict(now)
            return None

    def finish(
        self, key: str, status: int, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> None:
        """Keep the answer of the request that owned ``key``."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return
            entry.status, entry.headers, entry.body, entry.done = status, headers, body, True
            self._bytes += len(body)
            self._evict(time.monotonic())

    def release(self, key: str) -> None:
        """Forget ``key``: its request failed, so the next one with it runs again."""
        with self._lock:
            self._drop(key)

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        if entry.done:
            self._bytes -= len(entry.body)
        else:
            entry.released = True  # a request waiting on it claims the key again

    def _evict(self, now: float) -> None:
        while self._entries and (
            len(self._entries) > self.max_entries or self._bytes > self.max_bytes
        ):
            oldest = next(iter(self._entries))
            self._drop(oldest)
        expired = [k for k, e in self._entries.items() if e.done and e.expires <= now]
        for key in expired[:100]:  # amortised: a few per call
            self._drop(key)


class IdempotencyMiddleware:
    """ASGI middleware applying :class:`KeyTable` to writes that carry a key."""

    def __init__(self, app: ASGIApp, table: KeyTable | None = None) -> None:
        self.app = app
        self.table = table if table is not None else KeyTable()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run, replay or (after ``WAIT_S`` behind a running twin) refuse one request."""
        if scope["type"] != "http" or scope["method"] not in WRITE_METHODS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        raw = headers.get(HEADER)
        if raw is None:
            await self.app(scope, receive, send)
            return
        if not 1 <= len(raw) <= 255 or not set(raw) <= _KEY_CHARS:
            response = error_response(
                422,
                "validation_error",
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
                {"header": "Idempotency-Key"},
            )
            await response(scope, receive, send)
            return
        key = _scoped(headers.get(b"authorization", b""), scope, raw)
        deadline = time.monotonic() + WAIT_S
        while True:
            entry = self.table.claim(key)
            if entry is None:
                await self._run(key, scope, receive, send)
                return
            while not (entry.done or entry.released) and time.monotonic() < deadline:
                await asyncio.sleep(_POLL_S)
            if entry.done:
                await _replay(entry, send)
                return
            if not entry.released:
                response = error_response(
                    409,
                    "conflict",
                    "a request with this Idempotency-Key is still running; retry later",
                    {"header": "Idempotency-Key"},
                )
                await response(scope, receive, send)
                return

    async def _run(self, key: str, scope: Scope, receive: Receive, send: Send) -> None:
        status = 0
        kept: list[tuple[bytes, bytes]] = []
        body = bytearray()

        async def capture(message: Message) -> None:
            nonlocal status, kept
            if message["type"] == "http.response.start":
                status = message["status"]
                kept = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                body.extend(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, capture)
        except BaseException:
            self.table.release(key)
            raise
        if status == 0 or status >= 500 or status == 429:
            self.table.release(key)
        else:
            self.table.finish(key, status, kept, bytes(body))


async def _replay(entry: _Entry, send: Send) -> None:
    headers = [*entry.headers, (b"idempotent-replayed", b"true")]
    await send({"type": "http.response.start", "status": entry.status, "headers": headers})
    await send({"type": "http.response.body", "body": entry.body})


def _scoped(authorization: bytes, scope: Scope, key: bytes) -> str:
    """The table key: who asked (a digest of their credentials), what, where, which key."""
    digest = hashlib.sha256()
    for part in (
        authorization,
        scope["method"].encode(),
        scope["path"].encode("utf-8", "replace"),
        key,
    ):
        digest.update(len(part).to_bytes(4, "big") + part)
    return digest.hexdigest()


def install(app: Any) -> None:
    """Add the middleware to a FastAPI/Starlette app (one table per app)."""
    app.add_middleware(IdempotencyMiddleware)
