"""Connections to one SQLite file: the writer, per-thread readers, and write transactions.

Concurrency (datasette's pattern): one writer connection per process behind a lock, every
write in ``BEGIN IMMEDIATE`` with a busy timeout, read-only reader connections per thread.
Several processes may share one file. After ``fork`` the child opens new connections (the
inherited ones are abandoned, never used or closed, as SQLite requires).

Every part of :class:`~engramdb.stores.sqlite.SQLiteStore` reads and writes through the one
:class:`Connections` the store makes: every write transaction is :meth:`Connections.write`,
and what cannot run inside one (a restore, ``VACUUM``) holds the writer's lock instead.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from engramdb.deadline import expired, sqlite_progress, timeout_error
from engramdb.errors import BusyError, EngramError, StoreError
from engramdb.stores.rows import BUMP_GENERATION_SQL
from engramdb.stores.sqlite.checkpoint import Checkpointer
from engramdb.stores.sqlite.keys import dedup_digest, scope_text
from engramdb.stores.sqlite.schema import ensure_schema

WAL_LIMIT = 64 * 1024 * 1024  # bytes of -wal before a TRUNCATE checkpoint is forced
# Page size of a new file. A chunk row (a 384-d vector is 1.5 KB) fills 4 KB pages badly
# (two rows a page, 0.9 KB left over) and every page a batch touches is written to the WAL
# and fsynced at commit. 8 KB ingests about as fast as larger pages (docs/tuning.md) and
# keeps single-row reads small.
PAGE_SIZE = 8192
# Set on every writing connection, because SQLite's built-in default depends on how it was
# compiled. Debian's build has it on, and then every page freed in a write is zeroed and
# written to the WAL, in bulk ingest mostly FTS5 segment pages freed by its merges. FAST
# zeroes deleted content only in pages a write changes anyway. ``forget`` turns it fully
# on for its own transaction (nothing it erased may stay in a free page).
SECURE_DELETE = "FAST"
BUMP_GENERATION = BUMP_GENERATION_SQL.format(p="?")
_abandoned: list[sqlite3.Connection] = []  # connections inherited across fork: never touched
log = logging.getLogger("engramdb.store")
# SQLite virtual-machine steps between two checks of a read's time budget.
PROGRESS_STEPS = 20_000
# Primary result codes whose message is SQLite's fixed description of the condition (e.g.
# "disk I/O error"); any other message may quote the statement (a syntax error, a missing
# column, "Expression tree is too large") and is logged, never returned.
_SAFE_CODES = {
    sqlite3.SQLITE_PERM,
    sqlite3.SQLITE_NOMEM,
    sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_CORRUPT,
    sqlite3.SQLITE_FULL,
    sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_NOTADB,
}


def translate(exc: sqlite3.Error, doing: str) -> EngramError:
    """The engramdb error for a SQLite error raised while ``doing`` something.

    The message keeps SQLite's text only for the conditions whose text is fixed (I/O,
    corruption, a full disk...); SQL text never leaves the process: it goes to the log.
    """
    msg = str(exc)
    if "locked" in msg or "busy" in msg:
        return BusyError(f"database is busy while {doing}: {msg}")
    code = getattr(exc, "sqlite_errorcode", None)
    if code == sqlite3.SQLITE_INTERRUPT and expired():
        return timeout_error(doing)
    if code is not None and code & 0xFF in _SAFE_CODES:
        return StoreError(f"storage failed while {doing}: {msg}")
    name = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
    log.error("SQLite error while %s: %s", doing, msg)
    return StoreError(f"storage failed while {doing} ({name}; the server log has the details)")


class Connections:
    """This process's connections to the file, and the one way to write to it.

    ``path`` ``:memory:`` makes a file in a temporary folder, removed on :meth:`close`. The
    file is brought to the head schema on open (``auto_migrate``), or refused.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "FULL",
        busy_timeout_ms: int = 10_000,
        mmap_mb: int = 2048,
        auto_migrate: bool = True,
    ) -> None:
        self._temp_dir: str | None = None
        if str(path) == ":memory:":
            self._temp_dir = tempfile.mkdtemp(prefix="engramdb-mem-")
            path = Path(self._temp_dir) / "engram.db"
        self.path = Path(path).resolve()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        self.mmap_bytes = mmap_mb * 1024 * 1024
        self.lock = threading.RLock()  # the writer's: held through each write transaction
        self._local = threading.local()
        self._pid = os.getpid()
        self._writer: sqlite3.Connection | None = None
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._probe: sqlite3.Connection | None = None
        self._probe_lock = threading.Lock()
        self.closed = False
        self._fork_hooks: list[Callable[[], None]] = []
        self._wal_path = self.path.with_name(self.path.name + "-wal")
        self.checkpointer = self._new_checkpointer()
        try:
            ensure_schema(self.path, self.writer(), auto_migrate)
        except sqlite3.Error as exc:
            raise translate(exc, "opening the store") from exc

    def connect(self, readonly: bool) -> sqlite3.Connection:
        """Open a new connection to the file with the store's pragmas and SQL functions."""
        conn = sqlite3.connect(
            str(self.path),
            timeout=self.busy_timeout_ms / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        if not readonly:
            # Takes effect only on a new, empty file (before WAL mode); an existing file
            # keeps the page size it was made with.
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA secure_delete = {SECURE_DELETE}")
        conn.execute(f"PRAGMA synchronous = {'FULL' if self.synchronous == 'FULL' else 'NORMAL'}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA cache_size = -32000")
        conn.create_function("engram_dedup", 5, dedup_digest, deterministic=True)
        conn.create_function("engram_scope", 3, scope_text, deterministic=True)
        if readonly:
            # A search locates its candidates' records by rowid, page by page across the
            # records table: through a mapping each page is read in place, without the
            # system call and copy into the connection's page cache a pread costs. Only
            # readers map: writes still go through the file, so durability is unchanged.
            conn.execute(f"PRAGMA mmap_size = {self.mmap_bytes}")
            conn.execute("PRAGMA query_only = ON")
            # Reads honour the caller's time budget (engramdb.deadline); writes never stop
            # half way for it.
            conn.set_progress_handler(sqlite_progress, PROGRESS_STEPS)
        return conn

    def after_fork(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` in a forked child before its first use of the store.

        For state that must not cross a fork (a lock another thread may hold, a worker
        thread that does not exist in the child).
        """
        self._fork_hooks.append(hook)

    def in_owner(self) -> bool:
        """True in the process that opened the connections (not in a forked child)."""
        return os.getpid() == self._pid

    def _check_fork(self) -> None:
        if os.getpid() != self._pid:
            # Inherited connections must not be used or closed in the child.
            if self._writer is not None:
                _abandoned.append(self._writer)
            _abandoned.extend(self._readers)
            if self._probe is not None:
                _abandoned.append(self._probe)
            self._writer = None
            self._readers = []
            self._probe = None
            self._probe_lock = threading.Lock()
            self._local = threading.local()
            self.lock = threading.RLock()
            self._pid = os.getpid()
            self.checkpointer = self._new_checkpointer()
            for hook in self._fork_hooks:
                hook()

    def _new_checkpointer(self) -> Checkpointer:
        """This process's checkpointer (a forked child makes its own), on its own connection."""
        return Checkpointer(lambda: self.connect(readonly=False))

    def writer(self) -> sqlite3.Connection:
        """This process's writer connection (opened on first use, again after a failure)."""
        self._check_fork()
        if self.closed:
            raise StoreError("the store is closed")
        if self._writer is None:
            self._writer = self.connect(readonly=False)
            # Checkpoints run on the checkpointer's thread, not inside commits.
            self._writer.execute("PRAGMA wal_autocheckpoint = 0")
        return self._writer

    def reader(self) -> sqlite3.Connection:
        """This thread's read-only connection (opened on first use).

        Raises:
            QueryTimeoutError: the read's time budget is already used up.
        """
        if expired():
            raise timeout_error("reading")
        self._check_fork()
        if self.closed:
            raise StoreError("the store is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self.connect(readonly=True)
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def discard_writer(self) -> None:
        """Drop the writer connection; the next write opens a new one.

        After an I/O error never retry on the same handle (fsyncgate).
        """
        if self._writer is not None:
            try:
                self._writer.close()
            except sqlite3.Error:
                _abandoned.append(self._writer)
            self._writer = None

    def reset_writer_pragma(self, pragma: str) -> None:
        """Run ``PRAGMA {pragma}`` on the writer if it is open (not opening one for it)."""
        if self._writer is not None:
            self._writer.execute(f"PRAGMA {pragma}")

    @contextmanager
    def write(self, doing: str, bump: Iterable[str] = ()) -> Iterator[sqlite3.Connection]:
        """One write transaction: BEGIN IMMEDIATE, COMMIT on success, ROLLBACK on any error.

        ``bump``: namespaces whose write generation (``generation``) rises in the same
        transaction, just before COMMIT (``''`` is the store-wide generation); the cache tier
        never serves an entry tagged with an older generation.
        """
        with self.lock:
            try:
                conn = self.writer()
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                self.discard_writer()
                raise translate(exc, doing) from exc
            try:
                yield conn
            except BaseException as exc:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    self.discard_writer()
                if isinstance(exc, sqlite3.Error):
                    self.discard_writer()
                    raise translate(exc, doing) from exc
                raise
            try:
                if bump:
                    conn.executemany(BUMP_GENERATION, [(ns,) for ns in sorted(set(bump))])
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                self.discard_writer()
                raise translate(exc, doing) from exc
            self.checkpointer.kick()
            self._bound_wal(conn)

    def _bound_wal(self, conn: sqlite3.Connection) -> None:
        """Truncate the WAL once it passes WAL_LIMIT (a long reader can starve checkpoints).

        SQLite's automatic checkpoint is PASSIVE and cannot reset the log while a reader holds
        an old snapshot; our own reads are short transactions, so a TRUNCATE checkpoint after
        a commit usually succeeds and keeps ``-wal`` bounded. Failure here is not an error:
        the commit is already durable.
        """
        try:
            size = os.stat(self._wal_path).st_size
        except OSError:
            return
        if size > WAL_LIMIT:
            with suppress(sqlite3.Error):
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    @contextmanager
    def read(self, doing: str) -> Iterator[sqlite3.Connection]:
        """A consistent read snapshot on this thread's reader connection."""
        conn = self.reader()
        try:
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise translate(exc, doing) from exc

    def query(self, doing: str, sql: str, args: tuple[Any, ...]) -> list[Any]:
        """Run one SELECT on this thread's reader connection and return its rows.

        One statement is its own snapshot in autocommit mode, so the BEGIN/COMMIT of
        :meth:`read` (two more calls per read, on every search) is only for several.
        """
        try:
            return self.reader().execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise translate(exc, doing) from exc

    def data_version(self) -> int | None:
        """SQLite's ``PRAGMA data_version`` on a connection that never writes: it changes
        whenever any other connection, of any process, commits. None when it cannot be read
        at once (the file is locked, the probe is in use, the store is closed).

        Never waits (busy timeout 0, the probe's lock is only tried), so an event loop may
        call it: a caller that gets None reads the store the ordinary way.
        """
        self._check_fork()
        if self.closed or not self._probe_lock.acquire(blocking=False):
            return None
        try:
            if self._probe is None:
                probe = sqlite3.connect(
                    str(self.path), timeout=0, isolation_level=None, check_same_thread=False
                )
                probe.execute("PRAGMA query_only = ON")
                self._probe = probe
            return int(self._probe.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.Error:
            return None
        finally:
            self._probe_lock.release()

    def close(self, persist: Callable[[], None] = lambda: None) -> None:
        """Stop the checkpointer, run ``persist`` (in the owning process only), and close
        this process's connections; a second call does nothing."""
        if self.closed:
            return
        if self.in_owner():
            self.checkpointer.stop()
            persist()
        self.closed = True
        if self.in_owner():
            with self._probe_lock:
                probe, self._probe = self._probe, None
            for conn in [
                *self._readers,
                *([self._writer] if self._writer else []),
                *([probe] if probe else []),
            ]:
                with suppress(sqlite3.Error):
                    conn.close()
        self._readers = []
        self._writer = None
        if self._temp_dir:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
