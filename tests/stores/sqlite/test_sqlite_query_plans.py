"""Query plans: everyday calls read their scope's index, never the whole namespace.

The SQLite stores' statements are traced, and each is explained on a plain connection.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from engramdb import HashEmbedder, Memory


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every SQL statement the SQLite stores opened from now on run, values filled in."""
    from engramdb.stores.sqlite.connection import Connections

    seen: list[str] = []
    connect = Connections.connect

    def traced(self: Connections, readonly: bool) -> sqlite3.Connection:
        conn = connect(self, readonly)
        conn.set_trace_callback(seen.append)
        return conn

    monkeypatch.setattr(Connections, "connect", traced)
    return seen


def test_scoped_lists_and_counts_read_their_scope_index(
    tmp_path: Path, statements: list[str]
) -> None:
    """A list or count scoped to a user or a thread searches that scope's index; it does not
    walk the namespace (which cost ~20 ms per call at 100k records, for a user of 13). A
    list over several users (``$in``) may still walk ``records_ns_id`` in id order to skip a
    sort: the planner's choice, not asserted. A list of one thread is told to use the
    thread's index (its rows are in time order, so the planner preferred the walk)."""
    db = tmp_path / "a.db"
    with Memory(f"sqlite:///{db}", embedder=HashEmbedder(16)) as mem:
        mem.add([{"text": f"fact {i}", "user_id": f"u{i % 3}", "thread_id": "t"} for i in range(9)])
        cases = {
            "records_ns_user": [
                lambda: mem.list(user_id="u1"),
                lambda: mem.count(user_id="u1"),
                lambda: mem.count(filters={"user_id": {"$in": ["u1", "u2"]}}),
            ],
            "records_ns_thread": [
                lambda: mem.count(thread_id="t"),
                lambda: mem.list(thread_id="t"),
                lambda: mem.list(user_id="u1", thread_id="t"),
            ],
        }
        with sqlite3.connect(db) as plain:
            for index, calls in cases.items():
                for call in calls:
                    statements.clear()
                    call()
                    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
                    assert reads, "the call ran no SELECT"
                    plan = " | ".join(
                        str(row[3]) for row in plain.execute("EXPLAIN QUERY PLAN " + reads[-1])
                    )
                    assert index in plan, (reads[-1], plan)


def test_everyday_calls_read_no_namespace_wide_range(tmp_path: Path, statements: list[str]) -> None:
    """Calls on one record, user or thread read by id, scope or chunk, never every record of
    the namespace. Appending a turn once did (its neighbour re-index walked them all: 5.7 ms
    per message at 10k records, growing with the store)."""
    import re

    db = tmp_path / "a.db"
    walk = re.compile(
        r"^(SCAN (r|c|records|chunks)\b|SEARCH (r|records) USING .*\(namespace=\?\)$)"
    )
    with Memory(f"sqlite:///{db}", embedder=HashEmbedder(16)) as mem:
        mem.add([f"other fact {i}" for i in range(50)], user_id="someone")
        mem.add_messages("t", [{"role": "user", "content": f"turn {i}"} for i in range(6)])
        rid = mem.add("a fact of alice", user_id="alice", thread_id="t2")[0].id
        mem.add(["a rare fact", "one more rare fact"], tags=["rare"])
        mem.add("a fact from a memo", metadata={"src": "memo.pdf"})
        calls = {
            "add_messages": lambda: mem.add_messages("t", [{"role": "user", "content": "more"}]),
            "add": lambda: mem.add("another fact of alice", user_id="alice"),
            "get": lambda: mem.get(rid),
            "update": lambda: mem.update(rid, text="a changed fact of alice"),
            "history": lambda: mem.history(rid),
            "search user": lambda: mem.search("fact", user_id="alice"),
            "search thread": lambda: mem.search("turn", thread_id="t"),
            "list user": lambda: mem.list(user_id="alice"),
            "count user": lambda: mem.count(user_id="alice"),
            "list thread": lambda: mem.list(thread_id="t"),
            "events": lambda: mem.events("t"),
            "snapshot": lambda: mem.snapshot("t"),
            "list rare tag": lambda: mem.list(tags=["rare"]),
            "count rare tag": lambda: mem.count(filters={"tags": {"$contains": ["rare"]}}),
            "search rare tag": lambda: mem.search("fact", tags=["rare"]),
            "search absent tag": lambda: mem.search("fact", tags=["nobody"]),
            "count rare value": lambda: mem.count(filters={"metadata.src": "memo.pdf"}),
            "list rare value": lambda: mem.list(filters={"metadata.src": "memo.pdf"}),
            "search rare value": lambda: mem.search("fact", filters={"metadata.src": "memo.pdf"}),
            "search absent value": lambda: mem.search("fact", filters={"metadata.src": 7}),
            "delete_all rare tag": lambda: mem.delete_all(filters={"tags": "rare"}),
            "delete": lambda: mem.delete(rid),
        }
        with sqlite3.connect(db) as plain:
            for name, call in calls.items():
                statements.clear()
                call()
                reads = [s for s in statements if s.lstrip().upper().startswith(("SELECT", "WITH"))]
                for sql in reads:
                    steps = [str(r[3]) for r in plain.execute("EXPLAIN QUERY PLAN " + sql)]
                    assert not any(walk.match(step) for step in steps), (name, sql, steps)


def test_search_hits_are_located_without_reading_chunk_vectors(
    tmp_path: Path, statements: list[str]
) -> None:
    """Every statement that looks candidate chunks up by id (a vector search's located
    rows, ``locate`` for keyword hits, the filter checks of candidates) finds each by the
    chunk table's primary key, and no search statement reads ``chunk_vectors`` (searches
    take vectors from the sidecar; migration 0021 moved them out of the chunk rows)."""
    db = tmp_path / "a.db"
    with Memory(f"sqlite:///{db}", embedder=HashEmbedder(16)) as mem:
        mem.add([f"fact number {i} about cats" for i in range(30)], user_id="alice")
        mem.add(["a tagged fact about cats"] * 3, tags=["t"], user_id="bob")
        mem.search("warm up", mode="vector")  # the sidecar catches up outside the timed calls
        calls = {
            "vector": lambda: mem.search("cats", mode="vector", user_id="alice"),
            "hybrid": lambda: mem.search("cats", user_id="alice"),
            "keyword": lambda: mem.search("cats", mode="keyword"),
            "vector filtered": lambda: mem.search("cats", mode="vector", type="semantic"),
        }
        with sqlite3.connect(db) as plain:
            for name, call in calls.items():
                statements.clear()
                call()
                assert not [s for s in statements if "chunk_vectors" in s], name
                lookups = [s for s in statements if "json_each" in s and " chunks c " in s]
                assert lookups, name
                for sql in lookups:
                    plan = [str(r[3]) for r in plain.execute("EXPLAIN QUERY PLAN " + sql)]
                    assert any("SEARCH c USING INTEGER PRIMARY KEY" in step for step in plan), (
                        name,
                        sql,
                        plan,
                    )
                    # The hybrid search's whole read takes each record's answer kinds by key.
                    if "record_answer_kinds" in sql:
                        assert any(
                            step.startswith(
                                "SEARCH k USING PRIMARY KEY (namespace=? AND record_id=?)"
                            )
                            for step in plan
                        ), (name, plan)
                whole = [s for s in lookups if "record_answer_kinds" in s]
                assert len(whole) == (1 if name == "hybrid" else 0), name
