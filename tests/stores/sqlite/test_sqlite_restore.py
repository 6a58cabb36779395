"""Restoring a backup written by an older or a newer engramdb."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlite_old_revisions import as_revision_0001

from engramdb import HashEmbedder, Memory, SchemaTooNewError
from engramdb.migrations import SCHEMA_HEAD
from engramdb.ops.idempotency import IdempotencyService


def test_restore_of_a_backup_from_an_older_schema_upgrades_a_copy(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    backup = tmp_path / "old-backup.db"
    with Memory(url, embedder=HashEmbedder(64)) as mem:
        mem.add("kept in the old backup", id="old")
        mem.backup(backup)
        mem.add("written after the backup", id="new")
    as_revision_0001(backup)
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


def test_restore_empties_the_idempotency_keys(tmp_path: Path) -> None:
    """Neither the live answers (the restore may undo their writes) nor the backup's rows
    (a claim the snapshot caught half-way) survive a restore: a retry runs again."""
    with Memory(f"sqlite:///{tmp_path / 'live.db'}", embedder=HashEmbedder(64)) as mem:
        keys = IdempotencyService.of(mem, ttl_s=3600, lease_s=600)
        assert keys is not None
        assert keys.claim("in-backup") is None
        keys.finish("in-backup", 201, [], b'{"n": 1}')
        assert keys.claim("running-at-backup") is None
        mem.backup(tmp_path / "b.db")
        assert keys.claim("after-backup") is None
        mem.add("undone by the restore", id="undone")
        keys.finish("after-backup", 201, [], b'{"n": 2}')
        mem.restore(tmp_path / "b.db")
        assert len(mem.get_many(["undone"])) == 0
        for key in ("in-backup", "running-at-backup", "after-backup"):
            assert keys.state(key) is None, key
        assert keys.claim("after-backup") is None  # the retried write runs again
