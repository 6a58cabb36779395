"""SQLite logs keyword rows rewritten in place (``keyword_log``), for the derived keyword index.

The derived keyword index (``stores/sqlite/keyword_index.py``) catches up from the store like
the vector index: new rows by rowid watermark, deleted ones from ``chunk_deletes``. A keyword
row can also change in place, keeping its rowid: a thread message's context is re-indexed
when its neighbours arrive, and ``doctor --repair`` recomputes stale scope tokens. Each such
rewrite appends the chunk id here in the same transaction, so the index re-reads exactly
those rows. PostgreSQL is unchanged: its keyword side has no derived index.
"""

from engramdb.migrations.steps import forward_only, run_statements

revision = "0015"
down_revision = "0014"

SQLITE = [
    """CREATE TABLE IF NOT EXISTS keyword_log (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, chunk_id INTEGER NOT NULL)""",
]


def upgrade() -> None:
    run_statements(sqlite=SQLITE)


def downgrade() -> None:
    forward_only()
