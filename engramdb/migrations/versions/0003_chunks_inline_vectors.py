"""PostgreSQL keeps chunk rows (and so their vectors) inline instead of in TOAST.

A chunk row of a 384-d vector (1,540 bytes) plus its keyword text and tsvector is just over
PostgreSQL's default 2 kB toast threshold, so the vector (pgvector's type has EXTERNAL
storage) went out of line: every insert wrote a TOAST row and its index entry, and every
exact scan fetched each vector from the TOAST table. Measured on the 100k benchmark table:
TOAST 150 MB beside a 70 MB heap; after the change (and a rewrite) the filtered search p50
went from 7.1 to 4.8 ms and p95 from 50 to 23 ms. Rows above ~8 kB (large vectors or long
chunks) are still toasted. Rows written before this revision stay where they are until the
table is rewritten (``VACUUM FULL chunks``, see docs/deploy.md). SQLite: nothing to do.
"""

from engramdb.migrations.steps import forward_only, run_statements

revision = "0003"
down_revision = "0002"

POSTGRES = ["ALTER TABLE chunks SET (toast_tuple_target = 8160)"]


def upgrade() -> None:
    run_statements(postgres=POSTGRES)


def downgrade() -> None:
    forward_only()
