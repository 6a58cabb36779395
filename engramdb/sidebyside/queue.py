"""The durable retry queue of dual-write: the secondary's missed writes, in order, on disk.

A small SQLite file of its own (not a table of either store: the secondary may be the one
that is down, and the primary may be a legacy store). Each entry is one write as JSON: the
method name and its keyword arguments. An entry leaves the file only after the secondary
accepted it, so a process killed at any point loses nothing; re-applying an entry is safe
because every replicated add carries the primary's id (an existing id with the same text
comes back ``unchanged``). Entries are applied strictly in order: an update queued behind
the add of its record must not overtake it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    method TEXT NOT NULL,
    kwargs TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE TABLE IF NOT EXISTS dead (
    seq INTEGER PRIMARY KEY,
    method TEXT NOT NULL,
    kwargs TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    last_error TEXT
)
"""


@dataclass(frozen=True)
class Entry:
    """One queued write: ``method`` of the secondary, called with ``kwargs``."""

    seq: int
    method: str
    kwargs: dict[str, Any]
    attempts: int


class RetryQueue:
    """A FIFO of writes kept in the SQLite file at ``path`` (created when missing).

    Example::

        q = RetryQueue("/var/lib/app/dual-write.queue")
        q.push("delete", {"id": "01H..."})
        entry = q.peek()
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(SCHEMA)

    def push(self, method: str, kwargs: dict[str, Any]) -> int:
        """Append a write; return its sequence number. Durable when this returns."""
        raw = json.dumps(kwargs, default=_json_default, sort_keys=True)
        with self._lock:
            cur = self._conn.execute(
                "INSERT INTO pending (method, kwargs) VALUES (?, ?)", (method, raw)
            )
            return int(cur.lastrowid or 0)

    def peek(self) -> Entry | None:
        """The oldest entry, or None when the queue is empty."""
        with self._lock:
            row = self._conn.execute(
                "SELECT seq, method, kwargs, attempts FROM pending ORDER BY seq LIMIT 1"
            ).fetchone()
        if row is None:
            return None
        return Entry(int(row[0]), str(row[1]), json.loads(row[2]), int(row[3]))

    def done(self, seq: int) -> None:
        """Remove an entry the secondary accepted."""
        with self._lock:
            self._conn.execute("DELETE FROM pending WHERE seq = ?", (seq,))

    def failed(self, seq: int, error: str) -> None:
        """Count a failed attempt of an entry (it stays first in line)."""
        with self._lock:
            self._conn.execute(
                "UPDATE pending SET attempts = attempts + 1, last_error = ? WHERE seq = ?",
                (error[:500], seq),
            )

    def bury(self, seq: int, error: str) -> None:
        """Move an entry the secondary can never accept (a bad input, a conflict) to the
        dead-letter table, so the entries behind it can go; ``reconcile`` repairs its record."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute(
                    "INSERT INTO dead SELECT seq, method, kwargs, attempts + 1, ? "
                    "FROM pending WHERE seq = ?",
                    (error[:500], seq),
                )
                self._conn.execute("DELETE FROM pending WHERE seq = ?", (seq,))
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def dead_letters(self) -> list[Entry]:
        """The entries given up on, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, method, kwargs, attempts FROM dead ORDER BY seq"
            ).fetchall()
        return [Entry(int(r[0]), str(r[1]), json.loads(r[2]), int(r[3])) for r in rows]

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM pending").fetchone()[0])

    def close(self) -> None:
        """Close the file (entries stay in it for the next process)."""
        with self._lock:
            self._conn.close()


def _json_default(value: Any) -> Any:
    """Datetimes travel as ISO 8601 (every write accepts it); anything else is a bug."""
    iso = getattr(value, "isoformat", None)
    if callable(iso):
        return iso()
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"cannot queue a value of type {type(value).__name__}")
