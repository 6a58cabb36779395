"""Upgrading files written by earlier engramdb versions: existing rows get what the new
schema derives from them (dedup keys, keyword scopes), and older rows are still read."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from sqlite_old_revisions import (
    as_revision_0005,
    as_revision_0006,
    as_revision_0011,
    as_revision_0017,
)

from engramdb import HashEmbedder, Memory
from engramdb.migrations import SCHEMA_HEAD
from engramdb.ops.keys import KeyService
from engramdb.stores.sqlite.schema import upgrade


def test_add_rows_written_by_earlier_versions_are_returned_once(tmp_path: Path) -> None:
    """Files written before adds stopped leaving history rows keep theirs; history() returns
    the stored row (with its own seq) instead of deriving a second one."""
    db = tmp_path / "legacy.db"
    with Memory(f"sqlite:///{db}", embedder=HashEmbedder(16)) as mem:
        rid = mem.add("an old fact", user_id="u")[0].id
        created = mem.get(rid).created_at
        with sqlite3.connect(db) as conn:  # the row an earlier engramdb wrote on add
            conn.execute(
                "INSERT INTO history(namespace, record_id, user_id, thread_id, op, version, "
                "before, after, at) VALUES ('default', ?, 'u', '', 'add', 1, NULL, NULL, ?)",
                (rid, int(created.timestamp() * 1_000_000)),
            )
        mem.update(rid, text="an old fact, updated")
        hist = mem.history(rid)
        assert [h.op for h in hist] == ["add", "update"]
        assert hist[0].seq > 0 and hist[0].after is not None
        assert hist[0].after["text"] == "an old fact" and hist[0].at == created


def test_migration_0006_keys_existing_records_for_dedup(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    with Memory(f"sqlite:///{db}", embedder=HashEmbedder(16)) as mem:
        first = mem.add(["a fact of alice", "another fact"], user_id="alice")
        mem.add("a fact of alice", user_id="bob")
    as_revision_0005(db)
    with Memory(f"sqlite:///{db}", embedder=HashEmbedder(16)) as mem:
        again = mem.add("a  fact of alice", user_id="alice")[0]
        assert again.outcome == "deduplicated" and again.id == first[0].id
        assert mem.add("a fact of alice", user_id="carol")[0].outcome == "written"
        assert mem.count() == 4 and mem.doctor()["ok"]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] == SCHEMA_HEAD
        cols = conn.execute(
            "SELECT name FROM pragma_index_info('records_dedup') ORDER BY seqno"
        ).fetchall()
        assert [c[0] for c in cols] == ["namespace", "dedup"]


def test_migration_0007_gives_existing_keyword_rows_their_user_scope(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    with Memory(f"sqlite:///{db}", embedder=HashEmbedder(16)) as mem:
        alice = mem.add(
            [{"text": "alice grows tomatoes", "thread_id": "garden"}, "alice bakes bread"],
            user_id="alice",
        )
        bob = mem.add("bob grows tomatoes", user_id="bob")[0]
        mem.add("nobody grows tomatoes")
    as_revision_0006(db)
    with Memory(f"sqlite:///{db}", embedder=HashEmbedder(16)) as mem:
        assert mem.doctor()["ok"]
        hits = mem.search("tomatoes bread", mode="keyword", user_id="alice").hits
        assert {h.record.id for h in hits} == {r.id for r in alice}
        assert [h.record.id for h in mem.search("tomatoes", mode="keyword", user_id="bob")] == [
            bob.id
        ]
        assert len(mem.search("tomatoes", mode="keyword").hits) == 3
        in_thread = mem.search("tomatoes bread", mode="keyword", thread_id="garden").hits
        assert [h.record.id for h in in_thread] == [alice[0].id]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] == SCHEMA_HEAD


def test_migration_0012_gives_an_existing_file_its_key_tables(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    with Memory(f"sqlite:///{db}", embedder=HashEmbedder(16)) as mem:
        mem.add("kept across the upgrade")
    as_revision_0011(db)
    with Memory(f"sqlite:///{db}", embedder=HashEmbedder(16)) as mem:
        keys = KeyService.of(mem)
        made = keys.create("default", read_only=True)
        assert keys.authenticate(made.key).read_only
        assert mem.count() == 1
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] == SCHEMA_HEAD
    conn.close()


def test_migration_0021_moves_vectors_out_of_the_chunk_rows(tmp_path: Path) -> None:
    """A file whose vectors are inline in ``chunks`` opens with them in ``chunk_vectors``:
    the same bytes, searches and exports unchanged, and deletes take them along."""
    db = tmp_path / "old.db"
    texts = [f"fact number {i} about {w}" for i, w in enumerate(["tea", "rain", "maps"] * 5)]
    with Memory(f"sqlite:///{db}", embedder=HashEmbedder(16)) as mem:
        ids = [r.id for r in mem.add([{"text": t, "user_id": "u"} for t in texts])]
        before = [(h.record.id, h.score) for h in mem.search("rain maps", top_k=5)]
        mem.export(tmp_path / "before.jsonl")
    with sqlite3.connect(db) as conn:
        stored = dict(conn.execute("SELECT chunk_id, vector FROM chunk_vectors").fetchall())
    as_revision_0017(db)
    with sqlite3.connect(db) as conn:
        inline = dict(conn.execute("SELECT id, vector FROM chunks").fetchall())
    assert inline == stored and len(inline) == len(texts)
    with Memory(f"sqlite:///{db}", embedder=HashEmbedder(16)) as mem:
        with sqlite3.connect(db) as conn:
            columns = [r[1] for r in conn.execute("PRAGMA table_info(chunks)")]
            moved = dict(conn.execute("SELECT chunk_id, vector FROM chunk_vectors").fetchall())
        assert "vector" not in columns and moved == stored
        assert [(h.record.id, h.score) for h in mem.search("rain maps", top_k=5)] == before
        mem.export(tmp_path / "after.jsonl")
        assert _lines(tmp_path / "after.jsonl") == _lines(tmp_path / "before.jsonl")
        mem.delete(ids[0])
        with sqlite3.connect(db) as conn:
            left = conn.execute("SELECT count(*) FROM chunk_vectors").fetchone()[0]
            orphans = conn.execute(
                "SELECT count(*) FROM chunk_vectors v LEFT JOIN chunks c ON c.id = v.chunk_id "
                "WHERE c.id IS NULL"
            ).fetchone()[0]
        assert (left, orphans) == (len(texts) - 1, 0)


def _lines(path: Path) -> list[dict[str, object]]:
    """An export's lines without its header (which carries the time of the export)."""
    return [json.loads(line) for line in path.read_text().splitlines()[1:]]


