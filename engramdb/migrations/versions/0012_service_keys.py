"""Service keys and the admin audit log: who may call the REST service, and what admins did.

``api_keys`` holds one row per key: its public id, the SHA-256 of the whole key (the secret
itself is never stored), the namespace it is bound to (NULL for an admin key), whether it
may only read, and when it was made and revoked. A revoked row is kept (revocation is a
timestamp), so the audit log's key ids stay resolvable.

``admin_audit`` is append-only: one row per destructive call (restore, import, reembed,
forget, delete-all, key changes) with the key id, the time, the action, its target and its
outcome. It is apart from the namespaces' event logs, and ``restore`` keeps both tables
(the keys in force are the running service's, not those of the backup's era).
"""

from engramdb.migrations.steps import forward_only, run_statements

revision = "0012"
down_revision = "0011"

SQLITE = [
    """CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        secret_hash TEXT NOT NULL,
        namespace TEXT,
        read_only INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER
    )""",
    """CREATE TABLE admin_audit (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        key_id TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT,
        status INTEGER NOT NULL,
        result TEXT NOT NULL,
        details TEXT NOT NULL DEFAULT '{}'
    )""",
]

POSTGRES = [
    """CREATE TABLE IF NOT EXISTS api_keys (
        id TEXT COLLATE "C" PRIMARY KEY,
        secret_hash TEXT NOT NULL,
        namespace TEXT COLLATE "C",
        read_only BOOLEAN NOT NULL DEFAULT false,
        created_at BIGINT NOT NULL,
        revoked_at BIGINT
    )""",
    """CREATE TABLE IF NOT EXISTS admin_audit (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at BIGINT NOT NULL,
        key_id TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT,
        status INTEGER NOT NULL,
        result TEXT NOT NULL,
        details TEXT NOT NULL DEFAULT '{}'
    )""",
]


def upgrade() -> None:
    run_statements(sqlite=SQLITE, postgres=POSTGRES)


def downgrade() -> None:
    forward_only()
