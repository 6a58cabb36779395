"""Idempotency keys in the store (migration 0017): one answer per key, shared by processes.

The service replays the answer of a write sent again with the same ``Idempotency-Key``
(:mod:`engramdb.server.idempotency`). Kept here, in the store, a retry that lands on
another worker process (or another machine on the same PostgreSQL) finds the key its first
attempt claimed, so the write is applied once whatever ``--workers`` is.

A row is a claim while ``status`` is 0 (the first request is running; ``expires_at`` is
its lease, after which a retry may claim the key again: its process died) and an answer
once ``status`` is set (kept until ``expires_at``). Claiming is one statement: an insert
that takes over only an expired row, so two processes claiming at once get one winner.
Both stores share this class; ``{p}`` in the statements is the driver's placeholder.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

COLUMNS = "key, status, headers, body, expires_at"
# Insert the claim, or take over a row whose claim or answer has expired; RETURNING gives
# a row only to the caller whose statement wrote it.
CLAIM_SQL = (
    f"INSERT INTO idempotency_keys({COLUMNS}) VALUES ({{p}}, 0, '[]', {{p}}, {{p}}) "
    "ON CONFLICT (key) DO UPDATE SET status = 0, headers = '[]', body = excluded.body, "
    "expires_at = excluded.expires_at WHERE idempotency_keys.expires_at <= {p} RETURNING key"
)
GET_SQL = f"SELECT {COLUMNS} FROM idempotency_keys WHERE key = {{p}}"
FINISH_SQL = (
    "UPDATE idempotency_keys SET status = {p}, headers = {p}, body = {p}, expires_at = {p} "
    "WHERE key = {p} AND status = 0"
)
RELEASE_SQL = "DELETE FROM idempotency_keys WHERE key = {p} AND status = 0"
PURGE_SQL = "DELETE FROM idempotency_keys WHERE expires_at <= {p}"
# A restore empties the table, in its own transaction, whichever store it runs on. Why
# neither the live keys nor the backup's: a live answer belongs to a write the restore may
# have undone (replaying it would acknowledge a write the store no longer holds); a backup's
# row may be a claim whose write the snapshot caught half-way (its answer unknown), or come
# from another store altogether. With no key, a retry runs against the restored content:
# at worst a write the backup already holds is applied again, where an ``id`` or the same
# text makes it a no-op; never an answer the store cannot back.
CLEAR_SQL = "DELETE FROM idempotency_keys"


@dataclass(frozen=True, slots=True)
class IdempotencyRow:
    """One key's state: ``status`` 0 while its first request runs, else the answer's.

    ``headers`` is the answer's header list as JSON text; times are epoch microseconds.
    """

    key: str
    status: int
    headers: str
    body: bytes
    expires_at: int

    @property
    def done(self) -> bool:
        """Whether the first request has answered (the answer can be replayed)."""
        return self.status != 0

    @classmethod
    def of(cls, row: tuple[Any, ...]) -> IdempotencyRow:
        """Build from a row of ``COLUMNS``."""
        return cls(str(row[0]), int(row[1]), str(row[2]), bytes(row[3]), int(row[4]))


class _Connections(Protocol):
    def read(self, doing: str) -> AbstractContextManager[Any]: ...

    def write(self, doing: str) -> AbstractContextManager[Any]: ...


class IdempotencyTable:
    """The ``IdempotencyStore`` methods over one store's connections (either backend)."""

    def __init__(self, db: _Connections, placeholder: str) -> None:
        self._db = db
        self._p = placeholder

    def claim_idempotency(self, key: str, now: int, lease_until: int) -> IdempotencyRow | None:
        """None when this caller now owns ``key``; else the key's row (running or done)."""
        p = self._p
        with self._db.write("claiming an idempotency key") as c:
            won = c.execute(CLAIM_SQL.format(p=p), (key, b"", lease_until, now)).fetchone()
            if won is not None:
                return None
            row = c.execute(GET_SQL.format(p=p), (key,)).fetchone()
        return IdempotencyRow.of(row) if row else None

    def get_idempotency(self, key: str) -> IdempotencyRow | None:
        """The key's row, or None (released, purged or never claimed)."""
        with self._db.read("reading an idempotency key") as c:
            row = c.execute(GET_SQL.format(p=self._p), (key,)).fetchone()
        return IdempotencyRow.of(row) if row else None

    def finish_idempotency(
        self, key: str, status: int, headers: str, body: bytes, expires_at: int
    ) -> None:
        """Keep the answer of the request that claimed ``key``."""
        with self._db.write("keeping an idempotent answer") as c:
            c.execute(FINISH_SQL.format(p=self._p), (status, headers, body, expires_at, key))

    def release_idempotency(self, key: str) -> None:
        """Drop a claim whose request failed, so the next request with the key runs."""
        with self._db.write("releasing an idempotency key") as c:
            c.execute(RELEASE_SQL.format(p=self._p), (key,))

    def purge_idempotency(self, now: int) -> int:
        """Delete every row expired at ``now``; return how many went."""
        with self._db.write("purging idempotency keys") as c:
            cur = c.execute(PURGE_SQL.format(p=self._p), (now,))
            return int(cur.rowcount or 0)
