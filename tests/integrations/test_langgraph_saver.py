"""EngramSaver against LangGraph's own checkpointer conformance suite, on both backends.

The suite (``langgraph-checkpoint-conformance``) is async: ``validate`` runs every capability
the saver overrides against a fresh saver from the registered factory and reports per
capability; a capability it does not detect is reported as not detected, so the test also
asserts which ones were detected.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.conformance import checkpointer_test, validate

from engramdb import HashEmbedder, Memory
from engramdb.errors import ValidationError
from engramdb.integrations.langgraph import EngramSaver

ALL = {"put", "put_writes", "get_tuple", "list", "delete_thread"} | {
    "delete_for_runs",
    "copy_thread",
    "prune",
}


async def test_engram_saver_passes_the_conformance_suite(store_url: str) -> None:
    mem = Memory(store_url, embedder=HashEmbedder(384))

    @checkpointer_test(name="EngramSaver")
    async def factory() -> AsyncIterator[EngramSaver]:
        yield EngramSaver(mem)

    try:
        report = await validate(factory)
    finally:
        mem.close()
    failures = {
        cap: [f"{f}" for f in r.failures] for cap, r in report.results.items() if r.failures
    }
    assert failures == {}
    assert {cap for cap, r in report.results.items() if r.detected} == ALL
    assert all(r.passed for r in report.results.values())
    assert sum(r.tests_passed for r in report.results.values()) > 40


def test_checkpoints_are_scoped_by_engramdb_namespace(tmp_path: pytest.TempPathFactory) -> None:
    url = f"sqlite:///{tmp_path}/ns.db"
    with Memory(url, embedder=HashEmbedder(384)) as mem:
        a = EngramSaver(mem, namespace="tenant-a")
        b = EngramSaver(mem, namespace="tenant-b")
        cp = empty_checkpoint()
        config = {"configurable": {"thread_id": "t1", "checkpoint_ns": ""}}
        a.put(config, cp, {"source": "input", "step": -1}, {})
        assert a.get_tuple({"configurable": {"thread_id": "t1"}}) is not None
        assert b.get_tuple({"configurable": {"thread_id": "t1"}}) is None
        assert list(b.list(None)) == []


def test_saver_refuses_bad_input_with_named_errors(tmp_path: pytest.TempPathFactory) -> None:
    with EngramSaver(f"sqlite:///{tmp_path}/bad.db", embedder=HashEmbedder(384)) as saver:
        with pytest.raises(ValidationError, match="thread_id"):
            saver.get_tuple({"configurable": {}})
        with pytest.raises(ValidationError, match="strategy"):
            saver.prune(["t"], strategy="oldest")
        with pytest.raises(ValidationError, match="thread_id"):
            saver.get_tuple({"configurable": {"thread_id": "a\x00b"}})
        # A metadata filter key never reaches SQL text: a quote is just a key that matches nothing.
        assert list(saver.list(None, filter={"x') OR 1=1 --": 1})) == []


def test_a_file_from_before_revision_0013_gains_the_tables(tmp_path) -> None:
    import sqlite3

    from engramdb.migrations import SCHEMA_HEAD

    db = tmp_path / "old.db"
    with Memory(f"sqlite:///{db}", embedder=HashEmbedder(384)) as mem:
        rid = mem.add("kept across the upgrade")[0].id
    with sqlite3.connect(db) as conn:
        for table in ("thread_checkpoints", "thread_checkpoint_blobs", "thread_checkpoint_writes"):
            conn.execute(f"DROP TABLE {table}")
        conn.execute("UPDATE alembic_version SET version_num = '0012'")  # the one before
    with Memory(f"sqlite:///{db}", embedder=HashEmbedder(384)) as mem:
        saver = EngramSaver(mem)
        saver.put(
            {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}, empty_checkpoint(), {}, {}
        )
        assert saver.get_tuple({"configurable": {"thread_id": "t"}}) is not None
        assert mem.get(rid).text == "kept across the upgrade"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == (SCHEMA_HEAD,)


def test_forget_erases_a_threads_checkpoints(mem: Memory) -> None:
    saver = EngramSaver(mem)
    for thread in ("t1", "t2"):
        cp = empty_checkpoint()
        cp["channel_values"] = {"messages": ["a secret"]}
        cp["channel_versions"] = {"messages": "1"}
        cfg = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
        stored = saver.put(cfg, cp, {"step": 0}, {"messages": "1"})
        saver.put_writes(stored, [("messages", ["more"])], "task-1")
    assert mem.forget(user_id="someone")["records"] == 0
    assert saver.get_tuple({"configurable": {"thread_id": "t1"}}) is not None
    assert mem.forget(thread_id="t1")["checkpoints"] == 1
    assert saver.get_tuple({"configurable": {"thread_id": "t1"}}) is None
    assert saver.get_tuple({"configurable": {"thread_id": "t2"}}).pending_writes
    assert mem.forget(namespace=True)["checkpoints"] == 1
    assert list(saver.list(None)) == []


def test_an_unchanged_channel_is_stored_once(tmp_path) -> None:
    import sqlite3

    db = tmp_path / "blobs.db"
    with EngramSaver(f"sqlite:///{db}", embedder=HashEmbedder(384)) as saver:
        cfg = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
        docs = [f"document {i} " * 50 for i in range(20)]
        for step in range(5):
            cp = empty_checkpoint()
            cp["channel_values"] = {"docs": docs, "log": [f"step {i}" for i in range(step + 1)]}
            cp["channel_versions"] = {"docs": "1", "log": str(step + 1)}
            new = {"docs": "1", "log": str(step + 1)} if step == 0 else {"log": str(step + 1)}
            cfg = saver.put(cfg, cp, {"step": step}, new)
            got = saver.get_tuple({"configurable": {"thread_id": "t"}})
            assert got.checkpoint["channel_values"] == cp["channel_values"]
        first = list(saver.list({"configurable": {"thread_id": "t"}}))[-1]
        assert first.checkpoint["channel_values"]["log"] == ["step 0"]
    with sqlite3.connect(db) as conn:
        rows = dict(
            conn.execute(
                "SELECT channel, count(*) FROM thread_checkpoint_blobs GROUP BY channel"
            ).fetchall()
        )
    assert rows == {"docs": 1, "log": 5}
