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

The store keeps its hard bound on the log (``SQLiteStore._bound_wal``, a TRUNCATE checkpoint
by the writer when ``-wal`` passes ``WAL_LIMIT``), so a checkpointer that falls behind or
fails costs speed, never space.
"""

from __future__ import annotations

import atexit
import sqlite3
import threading
import weakref
from collections.abc import Callable
from contextlib import suppress

IDLE_S = 5.0  # the thread ends after this long without a commit (started again by the next)
# At most one checkpoint per this interval. Each checkpoint writes every page changed since
# the last one and fsyncs the database file, so one per small commit (single adds) would
# rewrite hot pages (index roots, the FTS structure) and fsync far more often than SQLite's
# own every-1,000-pages policy; a 1,000-record batch commits every ~50 ms, so the WAL holds
# a few batches (well under WAL_LIMIT) between checkpoints.
MIN_INTERVAL_S = 0.2


class Checkpointer:
    """One daemon thread per store process that checkpoints after commits."""

    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self.runs = 0  # checkpoints completed (stats and tests)
        self.error: BaseException | None = None  # the last failure (the store goes on)
        ref = weakref.ref(self)
        self._exit_hook = lambda: _stop_if_alive(ref)
        atexit.register(self._exit_hook)

    def poke(self) -> None:
        """Ask for a checkpoint soon (called after each commit; cheap)."""
        if self._stopped:
            return
        self._wake.set()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="engramdb-checkpoint", daemon=True
                )
                self._thread.start()

    def stop(self) -> None:
        """Finish the checkpoint in progress, if any, and end the thread."""
        self._stopped = True
        self._halt.set()
        self._wake.set()
        atexit.unregister(self._exit_hook)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while not self._stopped:
                if not self._wake.wait(timeout=IDLE_S):
                    return
                self._wake.clear()
                if self._stopped:
                    return
                try:
                    if conn is None:
                        conn = self._connect()
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.runs += 1
                    self._halt.wait(MIN_INTERVAL_S)  # commits meanwhile wait for the next
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


def _stop_if_alive(ref: weakref.ref[Checkpointer]) -> None:
    checkpointer = ref()
    if checkpointer is not None:
        checkpointer.stop()
