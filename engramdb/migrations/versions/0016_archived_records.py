"""Archived records: merged away or decayed out of the live set by consolidation.

A record merged into a near-duplicate, or archived by retention, leaves ``records`` (so it
leaves search, list and count and every index with it) and its whole export image (row,
chunk vectors) moves here in the same transaction. ``get`` by id, ``unmerge`` and
``restore_archived`` read it back; ``survivor`` holds the merge survivor's image before the
merge, so an unmerge can put it back. Both stores get the same table.
"""

from engramdb.migrations.steps import forward_only, run_statements

revision = "0016"
down_revision = "0015"

SQLITE = [
    """CREATE TABLE IF NOT EXISTS archived_records (
        namespace TEXT NOT NULL,
        id TEXT NOT NULL,
        user_id TEXT NOT NULL DEFAULT '',
        thread_id TEXT NOT NULL DEFAULT '',
        reason TEXT NOT NULL,
        merged_into TEXT,
        merge_group TEXT,
        image TEXT NOT NULL,
        survivor TEXT,
        archived_at INTEGER NOT NULL,
        PRIMARY KEY (namespace, id)
    )""",
    """CREATE INDEX IF NOT EXISTS archived_records_merged
        ON archived_records(namespace, merged_into)""",
]

POSTGRES = [
    """CREATE TABLE IF NOT EXISTS archived_records (
        namespace TEXT NOT NULL,
        id TEXT NOT NULL,
        user_id TEXT NOT NULL DEFAULT '',
        thread_id TEXT NOT NULL DEFAULT '',
        reason TEXT NOT NULL,
        merged_into TEXT,
        merge_group TEXT,
        image TEXT NOT NULL,
        survivor TEXT,
        archived_at BIGINT NOT NULL,
        PRIMARY KEY (namespace, id)
    )""",
    """CREATE INDEX IF NOT EXISTS archived_records_merged
        ON archived_records(namespace, merged_into)""",
]


def upgrade() -> None:
    run_statements(sqlite=SQLITE, postgres=POSTGRES)


def downgrade() -> None:
    forward_only()
