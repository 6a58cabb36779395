"""Per-namespace write generations: the store-owned counter that guards cached reads.

Every write transaction of a namespace bumps its row (in the same transaction), so a cache
entry tagged with an older generation is never served once the write is visible. The row
with the empty namespace ``''`` (never a valid namespace) is a store-wide generation added to
every namespace's: ``restore`` moves it past every value seen before, so generations never go
backwards even when the content is replaced by an older copy.

The index on ``(namespace, expires_at)`` answers "when does the next record of this namespace
expire" in one probe: a cached search answer is served only until then.
"""

from engramdb.migrations.steps import forward_only, run_statements

revision = "0002"
down_revision = "0001"

SQLITE = [
    """CREATE TABLE namespace_generations (
        namespace TEXT PRIMARY KEY,
        generation INTEGER NOT NULL
    )""",
    "CREATE INDEX records_ns_expires ON records(namespace, expires_at)",
]

POSTGRES = [
    """CREATE TABLE namespace_generations (
        namespace TEXT COLLATE "C" PRIMARY KEY,
        generation BIGINT NOT NULL
    )""",
    "CREATE INDEX records_ns_expires ON records(namespace, expires_at)",
]


def upgrade() -> None:
    run_statements(sqlite=SQLITE, postgres=POSTGRES)


def downgrade() -> None:
    forward_only()
