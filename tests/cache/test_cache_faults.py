"""D2: Redis down, slow, hung or restarted with stale entries; calls go on from the store.

The real redis-server is stopped and started mid-test; a hung server is a port that accepts
and never answers; a slow one is the real server under ``CLIENT PAUSE``. Correctness must
come from the store (answers equal an uncached Memory's) and no cache error may surface.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
from cache_helpers import open_mem
from redis_server import RedisServer

from engramdb import Memory
from engramdb.errors import NotFoundError

pytestmark = [pytest.mark.redis, pytest.mark.fault]


def view(m: Memory, ids: list[str]) -> Any:
    return (
        m.get_many(ids),
        [(h.record.id, h.record.version) for h in m.search("lisbon note", top_k=10)],
        m.get_slots("t"),
        m.events("t"),
    )


def wait_for_hits(m: Memory, ids: list[str], timeout: float = 10.0) -> None:
    """Read until the cache serves hits again (the client pauses ~1 s after a failure)."""
    deadline = time.monotonic() + timeout
    start = m.stats()["cache"]["hits"]
    while m.stats()["cache"]["hits"] == start:
        assert time.monotonic() < deadline, "the cache was not used again after Redis returned"
        view(m, ids)
        time.sleep(0.05)


def test_redis_stopped_mid_test_then_restarted_from_an_old_snapshot(
    db_url: str, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    cached, plain = open_mem(db_url, redis_server.url), open_mem(db_url, None)
    ids = [f"n{i}" for i in range(6)]
    try:
        cached.add([{"text": f"lisbon note {i}", "id": i_} for i, i_ in enumerate(ids)])
        cached.set_slots("t", {"step": 1})
        cached.log_event("t", "note", {"n": 1})
        for _ in range(2):
            assert view(cached, ids) == view(plain, ids)
        assert cached.stats()["cache"]["hits"] > 0
        with redis_server.client() as c:
            c.save()  # an RDB holding entries that the writes below make stale
            assert c.dbsize() > 0

        redis_server.stop()
        errors = cached.stats()["cache"]["errors"]
        with caplog.at_level(logging.WARNING, logger="engramdb.cache"):
            # Writes and reads during the outage: no error reaches the caller.
            cached.update("n0", text="lisbon note zero, edited while redis was down")
            cached.delete("n1")
            cached.set_slots("t", {"step": 2})
            cached.log_event("t", "note", {"n": 2})
            cached.add("lisbon note added during the outage", id="n9")
            for _ in range(3):
                assert view(cached, ids + ["n9"]) == view(plain, ids + ["n9"])
                time.sleep(0.4)  # past the client's pause, so it tries Redis again
        assert cached.stats()["cache"]["errors"] > errors
        assert any("cache unavailable" in r.getMessage() for r in caplog.records)

        redis_server.start()  # loads dump.rdb: the stale entries are back in Redis
        with redis_server.client() as c:
            assert c.dbsize() > 0
        wait_for_hits(cached, ids + ["n9"])
        for _ in range(3):
            got = view(cached, ids + ["n9"])
            assert got == view(plain, ids + ["n9"])
        assert cached.get("n0").text.endswith("edited while redis was down")
        with pytest.raises(NotFoundError):
            cached.get("n1")  # a deleted record never reappears
        assert cached.get_slots("t").values == {"step": 2}
        assert [e.payload["n"] for e in cached.events("t")] == [1, 2]
    finally:
        cached.close()
        plain.close()
        (redis_server.dir / "dump.rdb").unlink(missing_ok=True)


def test_a_hung_redis_adds_at_most_its_timeout(db_url: str, blackhole_url: str) -> None:
    mem = open_mem(db_url, blackhole_url, cache_timeout_ms=50)
    try:
        mem.add([{"text": f"lisbon note {i}", "id": f"n{i}"} for i in range(5)])
        started = time.monotonic()
        for i in range(40):
            assert mem.get(f"n{i % 5}").id == f"n{i % 5}"
            assert len(mem.search("lisbon note", top_k=3)) == 3
            mem.update(f"n{i % 5}", metadata={"i": i})
        elapsed = time.monotonic() - started
        # 120 calls; each failed Redis call costs <= 50 ms and the client then keeps away
        # for a second. A generous bound that a 5 s default timeout would blow through.
        assert elapsed < 20, elapsed
        stats = mem.stats()["cache"]
        assert stats["errors"] >= 1 and stats["hits"] == 0
    finally:
        mem.close()


def test_a_paused_redis_does_not_stall_calls(db_url: str, redis_server: RedisServer) -> None:
    mem = open_mem(db_url, redis_server.url, cache_timeout_ms=50)
    try:
        mem.add("lisbon note", id="n1")
        mem.get("n1")
        pauser = threading.Thread(
            target=lambda: redis_server.client().execute_command("CLIENT", "PAUSE", 3000, "ALL")
        )
        pauser.start()
        pauser.join()
        started = time.monotonic()
        for i in range(10):
            mem.update("n1", metadata={"i": i})
            assert mem.get("n1").metadata == {"i": i}
        assert time.monotonic() - started < 2.5  # well inside the 3 s pause
        assert mem.stats()["cache"]["errors"] >= 1
    finally:
        mem.close()


def test_a_redis_refusing_writes_never_serves_the_entries_it_kept(
    db_url: str, redis_server: RedisServer
) -> None:
    """Like MISCONF after a failed snapshot: reads answer, every write (DEL too) is refused."""
    mem = open_mem(db_url, redis_server.url)
    admin = redis_server.client()
    try:
        mem.add("lisbon note, first text", id="n1")
        mem.set_slots("t", {"step": 1})
        for _ in range(2):
            assert mem.get("n1").text == "lisbon note, first text"
            assert mem.get_slots("t").values == {"step": 1}
        admin.config_set("min-replicas-to-write", 1)  # no replica: writes get NOREPLICAS
        mem.update("n1", text="lisbon note, second text")  # its DEL is refused: entry stays
        mem.set_slots("t", {"step": 2})
        assert admin.dbsize() > 0
        errors = mem.stats()["cache"]["errors"]
        assert errors >= 1
        for _ in range(3):
            time.sleep(1.1)  # past the client's pause: it reads the kept (stale) entries
            assert mem.get("n1").text == "lisbon note, second text"
            assert mem.get_slots("t").values == {"step": 2}
            assert [h.record.text for h in mem.search("lisbon", mode="keyword")] == [
                "lisbon note, second text"
            ]
        assert mem.stats()["cache"]["errors"] > errors
    finally:
        admin.config_set("min-replicas-to-write", 0)
        admin.close()
        mem.close()
