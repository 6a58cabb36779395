"""PostgreSQL keeps a copy of the chunk vectors in a (namespace, user_id) btree.

The exact search of one user's scope (up to ``ann_min_user_rows`` chunks) becomes an
index-only scan over that user's contiguous leaf pages instead of one heap visit per chunk:
on the 100k benchmark table a 4.4k-chunk user went from 10.9 to 5.7 ms, a 2k-chunk user
from 6.5 to 3.5 ms. The index costs about as much disk as the vectors (~200 MB per 100k
384-d chunks). A btree entry holds at most ~2.7 kB, so the index exists only for vectors of
at most ``COVER_MAX_DIM`` dimensions; a store whose embedder is not recorded yet gets it
with its first vectors (``PostgresStore._set_vector_dim``). SQLite: nothing to do.
"""

from engramdb.migrations.steps import forward_only, run_statements

revision = "0004"
down_revision = "0003"

# Mirrors engramdb.stores.postgres.vector_index_ddl (kept literal: a migration must not
# change when the code does).
POSTGRES = [
    """DO $$
    BEGIN
        IF (SELECT value::int FROM meta WHERE key = 'embedder_dim') <= 640 THEN
            CREATE INDEX IF NOT EXISTS chunks_user_vectors ON chunks (namespace, user_id)
                INCLUDE (id, rid, start_pos, end_pos, embedding);
        END IF;
    END $$""",
]


def upgrade() -> None:
    run_statements(postgres=POSTGRES)


def downgrade() -> None:
    forward_only()
