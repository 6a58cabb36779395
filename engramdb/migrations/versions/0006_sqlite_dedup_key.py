"""SQLite's dedup index is on (namespace, a 16-byte key) instead of six columns.

The unique index ``records_dedup`` decides whether an add is a duplicate (same namespace,
user, agent, thread, type and normalised text). On the six columns its entries were ~110
bytes (the content hash alone is 64 hex characters) in random order within each user, so a
batch of 1,000 adds into a 100k-record file dirtied 805 index pages, about half of
everything the commit wrote to the WAL. The key column ``dedup`` holds a BLAKE2b-128 digest
of the five scope fields, so the entries are ~35 bytes. PostgreSQL keeps its index as it is
(its writes are bound by the HNSW insert, not by page writes).
"""

import hashlib

from alembic import op

from engramdb.migrations.steps import forward_only

revision = "0006"
down_revision = "0005"


def _dedup(user_id: str, agent_id: str, thread_id: str, type_: str, chash: str) -> bytes:
    # Mirrors engramdb.stores.sqlite.keys.dedup_digest (kept literal: a migration must not
    # change when the code does).
    key = "\x1f".join((user_id, agent_id, thread_id, type_, chash)).encode("utf-8")
    return hashlib.blake2b(key, digest_size=16).digest()


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    raw = bind.connection.driver_connection
    raw.create_function("engram_dedup_0006", 5, _dedup, deterministic=True)
    op.execute("ALTER TABLE records ADD COLUMN dedup BLOB NOT NULL DEFAULT x''")
    op.execute(
        "UPDATE records SET dedup = "
        "engram_dedup_0006(user_id, agent_id, thread_id, type, content_hash)"
    )
    op.execute("DROP INDEX records_dedup")
    op.execute("CREATE UNIQUE INDEX records_dedup ON records(namespace, dedup)")


def downgrade() -> None:
    forward_only()
