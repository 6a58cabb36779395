"""``Idempotency-Key``: a write sent twice with the same key is applied once.

A client that loses the answer to a write (a timeout, a dropped connection) cannot know
whether it was applied; ``engramdb.client`` sends every write with a fresh key and sends
the same key again when it retries. The first request with a key runs; its answer is kept
for ``TTL_S`` and replayed, with ``Idempotent-Replayed: true``, to every later request with
the same key, caller (its Authorization header), method and path. A request that arrives
while the first is still running waits for its answer. An answer of 5xx or 429 is not kept:
nothing is known to be applied, so the retry runs again.

The table lives in the store (:class:`StoreTable`, migration 0017), so a retry that lands
on another worker process, or another machine on the same PostgreSQL, finds the key its
first attempt claimed: the write is applied once whatever ``--workers`` is. A claim holds
for ``LEASE_S`` (a process that dies mid-request frees its keys then); an answer larger
than ``MAX_KEPT_BODY`` is not kept (only an export answers that much, and reading it twice
changes nothing). :class:`KeyTable` is the same table in the process, for a store without
the table.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import anyio.to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engramdb.ops.idempotency import IdempotencyRow, IdempotencyService
from engramdb.server.errors import error_response

HEADER = b"idempotency-key"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
TTL_S = 24 * 3600.0
MAX_ENTRIES = 10_000
MAX_BYTES = 64 * 1024 * 1024
WAIT_S = 120.0
"""How long a repeat waits for the first request with its key before answering 409."""
LEASE_S = 600.0
"""How long a claim holds without an answer: past it, the claiming process is taken as dead
and a retry runs (longer than any call the service lets run)."""
MAX_KEPT_BODY = 1024 * 1024
_POLL_S = 0.02
_STORE_POLL_S = 0.05
T = TypeVar("T")
_KEY_CHARS = frozenset(range(0x21, 0x7F))  # visible ASCII


@dataclass
class _Entry:
    expires: float
    done: bool = False
    released: bool = False
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""


class Table(Protocol):
    """Where the middleware keeps claims and answers (the store, or this process)."""

    blocking: bool
    """Whether the methods do I/O (the middleware then calls them on a worker thread)."""

    def claim(self, key: str) -> _Entry | None:
        """None: the caller owns ``key`` now and runs the request; else the key's entry."""
        ...

    def state(self, key: str) -> _Entry | None:
        """The key's entry as it is now; None when it was released or has expired."""
        ...

    def finish(
        self, key: str, status: int, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> None:
        """Keep the answer of the request that owned ``key``."""
        ...

    def release(self, key: str) -> None:
        """Forget ``key``: its request failed, so the next one with it runs again."""
        ...


class KeyTable:
    """Answers by key in this process, bounded and expiring; safe to share between threads
    and loops."""

    blocking = False

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

    def state(self, key: str) -> _Entry | None:
        """The key's entry (None once dropped)."""
        with self._lock:
            entry = self._entries.get(key)
            return None if entry is None or entry.released else entry

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


class StoreTable:
    """Answers by key in the store (:class:`IdempotencyService`), shared by every process."""

    blocking = True

    def __init__(self, service: IdempotencyService) -> None:
        self.service = service

    def claim(self, key: str) -> _Entry | None:
        """Claim ``key`` in the store."""
        row = self.service.claim(key)
        return None if row is None else _entry_of(row)

    def state(self, key: str) -> _Entry | None:
        """The key's row now; None when released or expired."""
        row = self.service.state(key)
        return None if row is None else _entry_of(row)

    def finish(
        self, key: str, status: int, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> None:
        """Keep the answer for ``TTL_S``."""
        text = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers]
        self.service.finish(key, status, text, body)

    def release(self, key: str) -> None:
        """Drop the claim of a request that failed."""
        self.service.release(key)


def _entry_of(row: IdempotencyRow) -> _Entry:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in json.loads(row.headers)]
    return _Entry(row.expires_at / 1e6, row.done, False, row.status, headers, row.body)


class IdempotencyMiddleware:
    """ASGI middleware applying a :class:`Table` to writes that carry a key."""

    def __init__(self, app: ASGIApp, table: Table | None = None) -> None:
        self.app = app
        self.table: Table = table if table is not None else KeyTable()

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self.table.blocking:
            return await anyio.to_thread.run_sync(fn, *args)
        return fn(*args)

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
        poll = _STORE_POLL_S if self.table.blocking else _POLL_S
        while True:
            found = await self._call(self.table.claim, key)
            if found is None:
                await self._run(key, scope, receive, send)
                return
            entry: _Entry | None = found
            while entry is not None and not entry.done and time.monotonic() < deadline:
                await asyncio.sleep(poll)
                entry = await self._call(self.table.state, key)
            if entry is not None and entry.done:
                await _replay(entry, send)
                return
            if entry is not None:
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
        too_big = False

        async def capture(message: Message) -> None:
            nonlocal status, kept, too_big
            if message["type"] == "http.response.start":
                status = message["status"]
                kept = list(message.get("headers", []))
            elif message["type"] == "http.response.body" and not too_big:
                body.extend(message.get("body", b""))
                if len(body) > MAX_KEPT_BODY:
                    too_big = True
                    body.clear()
            await send(message)

        try:
            await self.app(scope, receive, capture)
        except BaseException:
            await self._call(self.table.release, key)
            raise
        if status == 0 or status >= 500 or status == 429 or too_big:
            await self._call(self.table.release, key)
        else:
            await self._call(self.table.finish, key, status, kept, bytes(body))


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


def install(app: Any, memory: Any = None) -> None:
    """Add the middleware to a FastAPI/Starlette app: its table in the store of ``memory``
    when that store keeps one (every engramdb store does), else in this process."""
    service = IdempotencyService.of(memory, TTL_S, LEASE_S) if memory is not None else None
    table: Table = StoreTable(service) if service is not None else KeyTable()
    app.add_middleware(IdempotencyMiddleware, table=table)
