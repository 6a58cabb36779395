"""Redis conversation histories as the legacy side of dual write and shadow reads, on a real
redis-server.

What must hold: a turn written through ``LegacyMemory`` is appended to its thread's list (or
hash) as a JSON object the Redis source adapter reads back, under the engramdb id the pair
gave it; turns that were there before answer under the ids ``migrate`` derives; updates
rewrite a turn in place, deletes remove exactly that turn, a replayed write lands once, and
reads (get, count, search) answer from Redis.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from redis_server import RedisServer

from engramdb import HashEmbedder, Memory, NotFoundError, ValidationError
from engramdb.ops.legacy import derived_id, migrate_legacy
from engramdb.ops.legacy_memory import LegacyMemory
from engramdb.sidebyside import DualWriteMemory, ShadowReadMemory, reconcile

EMB = HashEmbedder(64)
pytestmark = pytest.mark.redis


def _seed(server: RedisServer) -> None:
    with server.client() as r:
        r.rpush(
            "chat:t1",
            json.dumps({"role": "user", "content": "I need a flight to Oslo", "user_id": "u1"}),
            json.dumps({"role": "assistant", "content": "Booked Friday 9:40", "user_id": "u1"}),
        )
        r.hset(
            "chat:t2",
            mapping={
                "0": json.dumps({"role": "user", "content": "Any vegetarian food?"}),
                "1": json.dumps({"role": "assistant", "content": "Yes, on every flight"}),
            },
        )


def _turns(server: RedisServer, key: str) -> list[dict[str, object]]:
    with server.client() as r:
        if r.type(key) == b"hash":
            return [json.loads(v) for _, v in sorted(r.hgetall(key).items())]
        return [json.loads(v) for v in r.lrange(key, 0, -1)]


def test_redis_lists_as_the_dual_write_secondary(tmp_path: Path, redis_server: RedisServer) -> None:
    _seed(redis_server)
    url = f"{redis_server.url}?pattern=chat:*"
    legacy = LegacyMemory(url, embedder=EMB)
    assert (legacy.collection, legacy.namespace) == ("chat", "chat")
    new = Memory(f"sqlite:///{tmp_path / 'new.db'}", embedder=EMB).with_namespace("chat")
    dual = DualWriteMemory(new, legacy, tmp_path / "dual.queue", drain=False)
    try:
        rid = dual.add(
            "Please make it a window seat",
            user_id="u1",
            thread_id="t1",
            metadata={"role": "user"},
        )[0].record.id
        turns = _turns(redis_server, "chat:t1")
        assert len(turns) == 3
        written = turns[2]
        assert written["content"] == "Please make it a window seat"
        assert (written["role"], written["user_id"], written["$engram_id"]) == ("user", "u1", rid)
        assert str(written["timestamp"]).startswith(str(new.get(rid).occurred_at.year))
        mirrored = legacy.get(rid)
        assert (mirrored.text, mirrored.thread_id, mirrored.metadata) == (
            "Please make it a window seat",
            "t1",
            {"role": "user"},
        )
        assert mirrored.content_hash == new.get(rid).content_hash
        older = legacy.get(derived_id("redis:chat/t1/1"))
        assert older.text == "Booked Friday 9:40" and older.metadata["role"] == "assistant"
        assert older.metadata["migrated_from"] == "redis:chat/t1/1"
        assert legacy.count(user_id="u1") == 3
        assert legacy.count(thread_id="t2") == 2

        # A hash of turns gets the next field; a new thread gets a new list.
        in_hash = dual.add("Two meals please", thread_id="t2")[0].record.id
        with redis_server.client() as r:
            assert json.loads(r.hget("chat:t2", "2"))["$engram_id"] == in_hash
        fresh = dual.add("Hello again", thread_id="t3", user_id="u2")[0].record.id
        assert [t["content"] for t in _turns(redis_server, "chat:t3")] == ["Hello again"]
        moved = legacy.add("Wrong conversation", thread_id="t3")[0].record.id
        legacy.update(moved, thread_id="t4")  # a turn that changes thread leaves the old one
        assert [t["content"] for t in _turns(redis_server, "chat:t3")] == ["Hello again"]
        assert [t["content"] for t in _turns(redis_server, "chat:t4")] == ["Wrong conversation"]
        assert legacy.get(moved).thread_id == "t4"

        # An update rewrites the turn where it is; a replayed add lands once.
        dual.add("And a vegetarian meal", thread_id="t1")
        dual.update(rid, text="Please make it an aisle seat")
        turns = _turns(redis_server, "chat:t1")
        assert [t["content"] for t in turns[2:]] == [
            "Please make it an aisle seat",
            "And a vegetarian meal",
        ]
        legacy.add([{"id": fresh, "text": "Hello again", "thread_id": "t3", "user_id": "u2"}])
        assert len(_turns(redis_server, "chat:t3")) == 1

        # Reads answer from Redis: search ranks the turns in scope by the legacy embedder.
        page = legacy.search("Please make it an aisle seat", top_k=2, thread_id="t1")
        assert page.hits[0].record.id == rid and len(page.hits) == 2
        assert {h.record.thread_id for h in page.hits} == {"t1"}
        with pytest.raises(ValidationError, match="does not support 'filters'"):
            legacy.search("seat", filters={"user_id": "u1"})

        # A delete removes exactly that turn; the older turns before it keep their ids.
        dual.delete(rid)
        assert [t["content"] for t in _turns(redis_server, "chat:t1")] == [
            "I need a flight to Oslo",
            "Booked Friday 9:40",
            "And a vegetarian meal",
        ]
        with pytest.raises(NotFoundError):
            legacy.get(rid)
        assert legacy.get(derived_id("redis:chat/t1/0")).text == "I need a flight to Oslo"
        with redis_server.client() as r:  # the team's own code keeps writing meanwhile
            r.rpush("chat:t9", json.dumps({"role": "user", "content": "written by the app"}))
        assert legacy.get(derived_id("redis:chat/t9/0")).text == "written by the app"
        with pytest.raises(ValidationError, match="thread id"):
            legacy.add("a turn with no conversation")
        assert dual.pending == 0 and dual.secondary_failures == 0

        # Shadow reads compare the two sides by id.
        with ShadowReadMemory(legacy, new, sample=1.0) as shadow:
            assert shadow.get(fresh).text == "Hello again"
            shadow.wait_idle()
            assert shadow.compared == 1 and shadow.new_errors == 0
            assert shadow.last_verdict is not None and shadow.last_verdict.inconsistency == 0
    finally:
        dual.close()
        legacy.close()
        new.close()


def test_a_migration_after_dual_writing_finds_the_turns_already_there(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    _seed(redis_server)
    url = f"{redis_server.url}?pattern=chat:*"
    target = f"sqlite:///{tmp_path / 'new.db'}"
    first = migrate_legacy(url, target, embedder=EMB, log_file=None)
    assert first["written"] == 4
    new = Memory(target, embedder=EMB).with_namespace("chat")
    legacy = LegacyMemory(url, embedder=EMB)
    try:
        with DualWriteMemory(new, legacy, tmp_path / "dual.queue", drain=False) as dual:
            # The Redis mapping reads every turn as a message: a turn written as one
            # migrates as itself.
            rid = dual.add("Window seat please", thread_id="t1", type="message")[0].record.id
        again = migrate_legacy(url, target, embedder=EMB, log_file=None)
        assert again["written"] == 0, again
        assert new.count() == 5 and new.get(rid).text == "Window seat please"
        assert legacy.get(rid).text == "Window seat please"
        # Reconcile compares what the turns can hold (the type is the mapping's constant).
        assert "type" in legacy.unheld_fields and "user_id" not in legacy.unheld_fields
        report = reconcile(legacy, new, namespaces=["chat"], ignore=legacy.unheld_fields)
        assert report["differences"] == 0, report
        new.add("only in engramdb", thread_id="t1", type="message")
        report = reconcile(
            legacy, new, namespaces=["chat"], repair=True, ignore=legacy.unheld_fields
        )
        assert (report["differences"], report["repaired"]) == (1, 1)
        assert [t["content"] for t in _turns(redis_server, "chat:t1")][-1] == "only in engramdb"
    finally:
        legacy.close()
        new.close()


def test_a_thread_outside_the_pattern_is_refused(redis_server: RedisServer) -> None:
    with redis_server.client() as r:
        r.rpush("chat:t1:turns", json.dumps({"content": "hi"}))
    legacy = LegacyMemory(f"{redis_server.url}?pattern=chat:*:turns", embedder=EMB)
    try:
        assert legacy.get(derived_id("redis:chat/t1:turns/0")).thread_id == "t1:turns"
        legacy.add("kept with its conversation", thread_id="t1:turns")
        with pytest.raises(ValidationError, match="outside the pattern"):
            legacy.add("lost", thread_id="t9")
        with redis_server.client() as r:
            assert r.llen("chat:t1:turns") == 2 and not r.exists("chat:t9")
    finally:
        legacy.close()
