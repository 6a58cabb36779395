"""Admission control: which calls run now, which wait, which are refused (429 / 503).

Why: one slow call starved every other. Heavy calls (export, import, backup, restore,
reembed, doctor, forget, delete-all, consolidate, deep-offset searches, large batches) run
in a pool of their own (``heavy_concurrency`` at once, ``heavy_queue`` waiting), light calls in
another (``light_concurrency`` / ``light_queue``): a queue of exports never delays a get.
Past a pool's queue a call is refused at once with :class:`~engramdb.errors.OverloadedError`
(503 with ``Retry-After``) instead of piling up. ``/health``, ``/ready``, ``/docs``,
``/openapi.json`` and ``/metrics`` bypass both pools: they never wait for admission.

Each API key also has a concurrency limit (``key_concurrency`` calls in flight) and a token
bucket (``key_rate_per_s`` sustained, ``key_burst`` at once): past either, 429
:class:`~engramdb.errors.RateLimitedError` with ``Retry-After``. The defaults are far above
what one client making sequential calls can reach.

The key id is :func:`key_id` (one small hook): a digest of the ``Authorization`` header, or
the client address when there is none, until keys carry ids of their own.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engramdb.config import Settings
from engramdb.errors import EngramError, OverloadedError, RateLimitedError, status_for
from engramdb.server.errors import error_response

BYPASS = frozenset({"/health", "/ready", "/docs", "/openapi.json", "/metrics"})
HEAVY_PREFIXES = ("/v1/admin/",)
HEAVY_SUFFIXES = ("/forget", "/records/delete-all", "/consolidate")
# A search this deep reads and ranks offset + top_k candidates: heavy.
DEEP_OFFSET = 1000
# A write body this large is a large batch (1,000 short records is about 100 KB).
LARGE_BODY = 256 * 1024
_OFFSET = re.compile(rb'"offset"\s*:\s*(\d+)')


def key_id(scope: Scope) -> str:
    """The id admission limits are counted under: the caller's key, else its address."""
    for name, value in scope.get("headers") or []:
        if name == b"authorization":
            return "key:" + hashlib.sha256(value).hexdigest()[:16]
    client = scope.get("client")
    return f"addr:{client[0]}" if client else "addr:unknown"


class Pool:
    """At most ``limit`` calls at once and ``queue`` waiting; more are refused at once."""

    def __init__(self, name: str, limit: int, queue: int) -> None:
        self.name, self.limit, self.queue = name, limit, queue
        self.running = 0
        self.waiting = 0
        self._slots = asyncio.Semaphore(limit)

    async def acquire(self) -> None:
        """Take a slot, waiting in the queue if there is room in it.

        Raises:
            OverloadedError: every slot is taken and the queue is full.
        """
        if self.running >= self.limit and self.waiting >= self.queue:
            raise OverloadedError(
                f"the service is busy: {self.running} {self.name} calls running and "
                f"{self.waiting} waiting (limits {self.name}_concurrency={self.limit}, "
                f"{self.name}_queue={self.queue}); retry later",
                pool=self.name,
                limit=f"{self.name}_queue",
                retry_after=1,
            )
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.running += 1

    def release(self) -> None:
        """Give the slot back."""
        self.running -= 1
        self._slots.release()


@dataclass
class _Bucket:
    tokens: float
    at: float
    in_flight: int = 0


