"""The rows of service keys and of the admin audit log, and the SQL both stores share.

A store keeps keys and audit entries (migration 0012) but never sees a secret: the key
service (:mod:`engramdb.ops.keys`) makes keys, hashes them and checks them; a store only
writes and reads these rows. ``{p}`` in the statements is the driver's placeholder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KEY_COLUMNS = "id, secret_hash, namespace, read_only, created_at, revoked_at"
AUDIT_COLUMNS = "seq, at, key_id, action, target, status, result, details"

INSERT_KEY_SQL = (
    f"INSERT INTO api_keys({KEY_COLUMNS}) VALUES ({{p}}, {{p}}, {{p}}, {{p}}, {{p}}, {{p}})"
)
GET_KEY_SQL = f"SELECT {KEY_COLUMNS} FROM api_keys WHERE id = {{p}}"
LIST_KEYS_SQL = f"SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, id"
ACTIVE_ADMIN_SQL = "SELECT 1 FROM api_keys WHERE namespace IS NULL AND revoked_at IS NULL LIMIT 1"
REVOKE_KEY_SQL = "UPDATE api_keys SET revoked_at = {p} WHERE id = {p} AND revoked_at IS NULL"
INSERT_AUDIT_SQL = (
    "INSERT INTO admin_audit(at, key_id, action, target, status, result, details) "
    "VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}) RETURNING seq"
)
# Newest first; ``before`` pages back (a seq past every row reads from the newest).
LIST_AUDIT_SQL = (
    f"SELECT {AUDIT_COLUMNS} FROM admin_audit WHERE seq < {{p}} ORDER BY seq DESC LIMIT {{p}}"
)


@dataclass(frozen=True, slots=True)
class KeyRow:
    """One service key as stored: no secret, only its hash.

    ``namespace`` is None for an admin key. Times are epoch microseconds.
    """

    id: str
    secret_hash: str
    namespace: str | None
    read_only: bool
    created_at: int
    revoked_at: int | None = None

    @property
    def admin(self) -> bool:
        """True for an admin key (bound to no namespace: it may call every route)."""
        return self.namespace is None

    @classmethod
    def of(cls, row: tuple[Any, ...]) -> KeyRow:
        """Build from a row of ``KEY_COLUMNS``."""
        return cls(
            str(row[0]),
            str(row[1]),
            None if row[2] is None else str(row[2]),
            bool(row[3]),
            int(row[4]),
            None if row[5] is None else int(row[5]),
        )

    def values(self) -> tuple[Any, ...]:
        """The row's values in ``KEY_COLUMNS`` order."""
        return (
            self.id,
            self.secret_hash,
            self.namespace,
            self.read_only,
            self.created_at,
            self.revoked_at,
        )


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One entry of the admin audit log: who (key id), when, what, on what, with what result.

    ``details`` is a JSON object as text (never a secret, never memory text); ``seq`` is 0
    until the store has written the row.
    """

    at: int
    key_id: str
    action: str
    target: str | None
    status: int
    result: str
    details: str = "{}"
    seq: int = 0

    @classmethod
    def of(cls, row: tuple[Any, ...]) -> AuditRow:
        """Build from a row of ``AUDIT_COLUMNS``."""
        return cls(
            at=int(row[1]),
            key_id=str(row[2]),
            action=str(row[3]),
            target=None if row[4] is None else str(row[4]),
            status=int(row[5]),
            result=str(row[6]),
            details=str(row[7]),
            seq=int(row[0]),
        )

    def values(self) -> tuple[Any, ...]:
        """The values ``INSERT_AUDIT_SQL`` takes, in order."""
        return (
            self.at,
            self.key_id,
            self.action,
            self.target,
            self.status,
            self.result,
            self.details,
        )
