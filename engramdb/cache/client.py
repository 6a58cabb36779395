"""A Redis client that never fails its caller: errors become misses, a warning and a count.

Redis is only a cache (invariant 1), so an unreachable, slow or misbehaving server must cost
at most one short socket timeout and never an error. Three habits make that so:

* every socket operation has the ``cache_timeout_ms`` bound (connect and read), and redis-py's
  own retries are off (a retry would multiply the bound);
* after a failure the client stays away from Redis for ``backoff_s`` (a small circuit
  breaker), so a blackholed server adds its timeout to one call per period, not to every call;
* the connection pool reconnects by itself on the next attempt after the pause (redis-py
  drops a connection that failed), so nothing has to be restarted after an outage.

Warnings are rate-limited (one per ``warn_every_s``) and every failure is counted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from contextlib import suppress

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger("engramdb.cache")


class SafeRedis:
    """GET / MGET / SET / DEL against Redis, returning None or nothing on any failure."""

    def __init__(
        self,
        url: str,
        timeout_ms: int,
        *,
        backoff_s: float = 1.0,
        warn_every_s: float = 30.0,
    ) -> None:
        timeout = timeout_ms / 1000
        self._redis = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
            health_check_interval=0,
            decode_responses=False,
        )
        self._backoff_s = backoff_s
        self._warn_every_s = warn_every_s
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._last_warning = -float("inf")
        self.errors = 0

    # ------------------------------------------------------------------ failure handling

    def _available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, doing: str, exc: Exception) -> None:
        now = time.monotonic()
        with self._lock:
            self.errors += 1
            self._down_until = now + self._backoff_s
            warn = now - self._last_warning >= self._warn_every_s
            if warn:
                self._last_warning = now
        if warn:
            log.warning(
                "cache unavailable while %s (%s: %s); serving from the store "
                "(further cache errors are counted in stats()['cache']['errors'])",
                doing,
                type(exc).__name__,
                exc,
            )

    # ------------------------------------------------------------------ operations

    def get(self, key: str) -> bytes | None:
        """Return the value of ``key``, or None when missing or Redis fails."""
        if not self._available():
            return None
        try:
            value = self._redis.get(key)
        except (redis.RedisError, OSError) as exc:
            self._failed("reading", exc)
            return None
        return value if isinstance(value, bytes) else None

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        """Return the values of ``keys`` (None for each missing one, all None on failure)."""
        if not keys or not self._available():
            return [None] * len(keys)
        try:
            values = self._redis.mget(list(keys))
        except (redis.RedisError, OSError) as exc:
            self._failed("reading", exc)
            return [None] * len(keys)
        return [v if isinstance(v, bytes) else None for v in values]

    def set_many(self, items: Sequence[tuple[str, bytes]], ttl_s: int) -> None:
        """Store values with a time to live, in one round trip; failures are only counted."""
        if not items or not self._available():
            return
        try:
            pipe = self._redis.pipeline(transaction=False)
            for key, value in items:
                pipe.set(key, value, ex=ttl_s)
            pipe.execute()
        except (redis.RedisError, OSError) as exc:
            self._failed("writing", exc)

    def delete(self, keys: Sequence[str]) -> None:
        """Delete keys (an optimisation only: the write generation already guards them)."""
        if not keys or not self._available():
            return
        try:
            self._redis.delete(*keys)
        except (redis.RedisError, OSError) as exc:
            self._failed("invalidating", exc)

    def ping(self) -> str | None:
        """Ask Redis for PONG, bounded by the socket timeout; None when it answered, else why.

        Unlike the other calls it ignores the back-off, so a readiness probe sees Redis
        again as soon as it is back, and it does not count as a cache error.
        """
        try:
            self._redis.ping()
        except (redis.RedisError, OSError) as exc:
            return type(exc).__name__
        return None

    def close(self) -> None:
        """Release the connection pool."""
        with suppress(redis.RedisError, OSError):
            self._redis.close()