def _chunk_pages(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM dbstat WHERE name = 'chunks'").fetchone()[0])


def test_migration_0022_repacks_the_chunk_rows_0021_left_in_place(tmp_path: Path) -> None:
    """0021's column drop left two chunk rows to a page; 0022 packs them, keeping ids, the
    id counter (a deleted last chunk's id is never reused), foreign keys and searches."""
    db = tmp_path / "old.db"
    words = ["tea", "rain", "maps", "owls"]
    texts = [f"fact number {i} about {words[i % 4]}" for i in range(400)]
    with Memory(f"sqlite:///{db}", embedder=HashEmbedder(384)) as mem:
        ids = [r.id for r in mem.add([{"text": t, "user_id": "u"} for t in texts])]
        mem.delete(ids[-1])  # the highest chunk id is gone; the counter keeps it
        before = [(h.record.id, h.score) for h in mem.search("rain owls", top_k=5)]
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT id, rid, ord, start, end FROM chunks ORDER BY id").fetchall()
        seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'chunks'").fetchone()[0]
        vectors = dict(conn.execute("SELECT chunk_id, vector FROM chunk_vectors").fetchall())
    assert seq > rows[-1][0]
    as_revision_0017(db)
    upgrade(db, "0021")
    left_in_place = _chunk_pages(db)  # the dropped column's room is still in every page
    with Memory(f"sqlite:///{db}", embedder=HashEmbedder(384)) as mem:
        assert _chunk_pages(db) * 10 < left_in_place
        with sqlite3.connect(db) as conn:
            assert (
                conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] == SCHEMA_HEAD
            )
            assert (
                conn.execute("SELECT id, rid, ord, start, end FROM chunks ORDER BY id").fetchall()
                == rows
            )
            assert dict(conn.execute("SELECT chunk_id, vector FROM chunk_vectors")) == vectors
            assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
            indexes = {r[1] for r in conn.execute("PRAGMA index_list(chunks)")}
            assert "chunks_rid" in indexes
            assert (
                conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'chunks'").fetchone()[0]
                == seq
            )
        assert [(h.record.id, h.score) for h in mem.search("rain owls", top_k=5)] == before
        new = mem.add("a new fact about herons", user_id="u")[0]
        mem.delete(ids[0])
        with sqlite3.connect(db) as conn:
            new_chunk = conn.execute(
                "SELECT c.id FROM chunks c JOIN records r ON r.rid = c.rid WHERE r.id = ?",
                (new.id,),
            ).fetchone()[0]
            orphans = conn.execute(
                "SELECT count(*) FROM chunk_vectors v LEFT JOIN chunks c ON c.id = v.chunk_id "
                "WHERE c.id IS NULL"
            ).fetchone()[0]
            left = conn.execute("SELECT count(*) FROM chunk_vectors").fetchone()[0]
        assert new_chunk > seq
        assert (orphans, left) == (0, len(rows))  # one deleted with its record, one added
