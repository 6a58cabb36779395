"""PostgreSQL upkeep: backup and restore, the doctor, and erasure down to the data files."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from engramdb import HashEmbedder, Memory
from engramdb.ops.idempotency import IdempotencyService

pytestmark_pg = pytest.mark.postgres


@pytestmark_pg
def test_backup_and_restore_give_back_the_same_store(pg: Memory, tmp_path: Path) -> None:
    a = pg.add(["alpha fact", "beta fact"], user_id="u", metadata={"big": 1.2e16})
    pg.update(a[0].id or "", text="alpha fact, revised")
    pg.delete(a[1].id or "")
    pg.add_messages("th", [{"role": "user", "content": "hello there"}], user_id="u")
    pg.set_slots("th", {"goal": "test"})
    before = (
        [r.to_dict() for r in pg.list(limit=100, include_expired=True).records],
        pg.history(a[1].id or ""),
        pg.events("th"),
        pg.get_slots("th"),
    )
    path = tmp_path / "pg.backup"
    pg.backup(path)
    pg.add("written after the backup")
    pg.forget(user_id="u")
    pg.restore(path)
    after = (
        [r.to_dict() for r in pg.list(limit=100, include_expired=True).records],
        pg.history(a[1].id or ""),
        pg.events("th"),
        pg.get_slots("th"),
    )
    assert after == before
    assert [h.record.id for h in pg.search("alpha revised", user_id="u")][0] == a[0].id
    # New writes after a restore get fresh internal ids (sequences were reset past the max).
    assert pg.add("after restore")[0].outcome == "written"
    assert pg.doctor()["ok"]


@pytestmark_pg
def test_doctor_finds_and_repairs_derived_indexes(pg: Memory, postgres_url: str) -> None:
    pg.add(["one small fact", "another small fact"])
    assert pg.doctor()["ok"]
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE chunks SET fts = to_tsvector('simple', 'garbage')")
        conn.execute("DROP INDEX chunks_hnsw")
    report = pg.doctor()
    assert not report["ok"] and len(report["problems"]) == 2
    repaired = pg.doctor(repair=True)
    assert repaired["ok"] and len(repaired["repaired"]) == 2
    assert pg.doctor()["ok"]
    assert len(pg.search("another", mode="keyword")) == 1


def _schema_files_holding(url: str, needle: str) -> list[str]:
    """Relations of the store's schema (tables, indexes, their TOAST) whose data files hold
    ``needle``, read by the server after a CHECKPOINT (superuser: ``pg_read_binary_file``)."""
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CHECKPOINT")
        rels = c.execute(
            "WITH s AS (SELECT c.oid, c.reltoastrelid FROM pg_class c "
            "WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'i')), "
            "t AS (SELECT reltoastrelid AS oid FROM s WHERE reltoastrelid <> 0) "
            "SELECT oid::regclass::text, pg_relation_filepath(oid) FROM ("
            "SELECT oid FROM s UNION SELECT oid FROM t "
            "UNION SELECT indexrelid FROM pg_index WHERE indrelid IN (SELECT oid FROM t)) r"
        ).fetchall()
        assert any(name == "records" for name, _ in rels)
        return [
            name
            for name, path in rels
            if path is not None
            and c.execute(
                "SELECT position(%s::bytea IN pg_read_binary_file(%s)) > 0",
                (needle.encode(), path),
            ).fetchone()[0]
        ]


def test_forget_compact_leaves_no_trace_in_the_data_files(postgres_url: str) -> None:
    """Plain ``forget`` vacuums, which frees the dead rows' space without zeroing it;
    ``compact=True`` rewrites the tables and indexes, and the erased token is gone from
    every data file of the store (WAL segments are out of its reach and not checked)."""
    secret, kept = "zqxw7731", "ykvb4418"
    mem = Memory(postgres_url, embedder=HashEmbedder(16))
    try:
        mem.add([{"text": f"bob note {i} {kept}", "user_id": "bob"} for i in range(100)])
        mem.add([{"text": f"alice told {i} {secret}", "user_id": "alice"} for i in range(50)])
        assert "records" in _schema_files_holding(postgres_url, secret)
        assert mem.forget(user_id="alice")["records"] == 50
        assert "records" in _schema_files_holding(postgres_url, secret)  # freed, not zeroed
        counts = mem.forget(user_id="alice", compact=True)
        assert counts["records"] == 0 and counts["bytes_freed"] > 0
        assert _schema_files_holding(postgres_url, secret) == []
        assert "records" in _schema_files_holding(postgres_url, kept)  # the check can see
        assert mem.count(user_id="bob") == 100
    finally:
        mem.close()


@pytestmark_pg
def test_restore_empties_the_idempotency_keys(pg: Memory, tmp_path: Path) -> None:
    """A backup holds no keys, and the live answers may be for writes the restore undid:
    after it, a retried write runs again instead of replaying their answer."""
    keys = IdempotencyService.of(pg, ttl_s=3600, lease_s=600)
    assert keys is not None
    assert keys.claim("before-backup") is None
    keys.finish("before-backup", 201, [], b'{"n": 1}')
    pg.backup(tmp_path / "pg.backup")
    assert keys.claim("after-backup") is None
    pg.add("undone by the restore", id="undone")
    keys.finish("after-backup", 201, [], b'{"n": 2}')
    pg.restore(tmp_path / "pg.backup")
    assert len(pg.get_many(["undone"])) == 0
    for key in ("before-backup", "after-backup"):
        assert keys.state(key) is None, key
    assert keys.claim("after-backup") is None  # the retried write runs again
