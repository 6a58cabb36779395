"""The Redis cache tier with a real redis-server: hits, freshness, isolation, flushes.

Scenarios K6 (consistency through the cache, here the deterministic part) and T4 (cache
isolation) of the test plan; the outage and slow-server cases (D2) are in test_cache_faults.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cache_helpers import open_mem
from redis_server import RedisServer

from engramdb import Memory
from engramdb.errors import NotFoundError

pytestmark = pytest.mark.redis


class Counting:
    """Counts calls of one method of a real object (the store, the embedder)."""

    def __init__(self, obj: Any, name: str) -> None:
        self.calls = 0
        inner = getattr(obj, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return inner(*args, **kwargs)

        setattr(obj, name, wrapper)


def test_repeated_reads_are_served_from_redis(db_url: str, redis_server: RedisServer) -> None:
    mem = open_mem(db_url, redis_server.url)
    try:
        mem.add("Alice lives in Lisbon", id="r1", user_id="alice")
        mem.set_slots("t1", {"goal": "book a flight"})
        mem.log_event("t1", "note", {"n": 1})
        engine = mem._engine
        reads = Counting(engine.store, "get_records")
        slots = Counting(engine.store, "get_slots")
        events = Counting(engine.store, "list_events")
        embeds = Counting(engine.embedder, "embed")
        first = [mem.get("r1"), mem.get_slots("t1"), mem.events("t1"), mem.search("lisbon")]
        misses = (reads.calls, slots.calls, events.calls, embeds.calls)
        assert min(misses) >= 1
        for _ in range(5):
            again = [mem.get("r1"), mem.get_slots("t1"), mem.events("t1"), mem.search("lisbon")]
            assert again == first  # the cached copy decodes to exactly the store's objects
        # No store read of the data, no embedding of the query: all from Redis.
        assert (reads.calls, slots.calls, events.calls, embeds.calls) == misses
        assert mem.get_many(["r1", "nope", "r1"]) == [first[0], first[0]]
        stats = mem.stats()["cache"]
        assert stats["enabled"] is True and stats["errors"] == 0
        assert stats["hits"] >= 21 and stats["misses"] >= 4
        with redis_server.client() as c:
            keys = c.keys("*")
        assert keys and all(k.startswith(b"engram:v1:") and b":default:" in k for k in keys)
    finally:
        mem.close()


def test_without_cache_url_there_is_no_cache(db_url: str) -> None:
    with open_mem(db_url, None) as mem:
        mem.add("plain", id="r1")
        assert mem.get("r1").text == "plain"
        assert mem.stats()["cache"] == {"enabled": False, "hits": 0, "misses": 0, "errors": 0}


def test_a_bad_cache_url_is_refused_with_its_name(db_url: str) -> None:
    from engramdb.errors import ValidationError

    with pytest.raises(ValidationError, match="cache_url"):
        open_mem(db_url, "http://127.0.0.1:6379")


def test_read_after_write_across_two_memory_objects(db_url: str, redis_server: RedisServer) -> None:
    a, b = open_mem(db_url, redis_server.url), open_mem(db_url, redis_server.url)
    try:
        a.add("Alice lives in Lisbon", id="r1")
        a.add("Bob likes tea", id="r2", tags=["drinks"])
        a.set_slots("t1", {"step": 1})
        a.log_event("t1", "note", {"n": 1})
        for _ in range(2):  # fill the cache in B
            assert b.get("r1").text == "Alice lives in Lisbon"
            assert [h.record.id for h in b.search("lisbon", mode="keyword")] == ["r1"]
            assert b.get_slots("t1").values == {"step": 1}
            assert len(b.events("t1")) == 1
        a.update("r1", text="Alice lives in Porto")
        assert b.get("r1").text == "Alice lives in Porto"
        assert b.search("lisbon", mode="keyword").hits == []
        assert [h.record.text for h in b.search("porto", mode="keyword")] == [
            "Alice lives in Porto"
        ]
        a.set_slots("t1", {"step": 2})
        assert b.get_slots("t1").values == {"step": 2}
        a.log_event("t1", "note", {"n": 2})
        assert [e.payload["n"] for e in b.events("t1")] == [1, 2]
        assert "step: 2" in b.snapshot("t1").text
        a.delete("r1")
        with pytest.raises(NotFoundError):
            b.get("r1")
        assert b.get_many(["r1", "r2"])[0].id == "r2"
        a.delete_all(tags=["drinks"])  # by filter: no ids to delete
        assert b.get_many(["r2"]) == []
        a.add("Carol", id="c1", user_id="carol")
        assert b.get("c1").text == "Carol"
        a.forget(user_id="carol")
        with pytest.raises(NotFoundError):
            b.get("c1")
        assert b.stats()["cache"]["hits"] > 0
    finally:
        a.close()
        b.close()


def test_a_value_read_before_a_write_is_never_served_after_it(
    db_url: str, redis_server: RedisServer
) -> None:
    """The race: read generation G, read the store, a write commits, store the value."""
    a, b = open_mem(db_url, redis_server.url), open_mem(db_url, redis_server.url)
    try:
        a.add("version one", id="r1")
        store = b._engine.store

        def slow_load(ids: list[str]) -> list[Any]:
            rows = store.get_records("default", ids)  # read before the write...
            a.update("r1", text="version two")  # ...which commits now (generation G+1)...
            return rows  # ...and the old rows are put in Redis under G

        stale = b._engine.cache.records("default", ["r1"], slow_load)
        assert stale[0].text == "version one"
        with redis_server.client() as c:
            assert c.dbsize() >= 1  # the stale entry is in Redis
        for _ in range(3):
            assert b.get("r1").text == "version two"
            assert a.get("r1").text == "version two"
    finally:
        a.close()
        b.close()


def test_namespaces_with_identical_ids_and_queries_never_share_entries(
    db_url: str, redis_server: RedisServer
) -> None:
    """T4: identical ids (with ":"), thread ids (with ":" and "*") and queries in two tenants."""
    one = open_mem(db_url, redis_server.url, namespace="tenant-1")
    two = open_mem(db_url, redis_server.url, namespace="tenant-2")
    try:
        one.add("the secret of tenant one", id="k:1:x", thread_id="t:*")
        two.add("the secret of tenant two", id="k:1:x", thread_id="t:*")
        one.set_slots("t:*", {"owner": "one"})
        two.set_slots("t:*", {"owner": "two"})
        for _ in range(3):
            assert one.get("k:1:x").text.endswith("one")
            assert two.get("k:1:x").text.endswith("two")
            assert [h.record.text for h in one.search("secret tenant")] == [
                "the secret of tenant one"
            ]
            assert [h.record.text for h in two.search("secret tenant")] == [
                "the secret of tenant two"
            ]
            assert one.get_slots("t:*").values == {"owner": "one"}
            assert two.get_slots("t:*").values == {"owner": "two"}
        assert one.stats()["cache"]["hits"] > 0
        with redis_server.client() as c:
            keys = [k.decode() for k in c.keys("*")]
        assert {k.split(":")[3] for k in keys} == {"tenant-1", "tenant-2"}
        # A write in one tenant leaves the other's entries valid (and hit).
        hits = two.stats()["cache"]["hits"]
        one.update("k:1:x", text="changed in tenant one")
        assert two.get("k:1:x").text.endswith("two")
        assert two.stats()["cache"]["hits"] == hits + 1
    finally:
        one.close()
        two.close()


def test_two_stores_sharing_one_redis_never_share_entries(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    a = open_mem(f"sqlite:///{tmp_path / 'a.db'}", redis_server.url)
    b = open_mem(f"sqlite:///{tmp_path / 'b.db'}", redis_server.url)
    try:
        a.add("store a", id="same")
        b.add("store b", id="same")
        for _ in range(3):
            assert a.get("same").text == "store a"
            assert b.get("same").text == "store b"
    finally:
        a.close()
        b.close()


def test_flushall_mid_run_changes_nothing_visible(db_url: str, redis_server: RedisServer) -> None:
    cached, plain = open_mem(db_url, redis_server.url), open_mem(db_url, None)
    try:
        cached.add([{"text": f"note {i} about topic {i % 3}", "id": f"n{i}"} for i in range(12)])
        cached.set_slots("t", {"a": 1})

        def view(m: Memory) -> Any:
            return (
                [m.get(f"n{i}") for i in range(12)],
                m.search("topic 1", top_k=5).hits,
                m.get_slots("t"),
                m.events("t"),
            )

        expected = view(plain)
        for round_ in range(4):
            assert view(cached) == expected
            if round_ == 1:
                with redis_server.client() as c:
                    c.flushall()
        assert cached.stats()["cache"]["hits"] > 0
    finally:
        cached.close()
        plain.close()


def test_a_cached_search_never_shows_a_record_after_it_expires(
    db_url: str, redis_server: RedisServer
) -> None:
    mem = open_mem(db_url, redis_server.url)
    try:
        soon = datetime.now(UTC) + timedelta(seconds=1.5)
        mem.add("ephemeral lisbon note", id="e1", expires_at=soon)
        mem.add("lasting lisbon note", id="l1")
        first = [h.record.id for h in mem.search("lisbon note", mode="keyword")]
        assert sorted(first) == ["e1", "l1"]
        hits = mem.stats()["cache"]["hits"]
        assert [h.record.id for h in mem.search("lisbon note", mode="keyword")] == first
        assert mem.stats()["cache"]["hits"] == hits + 1
        time.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.1)
        assert [h.record.id for h in mem.search("lisbon note", mode="keyword")] == ["l1"]
    finally:
        mem.close()


def test_restore_never_serves_entries_of_the_replaced_content(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    url = f"sqlite:///{tmp_path / 'e.db'}"
    mem = open_mem(url, redis_server.url)
    try:
        mem.add("before the backup", id="r1")
        mem.backup(tmp_path / "b.db")
        mem.update("r1", text="after the backup")
        assert mem.get("r1").text == "after the backup"  # cached under the later generation
        mem.restore(tmp_path / "b.db")
        assert mem.get("r1").text == "before the backup"
        mem.update("r1", text="a different later text")  # generation numbers move on again
        assert mem.get("r1").text == "a different later text"
    finally:
        mem.close()


@pytest.mark.postgres
def test_read_after_write_on_postgresql(postgres_url: str, redis_server: RedisServer) -> None:
    a, b = open_mem(postgres_url, redis_server.url), open_mem(postgres_url, redis_server.url)
    try:
        a.add("Alice lives in Lisbon", id="r1")
        a.set_slots("t1", {"step": 1})
        for _ in range(2):
            assert b.get("r1").text == "Alice lives in Lisbon"
            assert [h.record.id for h in b.search("lisbon", mode="keyword")] == ["r1"]
            assert b.get_slots("t1").values == {"step": 1}
        assert b.stats()["cache"]["hits"] >= 3
        a.update("r1", text="Alice lives in Porto")
        a.set_slots("t1", {"step": 2})
        assert b.get("r1").text == "Alice lives in Porto"
        assert b.search("lisbon", mode="keyword").hits == []
        assert b.get_slots("t1").values == {"step": 2}
        a.delete("r1")
        with pytest.raises(NotFoundError):
            b.get("r1")
    finally:
        a.close()
        b.close()
