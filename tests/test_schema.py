"""Schema versioning: Alembic is the one migration mechanism; refusals are clear."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from engramdb import HashEmbedder, Memory, SchemaError, SchemaTooNewError, Settings
from engramdb.migrations import SCHEMA_HEAD, SCHEMA_REVISIONS


def test_revision_list_matches_alembic_scripts() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(Path("engramdb/migrations").resolve()))
    script = ScriptDirectory.from_config(cfg)
    ordered = [rev.revision for rev in reversed(list(script.walk_revisions()))]
    assert ordered == SCHEMA_REVISIONS
    assert script.get_current_head() == SCHEMA_HEAD


def test_fresh_file_is_migrated_to_head(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    Memory(f"sqlite:///{db}", embedder=HashEmbedder(16)).close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] == SCHEMA_HEAD


def test_new_files_get_8k_pages_and_old_files_keep_theirs(tmp_path: Path) -> None:
    from engramdb.stores.sqlite.store import PAGE_SIZE

    new, old = tmp_path / "new.db", tmp_path / "old.db"
    with sqlite3.connect(old) as conn:  # a file made with SQLite's default 4 KB pages
        conn.execute("PRAGMA page_size = 4096")
        conn.execute("VACUUM")
    for path in (new, old):
        with Memory(f"sqlite:///{path}", embedder=HashEmbedder(16)) as m:
            m.add([f"fact {i}" for i in range(50)], user_id="u")
            assert m.search("fact 7", user_id="u", top_k=1)[0].record.text == "fact 7"
        with sqlite3.connect(path) as conn:
            size = conn.execute("PRAGMA page_size").fetchone()[0]
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert size == (PAGE_SIZE if path == new else 4096)
    assert PAGE_SIZE == 8192


def test_file_from_newer_version_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    Memory(f"sqlite:///{db}", embedder=HashEmbedder(16)).close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(SchemaTooNewError, match="9999"):
        Memory(f"sqlite:///{db}", embedder=HashEmbedder(16))


def test_auto_migrate_off_refuses_an_out_of_date_file(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    settings = Settings(auto_migrate=False)
    with pytest.raises(SchemaError, match="db upgrade"):
        Memory(f"sqlite:///{db}", embedder=HashEmbedder(16), settings=settings)


def _open_and_add(path: str, n: int) -> None:
    with Memory(f"sqlite:///{path}", embedder=HashEmbedder(16)) as mem:
        mem.add(f"record from opener {n}")


def test_concurrent_first_opens_apply_the_schema_once(tmp_path: Path) -> None:
    """M5: several processes opening a fresh file at once all succeed, no 'already exists'."""
    db = str(tmp_path / "race.db")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_open_and_add, args=(db, i)) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    with Memory(f"sqlite:///{db}", embedder=HashEmbedder(16)) as mem:
        assert mem.count() == 4


def _drop_value_index(db: Path, kind: str, revision: str) -> None:
    """Drop record_<kind> and its two triggers, and label the file ``revision``."""
    with sqlite3.connect(db) as conn:
        for trigger in ("update", "delete"):
            conn.execute(f"DROP TRIGGER records_{kind}_{trigger}")
        conn.execute(f"DROP TABLE record_{kind}")
        conn.execute(f"UPDATE alembic_version SET version_num = '{revision}'")


def _as_revision_0009(db: Path) -> None:
    """Put a file back in the shape revision 0009 left it in (no metadata index)."""
    _drop_value_index(db, "meta", "0009")


def _as_revision_0007(db: Path) -> None:
    """Put a file back in the shape revision 0007 left it in (no tag index)."""
    _as_revision_0009(db)
    _drop_value_index(db, "tags", "0007")


def _as_revision_0006(db: Path) -> None:
    """Put a file back in the shape revision 0006 left it in (keyword rows without scope)."""
    _as_revision_0007(db)
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE VIRTUAL TABLE old_fts USING fts5("
            "body, tokenize = 'porter unicode61 remove_diacritics 2')"
        )
        conn.execute("INSERT INTO old_fts(rowid, body) SELECT rowid, body FROM chunks_fts")
        conn.execute("DROP TABLE chunks_fts")
        conn.execute("ALTER TABLE old_fts RENAME TO chunks_fts")
        conn.execute("UPDATE alembic_version SET version_num = '0006'")


def _as_revision_0005(db: Path) -> None:
    """Put a file back in the shape revision 0005 left it in (dedup on six columns)."""
    _as_revision_0006(db)
    with sqlite3.connect(db) as conn:
        conn.execute("DROP INDEX records_dedup")
        conn.execute("ALTER TABLE records DROP COLUMN dedup")
        conn.execute(
            "CREATE UNIQUE INDEX records_dedup ON records("
            "namespace, user_id, agent_id, thread_id, type, content_hash)"
        )
        conn.execute("UPDATE alembic_version SET version_num = '0005'")


def _as_revision_0001(path: Path) -> None:
    """Turn a head-schema file into what engramdb at revision 0001 wrote (0002 only adds)."""
    _as_revision_0005(path)
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE namespace_generations")
        conn.execute("DROP INDEX records_ns_expires")
        conn.execute("UPDATE alembic_version SET version_num = '0001'")


def test_restore_of_a_backup_from_an_older_schema_upgrades_a_copy(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    backup = tmp_path / "old-backup.db"
    with Memory(url, embedder=HashEmbedder(64)) as mem:
        mem.add("kept in the old backup", id="old")
        mem.backup(backup)
        mem.add("written after the backup", id="new")
    _as_revision_0001(backup)
    before = backup.read_bytes()
    with Memory(url, embedder=HashEmbedder(64)) as mem:
        mem.restore(backup)
        assert [r.id for r in mem.list()] == ["old"]
        assert [h.record.id for h in mem.search("old backup", mode="keyword")] == ["old"]
        mem.add("after the restore", id="later")  # the restored content is at head: writable
        assert mem.count() == 2
    assert backup.read_bytes() == before  # the backup itself is never modified
    with sqlite3.connect(tmp_path / "live.db") as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] == SCHEMA_HEAD


def test_restore_refuses_a_backup_from_a_newer_engramdb(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    backup = tmp_path / "future.db"
    with Memory(url, embedder=HashEmbedder(64)) as mem:
        mem.add("current content", id="cur")
        mem.backup(backup)
    with sqlite3.connect(backup) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'ffff'")
    with Memory(url, embedder=HashEmbedder(64)) as mem:
        with pytest.raises(SchemaTooNewError, match="ffff"):
            mem.restore(backup)
        assert [r.id for r in mem.list()] == ["cur"]  # nothing replaced


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
    _as_revision_0005(db)
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


def test_doctor_finds_and_repairs_a_stale_dedup_key(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    with Memory(f"sqlite:///{db}", embedder=HashEmbedder(16)) as mem:
        rid = mem.add("a fact", user_id="u")[0].id
        with sqlite3.connect(db) as conn:  # e.g. a row written by another tool
            conn.execute("UPDATE records SET dedup = x'00' WHERE id = ?", (rid,))
        report = mem.doctor()
        assert not report["ok"] and any("dedup key" in p for p in report["problems"])
        assert mem.doctor(repair=True)["ok"] and mem.doctor()["ok"]
        assert mem.add("a fact", user_id="u")[0].outcome == "deduplicated"
        # A stale key lets a duplicate in; the repair then cannot succeed and says why.
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE records SET dedup = x'00' WHERE id = ?", (rid,))
        assert mem.add("a fact", user_id="u")[0].outcome == "written"
        failed = mem.doctor(repair=True)
        assert not failed["ok"]
        assert any("same text" in p for p in failed["problems"]), failed["problems"]
        assert mem.count() == 2


def test_checkpoints_run_off_the_write_path(tmp_path: Path) -> None:
    """Commits leave the checkpoint to the store's checkpointer thread: the writer's automatic
    checkpoint is off, yet the database file alone (without ``-wal``) soon holds every
    committed record, and closing the store ends the thread."""
    import shutil
    import time

    db = tmp_path / "a.db"
    mem = Memory(f"sqlite:///{db}", embedder=HashEmbedder(16))
    store = mem._engine.store
    checkpointer = store._checkpointer
    try:
        assert store._writer_conn().execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        mem.add([f"fact number {i}" for i in range(500)])
        copy = tmp_path / "main-file-only.db"

        def records_in_main_file() -> int:
            shutil.copy(db, copy)  # may catch a checkpoint half-way: then look again
            try:
                with sqlite3.connect(copy) as conn:
                    return int(conn.execute("SELECT count(*) FROM records").fetchone()[0])
            except sqlite3.DatabaseError:
                return -1

        deadline = time.monotonic() + 30
        while records_in_main_file() != 500 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert records_in_main_file() == 500
        assert checkpointer.runs >= 1 and checkpointer.error is None
    finally:
        mem.close()
    assert checkpointer.thread is not None and not checkpointer.thread.is_alive()


@pytest.mark.parametrize("bulk", [False, True])
def test_checkpoints_wait_between_small_commits_not_big_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bulk: bool
) -> None:
    """After a checkpoint of a short log the checkpointer rests ``MIN_INTERVAL_S`` (here
    60 s) before the next; after one of a log of ``BULK_FRAMES`` or more it runs again as
    soon as the next commit asks, so bulk ingest's log is copied between batches."""
    import time

    from engramdb.stores.sqlite import checkpoint as sqlite_checkpoint

    monkeypatch.setattr(sqlite_checkpoint, "MIN_INTERVAL_S", 60.0)
    monkeypatch.setattr(sqlite_checkpoint, "BULK_FRAMES", 64)
    db = tmp_path / "a.db"
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("PRAGMA journal_mode = WAL")
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    writer.execute("CREATE TABLE t (x BLOB)")
    writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # an empty log
    checkpointer = sqlite_checkpoint.Checkpointer(lambda: sqlite3.connect(db))

    def commit() -> None:  # ~250 pages of 4 KB, or one
        rows = 1000 if bulk else 1
        writer.executemany("INSERT INTO t VALUES (?)", [(os.urandom(1000),)] * rows)
        checkpointer.kick()

    def runs_reach(n: int, within_s: float) -> bool:
        deadline = time.monotonic() + within_s
        while checkpointer.runs < n and time.monotonic() < deadline:
            time.sleep(0.02)
        return checkpointer.runs >= n

    try:
        commit()
        assert runs_reach(1, 30)
        commit()
        if bulk:
            assert runs_reach(2, 30)  # well before the 60 s rest
        else:
            assert not runs_reach(2, 1.0)  # resting: this commit waits for the next turn
        assert checkpointer.error is None
    finally:
        checkpointer.stop()  # ends the rest early
        writer.close()
    assert checkpointer.thread is not None and not checkpointer.thread.is_alive()


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every SQL statement the SQLite stores opened from now on run, values filled in."""
    from engramdb.stores.sqlite import SQLiteStore

    seen: list[str] = []
    connect = SQLiteStore._connect

    def traced(self: SQLiteStore, readonly: bool) -> sqlite3.Connection:
        conn = connect(self, readonly)
        conn.set_trace_callback(seen.append)
        return conn

    monkeypatch.setattr(SQLiteStore, "_connect", traced)
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


def test_migration_0007_gives_existing_keyword_rows_their_user_scope(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    with Memory(f"sqlite:///{db}", embedder=HashEmbedder(16)) as mem:
        alice = mem.add(
            [{"text": "alice grows tomatoes", "thread_id": "garden"}, "alice bakes bread"],
            user_id="alice",
        )
        bob = mem.add("bob grows tomatoes", user_id="bob")[0]
        mem.add("nobody grows tomatoes")
    _as_revision_0006(db)
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


def test_doctor_finds_and_repairs_a_stale_keyword_scope(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    with Memory(f"sqlite:///{db}", embedder=HashEmbedder(16)) as mem:
        rid = mem.add("carol plants roses", user_id="carol")[0].id
        with sqlite3.connect(db) as conn:  # e.g. a row written by another tool
            conn.execute("UPDATE chunks_fts SET scope = 'qq'")
        assert mem.search("roses", mode="keyword", user_id="carol").hits == []
        report = mem.doctor()
        assert not report["ok"] and any("user scope" in p for p in report["problems"])
        assert mem.doctor(repair=True)["ok"] and mem.doctor()["ok"]
        hits = mem.search("roses", mode="keyword", user_id="carol").hits
        assert [h.record.id for h in hits] == [rid]


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
    _as_revision_0007(db)
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


def test_doctor_finds_and_repairs_a_stale_tag_index(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    with Memory(f"sqlite:///{db}", embedder=HashEmbedder(16)) as mem:
        rid = mem.add("dave keeps bees", tags=["hobby"])[0].record.id
        with sqlite3.connect(db) as conn:  # e.g. rows written by a tool without the triggers
            conn.execute("DELETE FROM record_tags")
            conn.execute("INSERT INTO record_tags VALUES ('default', 'ghost', 99)")
        assert mem.list(tags=["hobby"]).records == []
        report = mem.doctor()
        assert not report["ok"]
        assert any("tag index has 2 rows" in p for p in report["problems"]), report
        assert mem.doctor(repair=True)["ok"] and mem.doctor()["ok"]
        assert [r.id for r in mem.list(tags=["hobby"]).records] == [rid]


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
    _as_revision_0009(db)
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


def test_doctor_finds_and_repairs_a_stale_metadata_index(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    with Memory(f"sqlite:///{db}", embedder=HashEmbedder(16)) as mem:
        rid = mem.add("dave keeps bees", metadata={"hobby": "bees"})[0].record.id
        with sqlite3.connect(db) as conn:  # e.g. rows written by a tool without the triggers
            conn.execute("DELETE FROM record_meta")
            conn.execute("INSERT INTO record_meta VALUES ('default', 'ghost', 'x', 99)")
        assert mem.list(filters={"metadata.hobby": "bees"}).records == []
        report = mem.doctor()
        assert not report["ok"]
        assert any("metadata index has 2 rows" in p for p in report["problems"]), report
        assert mem.doctor(repair=True)["ok"] and mem.doctor()["ok"]
        assert [r.id for r in mem.list(filters={"metadata.hobby": "bees"}).records] == [rid]


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
