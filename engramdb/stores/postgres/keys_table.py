"""Service keys and the admin audit log in PostgreSQL (tables of migration 0012).

Every read is on the primary (a replica may lag behind a revocation), so every process of
every machine sees a revocation with its next request. ``restore`` leaves both tables alone:
they are not among the backup's tables.
"""

from __future__ import annotations

from engramdb.stores.key_rows import (
    ACTIVE_ADMIN_SQL,
    GET_KEY_SQL,
    INSERT_AUDIT_SQL,
    INSERT_KEY_SQL,
    LIST_AUDIT_SQL,
    LIST_KEYS_SQL,
    REVOKE_KEY_SQL,
    AuditRow,
    KeyRow,
)
from engramdb.stores.postgres.connection import Database

P = "%s"
NO_SEQ = 1 << 62  # past every audit sequence number
ADMIN_KEY_LOCK = 0x656E6772616D6B79  # advisory-lock key: the first admin key of a store


class KeyTable:
    """Keys and audit rows of one PostgreSQL store."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def insert_key(self, row: KeyRow, only_if_no_admin: bool = False) -> bool:
        """Write a key; with ``only_if_no_admin`` only when no admin key is in force.

        Concurrent first starts serialise on an advisory lock, so one of them writes.
        """
        with self._db.write("creating a key") as c:
            if only_if_no_admin:
                c.execute("SELECT pg_advisory_xact_lock(%s)", (ADMIN_KEY_LOCK,))
                if c.execute(ACTIVE_ADMIN_SQL).fetchone() is not None:
                    return False
            c.execute(INSERT_KEY_SQL.format(p=P), row.values())
        return True

    def get_key(self, key_id: str) -> KeyRow | None:
        """Return the key with this id, or None."""
        with self._db.read("reading a key") as c:
            row = c.execute(GET_KEY_SQL.format(p=P), (key_id,)).fetchone()
        return KeyRow.of(row) if row else None

    def list_keys(self) -> list[KeyRow]:
        """Return every key, oldest first."""
        with self._db.read("listing keys") as c:
            return [KeyRow.of(r) for r in c.execute(LIST_KEYS_SQL).fetchall()]

    def revoke_key(self, key_id: str, at: int) -> KeyRow | None:
        """Mark a key revoked; return it as it now is (None when unknown)."""
        with self._db.write("revoking a key") as c:
            c.execute(REVOKE_KEY_SQL.format(p=P), (at, key_id))
            row = c.execute(GET_KEY_SQL.format(p=P), (key_id,)).fetchone()
        return KeyRow.of(row) if row else None

    def append_audit(self, row: AuditRow) -> int:
        """Append one audit entry; return its sequence number."""
        with self._db.write("writing the audit log") as c:
            out = c.execute(INSERT_AUDIT_SQL.format(p=P), row.values()).fetchone()
        return int(out[0]) if out else 0

    def list_audit(self, limit: int, before: int | None = None) -> list[AuditRow]:
        """Return up to ``limit`` entries older than seq ``before``, newest first."""
        args = (NO_SEQ if before is None else before, limit)
        with self._db.read("reading the audit log") as c:
            return [AuditRow.of(r) for r in c.execute(LIST_AUDIT_SQL.format(p=P), args).fetchall()]
