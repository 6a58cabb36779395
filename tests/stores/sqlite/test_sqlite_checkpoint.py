"""The checkpointer: WAL frames reach the database file off the writer's path."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from engramdb import HashEmbedder, Memory


def test_checkpoints_run_off_the_write_path(tmp_path: Path) -> None:
    """Commits leave the checkpoint to the store's checkpointer thread: the writer's automatic
    checkpoint is off, yet the database file alone (without ``-wal``) soon holds every
    committed record, and closing the store ends the thread."""
    import shutil
    import time

    db = tmp_path / "a.db"
    mem = Memory(f"sqlite:///{db}", embedder=HashEmbedder(16))
    store = mem._engine.store
    checkpointer = store._db.checkpointer
    try:
        assert store._db.writer().execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
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
