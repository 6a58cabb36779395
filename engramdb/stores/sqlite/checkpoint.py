"""Moving WAL frames into the database file off the writer's path.

In WAL mode a commit appends the pages it changed to ``-wal`` and fsyncs that; copying them
into the database file (a checkpoint, one more write and fsync of every page) is separate
work. SQLite's automatic checkpoint runs it inside the commit that crosses
``wal_autocheckpoint`` pages, so with batches of 1,000 records (~1,500 pages each) nearly
every batch paid for two writes of its pages before returning. The writer connection turns
the automatic checkpoint off and pokes this thread after each commit instead; it runs
PASSIVE checkpoints on its own connection (which never block the writer or readers) while
the caller goes on. Durability is unchanged: a commit is durable once its WAL frames are
fsynced, which still happens before it returns.

The store keeps its hard bound on the log (``Connections._bound_wal``, a TRUNCATE checkpoint
by the writer when ``-wal`` passes ``WAL_LIMIT``), so a checkpointer that falls behind or
fails costs speed, never space.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import suppress

from engramdb.stores.background import BackgroundWorker

IDLE_S = 5.0  # the thread ends after this long without a commit (started again by the next)
# At most one checkpoint per this interval after a short log. Each checkpoint writes every
# page changed since the last one and fsyncs the database file, so one per small commit
# (single adds) would rewrite hot pages (index roots, the FTS structure) and fsync far more
# often than SQLite's own every-1,000-pages policy.
MIN_INTERVAL_S = 0.2
# A log of at least this many frames (4 MB at 8 KB pages) at checkpoint time means big
# commits (a bulk-ingest batch writes well over this many); then
# the next checkpoint runs as soon as a commit asks, while the caller prepares its next
# batch. Resting there too let batches pile up faster than checkpoints copied them: the log
# was never fully copied when the next write began, so the writer could not restart it from
# its start, and it grew until the writer's forced TRUNCATE at WAL_LIMIT (docs/tuning.md).
BULK_FRAMES = 512


class Checkpointer(BackgroundWorker):
    """One daemon thread per store process that checkpoints after commits (``kick``)."""

    thread_name = "engramdb-checkpoint"

    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        super().__init__()
        self._connect = connect
        self.runs = 0  # checkpoints completed (stats and tests)
        self.error: BaseException | None = None  # the last failure (the store goes on)

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while not self.stopped:
                if not self.wake.wait(timeout=IDLE_S):
                    return
                self.wake.clear()
                if self.stopped:
                    return
                try:
                    if conn is None:
                        conn = self._connect()
                    row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.runs += 1
                    if row is None or row[1] < BULK_FRAMES:
                        self.halt.wait(MIN_INTERVAL_S)  # commits meanwhile wait for the next
                except sqlite3.Error as exc:  # busy, or I/O: the writer's bound still holds
                    self.error = exc
                    if conn is not None:
                        with suppress(sqlite3.Error):
                            conn.close()
                    conn = None
        finally:
            if conn is not None:
                with suppress(sqlite3.Error):
                    conn.close()
