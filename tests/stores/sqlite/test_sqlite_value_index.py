"""The tag and metadata indexes (record_tags, record_meta): built for existing records by
their migrations, and kept equal to the records through every kind of write."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from sqlite_old_revisions import as_revision_0007, as_revision_0009

from engramdb import HashEmbedder, Memory
from engramdb.migrations import SCHEMA_HEAD


def _tag_rows(db: Path) -> set[tuple[str, str, int]]:
    with sqlite3.connect(db) as conn:
        return set(conn.execute("SELECT namespace, tag, rid FROM record_tags"))


def _tags_from_records(db: Path) -> set[tuple[str, str, int]]:
    with sqlite3.connect(db) as conn:
        return set(
            conn.execute("SELECT r.namespace, j.value, r.rid FROM records r, json_each(r.tags) j")
        )


def test_migration_0008_indexes_the_tags_of_existing_records(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    with Memory(f"sqlite:///{db}", embedder=HashEmbedder(16)) as mem:
        tea = mem.add("green tea every morning", tags=["food", "habit"], user_id="u")[0].record
        mem.add("a record without tags", user_id="u")
        mem.with_namespace("other").add("green tea in another namespace", tags=["food"])
    as_revision_0007(db)
    with Memory(f"sqlite:///{db}", embedder=HashEmbedder(16)) as mem:
        assert mem.doctor()["ok"]
        assert len(_tag_rows(db)) == 3 and _tag_rows(db) == _tags_from_records(db)
        assert [r.id for r in mem.list(tags=["habit"]).records] == [tea.id]
        assert mem.count(filters={"tags": "food"}) == 1
        assert [h.record.id for h in mem.search("tea", tags=["food"])] == [tea.id]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] == SCHEMA_HEAD


def test_tag_index_follows_every_write_of_tags(tmp_path: Path) -> None:
    """The triggers keep record_tags equal to the records' tags through add (one and a
    batch, repeated tags), update, delete, delete_all, forget and import."""
    db = tmp_path / "a.db"
    with Memory(f"sqlite:///{db}", embedder=HashEmbedder(16)) as mem:
        a = mem.add("alpha", tags=["x", "y", "x"], user_id="u")[0].record
        batch = mem.add([{"text": f"beta {i}", "tags": ["b", f"n{i}"]} for i in range(5)])
        mem.with_namespace("other").add("gamma", tags=["x"], user_id="u")
        assert _tag_rows(db) == _tags_from_records(db) and len(_tag_rows(db)) == 13
        mem.update(a.id, add_tags=["z"], remove_tags=["y"])
        assert ("default", "z", 1) in _tag_rows(db) and ("default", "y", 1) not in _tag_rows(db)
        mem.delete(batch[0].record.id)
        assert mem.delete_all(filters={"tags": "n1"}) == 1
        assert _tag_rows(db) == _tags_from_records(db)
        exported = tmp_path / "dump.jsonl"
        mem.export(exported)
        mem.forget(user_id="u")
        assert _tag_rows(db) == _tags_from_records(db)
        mem.forget(namespace=True)
        assert {ns for ns, _, _ in _tag_rows(db)} == {"other"}
        mem.import_(exported)
        assert _tag_rows(db) == _tags_from_records(db)
        kept = sorted(t for ns, t, _ in _tag_rows(db) if ns == "default")
        assert kept == ["b", "b", "b", "n2", "n3", "n4", "x", "z"]
        assert mem.doctor()["ok"]


def _meta_rows(db: Path) -> set[tuple[str, str, Any, int]]:
    with sqlite3.connect(db) as conn:
        return set(conn.execute("SELECT namespace, key, value, rid FROM record_meta"))


def _meta_from_records(db: Path) -> set[tuple[str, str, Any, int]]:
    """What record_meta must hold, computed in Python from the records' metadata."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT namespace, metadata, rid FROM records").fetchall()
    return {
        (ns, key, value, rid)
        for ns, meta, rid in rows
        for key, value in json.loads(meta).items()
        if (isinstance(value, int | float) and not isinstance(value, bool))
        or (isinstance(value, str) and len(value) <= 200)
    }


def test_migration_0010_indexes_the_metadata_of_existing_records(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    with Memory(f"sqlite:///{db}", embedder=HashEmbedder(16)) as mem:
        tea = mem.add(
            "green tea every morning",
            metadata={"session": "s1", "n": 3, "ok": True, "deep": {"session": "s1"}},
        )[0].record
        mem.add("a record without metadata")
        mem.with_namespace("other").add("green tea elsewhere", metadata={"session": "s1"})
    as_revision_0009(db)
    with Memory(f"sqlite:///{db}", embedder=HashEmbedder(16)) as mem:
        assert mem.doctor()["ok"]
        assert _meta_rows(db) == _meta_from_records(db) and len(_meta_rows(db)) == 3
        assert [r.id for r in mem.list(filters={"metadata.session": "s1"}).records] == [tea.id]
        assert mem.count(filters={"metadata.n": 3.0}) == 1
        assert [h.record.id for h in mem.search("tea", filters={"metadata.n": 3})] == [tea.id]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] == SCHEMA_HEAD


def test_metadata_index_follows_every_write_of_metadata(tmp_path: Path) -> None:
    """record_meta holds exactly the top-level numbers and strings of up to 200 characters
    of every record's metadata through add (one and a batch), update, delete, delete_all,
    forget and import; booleans, nulls, lists and nested values are left out; "1" and 1
    stay apart."""
    db = tmp_path / "a.db"
    with Memory(f"sqlite:///{db}", embedder=HashEmbedder(16)) as mem:
        a = mem.add(
            "alpha",
            user_id="u",
            metadata={"s": "1", "i": 1, "f": 2.5, "b": True, "z": None, "l": [1], "o": {"k": 1}}
            | {"t": "é" * 200, "long": "é" * 201},
        )[0].record
        batch = mem.add([{"text": f"beta {i}", "metadata": {"i": i, "s": "b"}} for i in range(5)])
        mem.with_namespace("other").add("gamma", metadata={"s": "1"}, user_id="u")
        assert _meta_rows(db) == _meta_from_records(db) and len(_meta_rows(db)) == 15
        assert mem.count(filters={"metadata.s": "1"}) == 1
        # A string too long for the index is still found, by testing the records.
        assert mem.count(filters={"metadata.t": "é" * 200, "metadata.long": "é" * 201}) == 1
        assert mem.count(filters={"metadata.i": 1}) == 2  # alpha and beta 1, not "1"
        mem.update(a.id, metadata={"s": "2"})
        assert _meta_rows(db) == _meta_from_records(db)
        assert mem.count(filters={"metadata.s": "1"}) == 0
        mem.delete(batch[0].record.id)
        assert mem.delete_all(filters={"metadata.i": 1}) == 1
        assert _meta_rows(db) == _meta_from_records(db)
        exported = tmp_path / "dump.jsonl"
        mem.export(exported)
        mem.forget(user_id="u")
        assert _meta_rows(db) == _meta_from_records(db)
        mem.forget(namespace=True)
        assert {ns for ns, _, _, _ in _meta_rows(db)} == {"other"}
        mem.import_(exported)
        assert _meta_rows(db) == _meta_from_records(db)
        assert mem.count(filters={"metadata.s": "b"}) == 3
        assert mem.doctor()["ok"]
