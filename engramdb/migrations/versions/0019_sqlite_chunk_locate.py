"""A covering index that locates chunks by id without reading their vectors (SQLite).

Every search maps its candidate chunk ids to records (``locate``, the filter checks of
candidates, the located rows of a vector search). A chunk row carries its 1.5 KB vector,
so each lookup by id read a table page holding little but vectors, and a search's 20 to
100 random lookups touched as many pages. ``chunks_locate`` holds ``(id, rid, start,
end)`` in a few hundred small pages that stay cached; the lookups name it (``INDEXED
BY``), since SQLite prefers the rowid when left to itself. PostgreSQL needs nothing: its
searches join chunks inside the candidate statement.
"""

from engramdb.migrations.steps import forward_only, run_statements

revision = "0019"
down_revision = "0017"

SQLITE = ["CREATE INDEX IF NOT EXISTS chunks_locate ON chunks(id, rid, start, end)"]


def upgrade() -> None:
    run_statements(sqlite=SQLITE)


def downgrade() -> None:
    forward_only()
