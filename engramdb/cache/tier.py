"""The read-through cache tier in front of the store, guarded by the store's write generation.

Why a generation and not only deletes: a reader can compute a value from the store just
before a write commits and put it into Redis just after the writer's invalidation, and
invalidations sent while Redis was unreachable are lost. So correctness never depends on
Redis; it rests on a counter *in the store* (``Store.generation``, table
``namespace_generations``) that every write transaction of a namespace bumps before COMMIT:

1. a read first asks the store for the namespace's generation G (one indexed row),
2. then looks up the entry; it is served only when it was stored under exactly G,
3. on a miss it reads the store *after* step 1 and stores the value under G.

A value stored under G was read after G was visible, so it is at least as new as G; once a
write makes G+1 visible, every reader asks for G+1 and nothing stored under G (or under any
older generation, e.g. from a Redis restarted from an old snapshot) is served again. This
holds for every entry kind, records by id included: their keys are also deleted after a write
commits, but only to free memory early; the generation check is what makes them correct.
The cost is one cheap store read per cached call, and a write to a namespace retires all of
that namespace's entries (reads dominate agent memory workloads; TTLs bound the rest).

Search entries also carry a horizon: the earliest ``expires_at`` in the namespace after the
search's expiry cutoff (``Store.next_expiry``), after which the answer may change with no
write at all (a record expiring); they are not served from then on.

Keys: ``{prefix}:v{FORMAT}:{store id}:{namespace}:{kind}:{sha256 of the arguments}``. The
store id keeps stores sharing one Redis apart, the namespace keeps tenants apart (namespaces
cannot contain ``:``), and hashing the arguments keeps caller strings (ids, thread ids, queries
with ``:`` or ``*``) out of key syntax. Values are JSON. Redis may be flushed at any time.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from engramdb.cache import codec
from engramdb.errors import ValidationError
from engramdb.models import Event, MemoryRecord, SearchPage, Slots
from engramdb.observe import cache as report_cache
from engramdb.stores.base import Store
from engramdb.timeutil import now_us

if TYPE_CHECKING:  # the redis package is optional: imported only when a cache is configured
    from engramdb.cache.client import SafeRedis

FORMAT = 1  # bump when an encoding changes: old entries are then simply never read
T = TypeVar("T")


class Cache(Protocol):
    """What the engine calls: read-through lookups, invalidation and counters."""

    # False when nothing is kept: the engine then skips work that only a cached answer
    # needs (the expiry horizon of a search).
    keeps_answers: bool

    def records(
        self, namespace: str, ids: list[str], load: Callable[[list[str]], list[MemoryRecord]]
    ) -> list[MemoryRecord]:
        """Return records by id (cached ones from the cache, the rest via ``load``)."""
        ...

    def slots(self, namespace: str, thread_id: str, load: Callable[[], Slots]) -> Slots:
        """Return a thread's slots."""
        ...

    def events(
        self, namespace: str, args: list[Any], load: Callable[[], list[Event]]
    ) -> list[Event]:
        """Return a thread's events for the arguments ``args``."""
        ...

    def search(
        self,
        namespace: str,
        args: dict[str, Any],
        load: Callable[[], tuple[SearchPage, int | None]],
    ) -> SearchPage:
        """Return a search page; ``load`` also returns the answer's expiry horizon (us)."""
        ...

    def invalidate_records(self, namespace: str, ids: list[str]) -> None:
        """Drop cached records after a committed write changed them."""
        ...

    def stats(self) -> dict[str, Any]:
        """Return ``enabled``, ``hits``, ``misses`` and ``errors``."""
        ...

    def health(self) -> dict[str, Any]:
        """Return ``status``: ``ok``, ``disabled`` or ``error`` (with ``message``)."""
        ...

    def close(self) -> None:
        """Release the connection pool."""
        ...


