"""Service keys and the admin audit log in a SQLite file (tables of migration 0012).

Reads run on this thread's reader connection, so every process sees a revocation as soon as
it commits (no cache to invalidate). ``carried_over`` keeps both tables through a restore,
which otherwise replaces the whole file with the backup's pages.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from engramdb.stores.key_rows import (
    ACTIVE_ADMIN_SQL,
    AUDIT_COLUMNS,
    GET_KEY_SQL,
    INSERT_AUDIT_SQL,
    INSERT_KEY_SQL,
    KEY_COLUMNS,
    LIST_AUDIT_SQL,
    LIST_KEYS_SQL,
    REVOKE_KEY_SQL,
    AuditRow,
    KeyRow,
)
from engramdb.stores.sqlite.connection import Connections

P = "?"
NO_SEQ = 1 << 62  # past every audit sequence number


class KeyTable:
    """Keys and audit rows of one store file."""

    def __init__(self, db: Connections) -> None:
        self._db = db

    def insert_key(self, row: KeyRow, only_if_no_admin: bool = False) -> bool:
        """Write a key; with ``only_if_no_admin`` only when no admin key is in force."""
        with self._db.write("creating a key") as c:
            if only_if_no_admin and c.execute(ACTIVE_ADMIN_SQL).fetchone() is not None:
                return False
            c.execute(INSERT_KEY_SQL.format(p=P), row.values())
        return True

    def get_key(self, key_id: str) -> KeyRow | None:
        """Return the key with this id, or None."""
        rows = self._db.query("reading a key", GET_KEY_SQL.format(p=P), (key_id,))
        return KeyRow.of(rows[0]) if rows else None

    def list_keys(self) -> list[KeyRow]:
        """Return every key, oldest first."""
        return [KeyRow.of(r) for r in self._db.query("listing keys", LIST_KEYS_SQL, ())]

    def revoke_key(self, key_id: str, at: int) -> KeyRow | None:
        """Mark a key revoked; return it as it now is (None when unknown)."""
        with self._db.write("revoking a key") as c:
            c.execute(REVOKE_KEY_SQL.format(p=P), (at, key_id))
            row = c.execute(GET_KEY_SQL.format(p=P), (key_id,)).fetchone()
        return KeyRow.of(row) if row else None

    def append_audit(self, row: AuditRow) -> int:
        """Append one audit entry; return its sequence number."""
        with self._db.write("writing the audit log") as c:
            return int(c.execute(INSERT_AUDIT_SQL.format(p=P), row.values()).fetchone()[0])

    def list_audit(self, limit: int, before: int | None = None) -> list[AuditRow]:
        """Return up to ``limit`` entries older than seq ``before``, newest first."""
        sql = LIST_AUDIT_SQL.format(p=P)
        args = (NO_SEQ if before is None else before, limit)
        return [AuditRow.of(r) for r in self._db.query("reading the audit log", sql, args)]


@contextmanager
def carried_over(conn: sqlite3.Connection) -> Iterator[None]:
    """Keep the keys and the audit log of ``conn``'s file through what runs inside.

    For ``restore``: the backup API overwrites every page, and the keys in force (and the
    record of what admins did) must be the running service's, never the backup's. Runs on
    the writer connection under the writer's lock.
    """
    keys = conn.execute(f"SELECT {KEY_COLUMNS} FROM api_keys").fetchall()
    audit = conn.execute(f"SELECT {AUDIT_COLUMNS} FROM admin_audit").fetchall()
    yield
    _replace(conn, "api_keys", KEY_COLUMNS, keys)
    _replace(conn, "admin_audit", AUDIT_COLUMNS, audit)


def _replace(conn: sqlite3.Connection, table: str, columns: str, rows: list[Any]) -> None:
    marks = ", ".join("?" for _ in columns.split(","))
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(f"DELETE FROM {table}")
        conn.executemany(f"INSERT INTO {table}({columns}) VALUES ({marks})", rows)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
