"""``migrate``'s target side of a SQLite file: loads under a batch log, and a run lock.

The PostgreSQL store loads through COPY on several connections; a SQLite file has one
writer, so a load here is the import path (``RowTransfer.import_records``) with the
checkpoint entries written in the same transaction, and batches commit in order. A
kill -9 rolls back the transaction in flight (the file's journal), so there is nothing
to settle before the log is read. The approximate vector index of a SQLite store is a
derived sidecar that catches up on open and before reads, so there is nothing to drop or
build around a load.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from engramdb.stores.sqlite.connection import Connections
from engramdb.stores.sqlite.meta import read_meta, write_meta
from engramdb.stores.sqlite.transfer import RowTransfer


class SQLiteBulkLoad:
    """The ``BulkLoader`` role of a SQLite store."""

    def __init__(self, db: Connections, transfer: RowTransfer) -> None:
        self._db = db
        self._transfer = transfer

    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """Hold an exclusive lock on ``<file>.<name>.lock`` for the ``with`` body.

        An OS file lock, so it ends with the process even on kill -9; a second holder
        waits until the first is done.
        """
        lock_path = f"{self._db.path}.{name}.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def load_records(
        self, batch: list[dict[str, Any]], meta: dict[str, str | None] | None = None
    ) -> dict[str, int]:
        """Insert exported records and ``meta`` values in one transaction.

        Raises:
            ConflictError: an id is present with other data, or another id holds the same
                text in the same scope (nothing of the batch is written).
        """
        counts = self._transfer.import_records(batch, meta=meta, refuse_conflicts=True)
        return {"written": counts["written"], "unchanged": counts["unchanged"]}

    def existing_digests(self, namespace: str, ids: list[str]) -> dict[str, tuple[int, str]]:
        """Map each of ``ids`` already stored in ``namespace`` to its (version, content hash)."""
        out: dict[str, tuple[int, str]] = {}
        with self._db.read("comparing ids") as c:
            for start in range(0, len(ids), 500):
                part = ids[start : start + 500]
                marks = ",".join("?" * len(part))
                for rid, version, chash in c.execute(
                    f"SELECT id, version, content_hash FROM records WHERE namespace = ? AND "
                    f"id IN ({marks})",
                    (namespace, *part),
                ):
                    out[str(rid)] = (int(version), str(chash))
        return out

    def read_meta(self, key: str) -> str | None:
        """Read one ``meta`` entry."""
        with self._db.read("reading a checkpoint") as c:
            return read_meta(c, key)

    def write_meta(self, key: str, value: str | None) -> None:
        """Write (or, with None, delete) one ``meta`` entry."""
        with self._db.write("writing a checkpoint") as c:
            if value is None:
                c.execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                write_meta(c, key, value)

    def read_meta_prefix(self, prefix: str) -> dict[str, str]:
        """Read every ``meta`` entry whose key starts with ``prefix``."""
        with self._db.read("reading a batch log") as c:
            rows = c.execute(
                "SELECT key, value FROM meta WHERE substr(key, 1, ?) = ?", (len(prefix), prefix)
            ).fetchall()
        return {str(k): str(v) for k, v in rows}

    def delete_meta_prefix(self, prefix: str) -> int:
        """Delete every ``meta`` entry whose key starts with ``prefix``; return how many."""
        with self._db.write("deleting a batch log") as c:
            cur = c.execute("DELETE FROM meta WHERE substr(key, 1, ?) = ?", (len(prefix), prefix))
            return int(cur.rowcount)
