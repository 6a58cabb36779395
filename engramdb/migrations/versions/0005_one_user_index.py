"""PostgreSQL keeps one user-scope btree on chunks, not two.

Where the covering ``chunks_user_vectors`` index exists (vectors of at most 640
dimensions, migration 0004), the plain ``chunks_ns_user (namespace, user_id, id)`` index
answers nothing it does not, and costs one more btree insert per chunk written. Stores with
wider vectors, or with no embedder recorded yet, keep it. SQLite: nothing to do.
"""

from engramdb.migrations.steps import forward_only, run_statements

revision = "0005"
down_revision = "0004"

# Mirrors engramdb.stores.postgres.vector_index_ddl (kept literal: a migration must not
# change when the code does).
POSTGRES = [
    """DO $$
    BEGIN
        IF to_regclass('chunks_user_vectors') IS NOT NULL THEN
            DROP INDEX IF EXISTS chunks_ns_user;
        END IF;
    END $$""",
]


def upgrade() -> None:
    run_statements(postgres=POSTGRES)


def downgrade() -> None:
    forward_only()