class NullCache:
    """No cache configured: every call goes to the store."""

    keeps_answers = False

    def records(
        self, namespace: str, ids: list[str], load: Callable[[list[str]], list[MemoryRecord]]
    ) -> list[MemoryRecord]:
        """Return ``load(ids)``."""
        return load(ids)

    def slots(self, namespace: str, thread_id: str, load: Callable[[], Slots]) -> Slots:
        """Return ``load()``."""
        return load()

    def events(
        self, namespace: str, args: list[Any], load: Callable[[], list[Event]]
    ) -> list[Event]:
        """Return ``load()``."""
        return load()

    def search(
        self,
        namespace: str,
        args: dict[str, Any],
        load: Callable[[], tuple[SearchPage, int | None]],
    ) -> SearchPage:
        """Return the page from ``load()``."""
        return load()[0]

    def invalidate_records(self, namespace: str, ids: list[str]) -> None:
        """Nothing to drop."""

    def stats(self) -> dict[str, Any]:
        """Return zero counters with ``enabled`` False."""
        return {"enabled": False, "hits": 0, "misses": 0, "errors": 0}

    def health(self) -> dict[str, Any]:
        """No cache: ``disabled``."""
        return {"status": "disabled"}

    def close(self) -> None:
        """Nothing to release."""


def _digest(value: Any) -> str:
    raw = json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(raw.encode()).hexdigest()[:40]


def _dumps(value: Any) -> bytes | None:
    """Encode an entry; None when a value cannot be cached (it is then simply not stored)."""
    try:
        return json.dumps(value, separators=(",", ":"), default=_plain, allow_nan=True).encode()
    except (TypeError, ValueError):
        return None


def _plain(value: Any) -> Any:
    item = getattr(value, "item", None)  # numpy scalars (scores) -> Python numbers
    if callable(item):
        return item()
    raise TypeError(f"cannot cache a {type(value).__name__}")