@dataclass
class KeyLimits:
    """Per-key concurrency and token-bucket rate limits."""

    concurrency: int
    rate: float
    burst: int
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def enter(self, key: str) -> None:
        """Count a call for ``key``.

        Raises:
            RateLimitedError: too many calls in flight, or faster than the rate allows.
        """
        now = self.clock()
        b = self._buckets.get(key)
        if b is None:
            b = self._buckets[key] = _Bucket(float(self.burst), now)
            if len(self._buckets) > 100_000:
                self._forget_idle(now)
        b.tokens = min(float(self.burst), b.tokens + (now - b.at) * self.rate)
        b.at = now
        if b.in_flight >= self.concurrency:
            raise RateLimitedError(
                f"this key has {b.in_flight} calls in flight; the limit key_concurrency is "
                f"{self.concurrency}",
                limit="key_concurrency",
                retry_after=1,
            )
        if b.tokens < 1.0:
            wait = (1.0 - b.tokens) / self.rate
            raise RateLimitedError(
                f"this key is calling faster than key_rate_per_s={self.rate:g} "
                f"(burst key_burst={self.burst}); retry in {wait:.2f} s",
                limit="key_rate_per_s",
                retry_after=wait,
            )
        b.tokens -= 1.0
        b.in_flight += 1

    def leave(self, key: str) -> None:
        """The call of ``key`` is done."""
        b = self._buckets.get(key)
        if b is not None:
            b.in_flight -= 1

    def _forget_idle(self, now: float) -> None:
        full = [k for k, b in self._buckets.items() if b.in_flight == 0 and now - b.at > 60]
        for k in full:
            del self._buckets[k]


class AdmissionMiddleware:
    """Pure ASGI middleware: per-key limits, then a slot in the heavy or the light pool."""

    def __init__(
        self, app: ASGIApp, settings: Settings, key_of: Callable[[Scope], str] = key_id
    ) -> None:
        self.app = app
        self.key_of = key_of
        self.heavy = Pool("heavy", settings.heavy_concurrency, settings.heavy_queue)
        self.light = Pool("light", settings.light_concurrency, settings.light_queue)
        self.keys = KeyLimits(settings.key_concurrency, settings.key_rate_per_s, settings.key_burst)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Admit the call (or answer 429/503 at once), run it, then free its slots."""
        if scope["type"] != "http" or scope.get("path") in BYPASS:
            await self.app(scope, receive, send)
            return
        heavy, receive = await classify(scope, receive)
        pool = self.heavy if heavy else self.light
        key = self.key_of(scope)
        try:
            self.keys.enter(key)
        except EngramError as exc:
            await _refuse(exc, scope, receive, send)
            return
        try:
            try:
                await pool.acquire()
            except EngramError as exc:
                await _refuse(exc, scope, receive, send)
                return
            try:
                await self.app(scope, receive, send)
            finally:
                pool.release()
        finally:
            self.keys.leave(key)


async def classify(scope: Scope, receive: Receive) -> tuple[bool, Receive]:
    """Whether the call is heavy, and the ``receive`` to hand on.

    A search's offset is read from its body, which is then replayed unchanged (searches are
    small: ``max_body_bytes`` bounds them, and the route reads the whole body anyway).
    """
    path: str = scope.get("path", "")
    method: str = scope.get("method", "GET")
    if path.startswith(HEAVY_PREFIXES) or path.endswith(HEAVY_SUFFIXES):
        return True, receive
    if method == "POST" and (path.endswith("/records") or path.endswith("/messages")):
        return _content_length(scope) > LARGE_BODY, receive
    if method == "POST" and path.endswith("/search"):
        body, replay = await _buffer(receive)
        match = _OFFSET.search(body)
        return bool(match and int(match.group(1)) >= DEEP_OFFSET), replay
    return False, receive


def _content_length(scope: Scope) -> int:
    for name, value in scope.get("headers") or []:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


async def _buffer(receive: Receive) -> tuple[bytes, Receive]:
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body"):
            break
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")

    async def replay() -> Message:
        if messages:
            return messages.pop(0)
        return await receive()

    return body, replay


async def _refuse(exc: EngramError, scope: Scope, receive: Receive, send: Send) -> None:
    response = error_response(status_for(exc), exc.code, exc.message, exc.details)
    retry = exc.details.get("retry_after")
    if isinstance(retry, int | float):
        response.headers["Retry-After"] = str(max(1, math.ceil(retry)))
    await response(scope, receive, send)
