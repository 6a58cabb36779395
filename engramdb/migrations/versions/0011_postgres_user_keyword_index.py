"""PostgreSQL's keyword index carries the user: GIN on ``(namespace, user_id, fts)``.

A keyword search scoped to one user (``user_id = …``, which every user-filtered hybrid
search runs) could only ask the ``(namespace, fts)`` GIN index for the namespace's matches
and then read each matching chunk to test its user: a ten-word query matches ~28k of 100k
chunks, so a user's keyword search took up to ~110 ms (p95 107 ms over 200 benchmark
queries). With the user as a key of the same GIN index the posting lists intersect in the
index and only the user's matches are read: p95 15 ms, and an unscoped search still uses
the namespace and word keys (p50 84 ms either way). The new index replaces the old one
(one GIN index per chunk written, not two). The build reads every chunk once (a few
seconds per 100k chunks here). SQLite: nothing to do (its keyword rows carry scope tokens, 0007).
"""

from engramdb.migrations.steps import forward_only, run_statements

revision = "0011"
down_revision = "0010"

POSTGRES = [
    "CREATE INDEX IF NOT EXISTS chunks_ns_user_fts ON chunks USING gin (namespace, user_id, fts)",
    "DROP INDEX IF EXISTS chunks_ns_fts",
]


def upgrade() -> None:
    run_statements(postgres=POSTGRES)


def downgrade() -> None:
    forward_only()