class RedisCache:
    """The Redis cache tier (see the module docstring for the design)."""

    keeps_answers = True

    def __init__(
        self,
        client: SafeRedis,
        store: Store,
        *,
        prefix: str,
        ttl_s: int,
        search_ttl_s: int,
    ) -> None:
        self.client = client
        self.store = store
        self.ttl_s = ttl_s
        self.search_ttl_s = search_ttl_s
        self._base = f"{prefix}:v{FORMAT}:{store.store_id()}"
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def key(self, namespace: str, kind: str, args: Any) -> str:
        """Return the Redis key of one entry."""
        return f"{self._base}:{namespace}:{kind}:{_digest(args)}"

    def _count(self, hits: int, misses: int) -> None:
        with self._lock:
            self.hits += hits
            self.misses += misses
        report_cache(hits, misses)

    @staticmethod
    def _entry(raw: bytes | None, generation: int) -> dict[str, Any] | None:
        """Decode an entry; None unless it is well-formed and of this exact generation."""
        if raw is None:
            return None
        try:
            entry = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(entry, dict) or entry.get("g") != generation or "v" not in entry:
            return None
        return entry

    def _one(
        self,
        namespace: str,
        kind: str,
        args: Any,
        load: Callable[[], T],
        encode: Callable[[T], Any],
        decode: Callable[[Any], T],
        ttl_s: int,
    ) -> T:
        generation = self.store.generation(namespace)  # before the data: see module doc
        key = self.key(namespace, kind, args)
        entry = self._entry(self.client.get(key), generation)
        if entry is not None:
            try:
                value = decode(entry["v"])
            except (KeyError, TypeError, ValueError):
                value = None
            if value is not None:
                self._count(1, 0)
                return value
        self._count(0, 1)
        value = load()
        raw = _dumps({"g": generation, "v": encode(value)})
        if raw is not None:
            self.client.set_many([(key, raw)], ttl_s)
        return value

    def records(
        self, namespace: str, ids: list[str], load: Callable[[list[str]], list[MemoryRecord]]
    ) -> list[MemoryRecord]:
        """Return the records among ``ids`` in the order asked (as ``Store.get_records``).

        Only found records are cached; a missing id is asked of the store every time.
        """
        generation = self.store.generation(namespace)
        wanted = list(dict.fromkeys(ids))
        keys = [self.key(namespace, "record", rid) for rid in wanted]
        found: dict[str, MemoryRecord] = {}
        for rid, raw in zip(wanted, self.client.mget(keys), strict=True):
            entry = self._entry(raw, generation)
            if entry is None:
                continue
            try:
                found[rid] = codec.record_in(entry["v"])
            except (KeyError, TypeError, ValueError):
                continue
        missing = [rid for rid in wanted if rid not in found]
        self._count(len(found), len(missing))
        if missing:
            loaded = load(missing)
            entries = [
                (self.key(namespace, "record", r.id), _dumps({"g": generation, "v": r.to_dict()}))
                for r in loaded
            ]
            self.client.set_many([(k, v) for k, v in entries if v is not None], self.ttl_s)
            found.update((r.id, r) for r in loaded)
        return [found[rid] for rid in ids if rid in found]

    def slots(self, namespace: str, thread_id: str, load: Callable[[], Slots]) -> Slots:
        """Return a thread's slots."""
        return self._one(
            namespace, "slots", thread_id, load, codec.slots_out, codec.slots_in, self.ttl_s
        )

    def events(
        self, namespace: str, args: list[Any], load: Callable[[], list[Event]]
    ) -> list[Event]:
        """Return a thread's events for ``args`` (thread, since, limit)."""
        return self._one(
            namespace, "events", args, load, codec.events_out, codec.events_in, self.ttl_s
        )

    def search(
        self,
        namespace: str,
        args: dict[str, Any],
        load: Callable[[], tuple[SearchPage, int | None]],
    ) -> SearchPage:
        """Return a search page, served only before its expiry horizon."""
        generation = self.store.generation(namespace)
        key = self.key(namespace, "search", args)
        entry = self._entry(self.client.get(key), generation)
        if entry is not None:
            horizon = entry.get("h")
            if horizon is None or (isinstance(horizon, int) and now_us() < horizon):
                try:
                    page = codec.page_in(entry["v"])
                except (KeyError, TypeError, ValueError):
                    page = None
                if page is not None:
                    self._count(1, 0)
                    return page
        self._count(0, 1)
        page, horizon = load()
        raw = _dumps({"g": generation, "h": horizon, "v": codec.page_out(page)})
        if raw is not None:
            self.client.set_many([(key, raw)], self.search_ttl_s)
        return page

    def invalidate_records(self, namespace: str, ids: list[str]) -> None:
        """Delete the cached copies of records a committed write changed."""
        self.client.delete([self.key(namespace, "record", rid) for rid in ids])

    def stats(self) -> dict[str, Any]:
        """Return ``enabled``, ``hits``, ``misses`` and ``errors`` (failed Redis calls)."""
        with self._lock:
            return {
                "enabled": True,
                "hits": self.hits,
                "misses": self.misses,
                "errors": self.client.errors,
            }

    def health(self) -> dict[str, Any]:
        """Ping Redis: ``ok``, or ``error`` naming the failure (the URL never appears)."""
        failure = self.client.ping()
        if failure is None:
            return {"status": "ok"}
        return {"status": "error", "message": f"redis did not answer a ping ({failure})"}

    def close(self) -> None:
        """Release the connection pool."""
        self.client.close()


def open_cache(
    url: str | None,
    store: Store,
    *,
    prefix: str = "engram",
    ttl_s: int = 300,
    search_ttl_s: int = 60,
    timeout_ms: int = 50,
) -> Cache:
    """Return the cache tier for ``url`` (``redis://host:port/db``), or a no-op without one.

    Opening never contacts Redis (an unreachable server is an outage to ride out, not a
    configuration error).

    Raises:
        ValidationError: the URL is not a redis:// / rediss:// / unix:// URL, or the
            ``redis`` package is missing (``pip install 'engramdb[cache]'``).
    """
    if not url:
        return NullCache()
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValidationError(
            "cache_url must be redis://host:port/db, rediss://host:port/db or unix:///path",
            field="cache_url",
        )
    try:
        from engramdb.cache.client import SafeRedis
    except ImportError as exc:
        raise ValidationError(
            "cache_url needs the redis package: pip install 'engramdb[cache]'",
            field="cache_url",
        ) from exc
    return RedisCache(
        SafeRedis(url, timeout_ms),
        store,
        prefix=prefix,
        ttl_s=ttl_s,
        search_ttl_s=search_ttl_s,
    )
