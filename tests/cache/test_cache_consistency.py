"""K6: client-visible consistency through the cache under concurrent mixed reads and writes.

Several clients (each its own ``Memory`` over one SQLite file and one Redis) run random
get / get_many / search / update / delete on 20 keys from threads, logging every
acknowledged write in a ledger. Must hold: a read started after a write was acknowledged
sees it (or something newer); versions seen by a client never go backwards; after an
acknowledged delete nobody reads the record again; at the end, the cache agrees with the
store.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest
from cache_helpers import open_mem
from redis_server import RedisServer

from engramdb.errors import NotFoundError

pytestmark = pytest.mark.redis

KEYS = [f"k{i:02d}" for i in range(20)]
DELETABLE = set(KEYS[15:])
CLIENTS = 4
SECONDS = 4.0


class Ledger:
    """Acknowledged writes: per key the (ack time, version) of updates and the delete time."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.updates: dict[str, list[tuple[float, int]]] = {k: [] for k in KEYS}
        self.deleted: dict[str, float] = {}
        self.deleting: set[str] = set()  # deletes sent (acknowledged or not)
        self.hits = 0

    def floor(self, key: str, started: float) -> int:
        """The newest version acknowledged before ``started``."""
        with self.lock:
            return max((v for t, v in self.updates[key] if t < started), default=1)

    def gone(self, key: str, started: float) -> bool:
        with self.lock:
            return key in self.deleted and self.deleted[key] < started


def client(
    db_url: str, cache_url: str, seed: int, ledger: Ledger, failures: list[str], stop: float
) -> None:
    rng = random.Random(seed)
    mem = open_mem(db_url, cache_url)
    seen: dict[str, int] = {}
    try:
        while time.monotonic() < stop:
            key = rng.choice(KEYS)
            op = rng.random()
            started = time.monotonic()
            if op < 0.45:
                try:
                    rec = mem.get(key)
                except NotFoundError:
                    with ledger.lock:
                        if key not in ledger.deleting:
                            failures.append(f"{key} not found but never deleted")
                    continue
                got = [(key, rec.version)]
            elif op < 0.6:
                got = [(r.id, r.version) for r in mem.get_many(rng.sample(KEYS, 5))]
            elif op < 0.7:
                got = [(h.record.id, h.record.version) for h in mem.search("shared", top_k=30)]
            elif op < 0.95 or key not in DELETABLE:
                try:
                    rec = mem.update(key, metadata={"by": seed, "at": started})
                except NotFoundError:
                    continue
                acked = time.monotonic()
                with ledger.lock:
                    ledger.updates[key].append((acked, rec.version))
                got = [(key, rec.version)]
            else:
                with ledger.lock:
                    ledger.deleting.add(key)
                try:
                    mem.delete(key)
                except NotFoundError:
                    continue
                with ledger.lock:
                    ledger.deleted.setdefault(key, time.monotonic())
                continue
            for rid, version in got:
                if ledger.gone(rid, started):
                    failures.append(f"{rid} read after its acknowledged delete")
                if version < ledger.floor(rid, started):
                    failures.append(f"{rid} v{version} older than an acknowledged write")
                if version < seen.get(rid, 0):
                    failures.append(f"{rid} went back from v{seen[rid]} to v{version}")
                seen[rid] = max(seen.get(rid, 0), version)
        with ledger.lock:
            ledger.hits += mem.stats()["cache"]["hits"]
    except Exception as exc:  # any error reaching a client is a failure of the test
        failures.append(f"client {seed}: {type(exc).__name__}: {exc}")
    finally:
        mem.close()


def test_mixed_concurrent_clients_stay_consistent_through_the_cache(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    db_url = f"sqlite:///{tmp_path / 'k6.db'}"
    with open_mem(db_url, redis_server.url) as setup:
        setup.add([{"text": f"shared note {k}", "id": k} for k in KEYS])
    ledger, failures = Ledger(), []
    stop = time.monotonic() + SECONDS
    threads = [
        threading.Thread(
            target=client, args=(db_url, redis_server.url, seed, ledger, failures, stop)
        )
        for seed in range(CLIENTS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert failures == []
    assert ledger.hits > 50  # the clients really read through the cache
    with open_mem(db_url, redis_server.url) as cached, open_mem(db_url, None) as plain:
        for _ in range(2):
            assert cached.get_many(KEYS) == plain.get_many(KEYS)
            assert cached.search("shared", top_k=30).hits == plain.search("shared", top_k=30).hits
        assert cached.stats()["cache"]["hits"] > 0
    assert sum(len(v) for v in ledger.updates.values()) > 20
