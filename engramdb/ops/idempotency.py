"""Idempotency keys in the store, for the service: claim, wait, keep, replay, release.

The REST middleware (:mod:`engramdb.server.idempotency`) decides what a key means for a
request; this module only keeps the keys in the store's ``idempotency_keys`` table
(migration 0017, :mod:`engramdb.stores.idempotency_rows`), where every worker process, and
every machine on the same PostgreSQL, sees the same claims and answers. Blocking: call it
from a worker thread.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from engramdb.stores.base import IdempotencyStore
from engramdb.stores.idempotency_rows import IdempotencyRow

if TYPE_CHECKING:
    from engramdb._facade import _Shared

__all__ = ["IdempotencyRow", "IdempotencyService"]

PURGE_EVERY = 256
"""Claims between two purges of expired rows (per process)."""


def now_us() -> int:
    """Wall-clock epoch microseconds (shared by processes and machines, unlike a monotonic
    clock)."""
    return int(time.time() * 1e6)


class IdempotencyService:
    """Keys kept ``ttl_s`` once answered; a claim without an answer holds ``lease_s``."""

    def __init__(self, store: IdempotencyStore, ttl_s: float, lease_s: float) -> None:
        self.store = store
        self.ttl_us = int(ttl_s * 1e6)
        self.lease_us = int(lease_s * 1e6)
        self._claims = 0

    @classmethod
    def of(cls, memory: _Shared, ttl_s: float, lease_s: float) -> IdempotencyService | None:
        """The service over the store a ``Memory``/``AsyncMemory`` is open on; None when that
        store keeps no idempotency keys."""
        store = memory.engine.store
        return cls(store, ttl_s, lease_s) if isinstance(store, IdempotencyStore) else None

    def claim(self, key: str) -> IdempotencyRow | None:
        """None when the caller now owns ``key``; else its row (running or answered)."""
        now = now_us()
        self._claims += 1
        if self._claims % PURGE_EVERY == 1:
            self.store.purge_idempotency(now)
        return self.store.claim_idempotency(key, now, now + self.lease_us)

    def state(self, key: str) -> IdempotencyRow | None:
        """The key's row now; None when released or expired (a retry may claim it)."""
        row = self.store.get_idempotency(key)
        return None if row is None or row.expires_at <= now_us() else row

    def finish(self, key: str, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        """Keep the answer of the request that claimed ``key`` for the TTL."""
        text = json.dumps([list(h) for h in headers])
        self.store.finish_idempotency(key, status, text, body, now_us() + self.ttl_us)

    def release(self, key: str) -> None:
        """Drop the claim of a request that failed (its retry runs again)."""
        self.store.release_idempotency(key)
