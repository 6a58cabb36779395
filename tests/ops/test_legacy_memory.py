"""The legacy side of dual write and shadow reads: a real Chroma store and a real SQLite
table behind ``LegacyMemory``, run beside an engramdb store with ``DualWriteMemory`` and
``ShadowReadMemory``.

What must hold: a write through the pair lands in both stores under the same engramdb id,
laid out as the team's code lays it out (Chroma metadata keys, the table's columns); the
items already in the legacy store answer under the ids ``migrate`` gives them, so shadow
comparisons agree with a migrated copy; and a migration run after a period of dual
writing finds everything already there (nothing written, no conflict).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from engramdb import HashEmbedder, Memory, NotFoundError, ValidationError
from engramdb.ops.legacy import derived_id, migrate_legacy
from engramdb.ops.legacy_memory import LegacyMemory
from engramdb.sidebyside import DualWriteMemory, ShadowReadMemory
from tests.ops.chroma_helpers import build_chroma

EMB = HashEmbedder(384)
CHROMA_MAPPING = {
    "text": "$document",
    "id": "$id",
    "user_id": "user_id",
    "occurred_at": "created_at",
    "metadata": ["topic", "mood"],
    "optional": ["mood", "topic", "created_at"],
    "embedding_model": EMB.name,
    "embedding_dim": EMB.dim,
}


def _chroma_ids(path: Path, collection: str) -> dict[str, dict[str, object]]:
    import chromadb

    col = chromadb.PersistentClient(path=str(path)).get_collection(
        collection, embedding_function=None
    )
    got = col.get(include=["documents", "metadatas"])
    return {
        i: {"document": d, **(m or {})}
        for i, d, m in zip(got["ids"], got["documents"], got["metadatas"], strict=True)
    }


def test_chroma_beside_engramdb_dual_write_shadow_and_a_later_migration(
    tmp_path: Path,
) -> None:
    chroma = tmp_path / "chroma"
    docs = build_chroma(chroma, 24, ("notes",))["notes"]
    target = f"sqlite:///{tmp_path / 'new.db'}"
    source = f"chroma://{chroma}?collection=notes"
    first = migrate_legacy(source, target, mapping=CHROMA_MAPPING, embedder=EMB, log_file=None)
    assert first["written"] == 24
    legacy = LegacyMemory(source, embedder=EMB, mapping=CHROMA_MAPPING)
    new = Memory(target, embedder=EMB).with_namespace("notes")
    dual = DualWriteMemory(legacy, new, tmp_path / "dual.queue", drain=False)
    try:
        # An older item answers under the id migrate gave it, with the same content.
        old_id = derived_id("chroma:notes/notes-5")
        assert legacy.get(old_id).text == docs[5] == new.get(old_id).text
        assert legacy.get(old_id).content_hash == new.get(old_id).content_hash

        added = dual.add("ana adopted a three-legged cat", user_id="ana", metadata={"mood": "glad"})
        rid = added[0].record.id
        stored = _chroma_ids(chroma, "notes")[f"engram:{rid}"]
        assert stored["document"] == "ana adopted a three-legged cat"
        assert stored["user_id"] == "ana" and stored["mood"] == "glad"
        assert new.get(rid).text == "ana adopted a three-legged cat"
        assert new.get(rid).metadata == {"mood": "glad"}

        dual.update(rid, text="ana adopted two cats")
        assert legacy.get(rid).text == "ana adopted two cats" == new.get(rid).text
        dual.update(old_id, text="ana keeps bees on the roof in Bergen now")
        assert new.get(old_id).text == legacy.get(old_id).text
        assert legacy.count(user_id="ana") == new.count(user_id="ana")

        gone = dual.add("bo sold his bicycle", user_id="bo")[0].record.id
        dual.delete(gone)
        with pytest.raises(NotFoundError):
            legacy.get(gone)
        with pytest.raises(NotFoundError):
            new.get(gone)
        assert dual.pending == 0 and dual.secondary_failures == 0

        # Shadow reads: Chroma serves, engramdb is compared, and they agree on the top hit
        # (beyond it the two rank apart: engramdb fuses keyword and vector ranks).
        shadow = ShadowReadMemory(legacy, new, sample=1.0)
        try:
            for i in (1, 2, 3, 7):
                page = shadow.search(docs[i], user_id=docs[i].split()[2], top_k=1)
                assert page.hits[0].record.id == derived_id(f"chroma:notes/notes-{i}")
            assert shadow.get(rid).text == "ana adopted two cats"
            shadow.wait_idle()
            assert shadow.compared == 5 and shadow.new_errors == 0
            assert shadow.last_verdict is not None and shadow.last_verdict.inconsistency == 0.0
        finally:
            shadow.close()
    finally:
        dual.close()
        legacy.close()
        new.close()
    # Switching later: the migration finds every item already there, mirrored ones included.
    again = migrate_legacy(source, target, mapping=CHROMA_MAPPING, embedder=EMB, log_file=None)
    assert again["written"] == 0
    assert again["validation"]["ok"] is True


SQL_MAPPING = {
    "table": "conversation_history",
    "id": "id",
    "text": "content",
    "user_id": "user_id",
    "thread_id": "session_id",
    "occurred_at": "created_at",
    "metadata": ["role"],
}


def _legacy_table(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE conversation_history (id TEXT PRIMARY KEY, content TEXT, user_id TEXT, "
        "session_id TEXT, created_at TEXT, role TEXT)"
    )
    conn.executemany(
        "INSERT INTO conversation_history VALUES (?,?,?,?,?,?)",
        [
            ("t1", "I need a flight to Oslo on Friday", "u1", "s1", "2024-03-01 10:00:00", "user"),
            ("t2", "Booked: Friday 9:40 to Oslo", "u1", "s1", "2024-03-01 10:00:05", "assistant"),
        ],
    )
    conn.commit()
    conn.close()


def test_sql_table_as_the_dual_write_secondary(tmp_path: Path) -> None:
    db = tmp_path / "legacy.db"
    _legacy_table(db)
    legacy = LegacyMemory(f"sql:sqlite:///{db}", mapping=SQL_MAPPING)
    new = Memory(f"sqlite:///{tmp_path / 'new.db'}", embedder=EMB).with_namespace(
        "conversation_history"
    )
    dual = DualWriteMemory(new, legacy, tmp_path / "dual.queue", drain=False)
    try:
        rid = dual.add(
            "Please make it a window seat",
            user_id="u1",
            thread_id="s1",
            metadata={"role": "user"},
        )[0].record.id
        conn = sqlite3.connect(db)
        row = conn.execute(
            "SELECT content, user_id, session_id, role, created_at FROM conversation_history "
            "WHERE id = ?",
            (f"engram:{rid}",),
        ).fetchone()
        conn.close()
        assert row[:4] == ("Please make it a window seat", "u1", "s1", "user")
        assert row[4]  # the engramdb record's time, as ISO 8601
        mirrored = legacy.get(rid)
        assert (mirrored.text, mirrored.user_id, mirrored.thread_id) == (
            "Please make it a window seat",
            "u1",
            "s1",
        )
        assert mirrored.metadata == {"role": "user"}
        assert mirrored.content_hash == new.get(rid).content_hash
        older = legacy.get(derived_id("sql:conversation_history/t2"))
        assert older.text == "Booked: Friday 9:40 to Oslo"
        assert older.metadata["role"] == "assistant"
        assert legacy.count(user_id="u1") == 3
        dual.delete(rid)
        assert legacy.count(user_id="u1") == 2
        assert dual.pending == 0 and dual.secondary_failures == 0
        with pytest.raises(ValidationError, match="cannot search"):
            legacy.search("flight")
    finally:
        dual.close()
        legacy.close()
        new.close()


def test_a_snapshot_source_is_refused_as_a_legacy_side(tmp_path: Path) -> None:
    path = tmp_path / "dump.jsonl"
    path.write_text('{"id": "1", "content": "hello there"}\n')
    with pytest.raises(ValidationError, match="cannot be written"):
        LegacyMemory(f"jsonl://{path}", mapping={"text": "content", "id": "id"})
