"""Idempotency keys in the store: a retried write is applied once across worker processes.

``idempotency_keys`` holds, per key (a digest of the caller's credentials, method, path and
``Idempotency-Key`` header), either a claim (``status`` 0, ``expires_at`` the lease of the
request running it) or the answer to replay (status, headers as JSON, body) until
``expires_at``. Expired rows are purged by the service; nothing else reads them. Both
backends get the table (``stores/idempotency_rows.py`` holds their shared statements).
"""

from engramdb.migrations.steps import forward_only, run_statements

revision = "0017"
down_revision = "0016"

SQLITE = [
    """CREATE TABLE IF NOT EXISTS idempotency_keys (
        key TEXT PRIMARY KEY,
        status INTEGER NOT NULL,
        headers TEXT NOT NULL,
        body BLOB NOT NULL,
        expires_at INTEGER NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS idempotency_keys_expiry ON idempotency_keys(expires_at)",
]

POSTGRES = [
    """CREATE TABLE IF NOT EXISTS idempotency_keys (
        key TEXT COLLATE "C" PRIMARY KEY,
        status INTEGER NOT NULL,
        headers TEXT NOT NULL,
        body BYTEA NOT NULL,
        expires_at BIGINT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS idempotency_keys_expiry ON idempotency_keys(expires_at)",
]


def upgrade() -> None:
    run_statements(sqlite=SQLITE, postgres=POSTGRES)


def downgrade() -> None:
    forward_only()
