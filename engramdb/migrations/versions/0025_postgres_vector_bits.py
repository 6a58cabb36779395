"""PostgreSQL keeps each chunk's vector as sign bits too, in a (namespace, user_id) btree.

A user's scope of a few thousand chunks was searched by reading every one of its vectors
(1,536 bytes each at 384 dimensions), and a larger one through the HNSW graph with a user
filter. Such a scope's search now scans one bit per dimension (pgvector's
``binary_quantize``, 48 bytes) by Hamming distance and re-scores only the best few hundred
exactly (``stores/postgres/search.py``). ``bits`` is a stored generated column, so every
path that writes a vector writes its bits; the index exists once the store's dimension is
recorded. Adding the column rewrites ``chunks`` once (about as long as a ``VACUUM FULL``);
the heap keeps its rows per page (the 56 bytes fit beside rows of ~2.2 kB), and the index
costs ~11 MB per 100k chunks. Needs pgvector 0.7 or later (as 0009 does). SQLite: nothing to do.
"""

from engramdb.migrations.steps import forward_only, run_statements

revision = "0025"
down_revision = "0024"

# Mirrors engramdb.stores.postgres.vectors (BITS_COLUMN, vector_index_ddl), kept literal: a
# migration must not change when the code does.
POSTGRES = [
    "ALTER TABLE chunks ADD COLUMN IF NOT EXISTS bits bit varying "
    "GENERATED ALWAYS AS (binary_quantize(embedding)) STORED",
    """DO $$
    BEGIN
        IF EXISTS (SELECT 1 FROM meta WHERE key = 'embedder_dim') THEN
            CREATE INDEX IF NOT EXISTS chunks_user_bits ON chunks (namespace, user_id)
                INCLUDE (id, rid, bits);
        END IF;
    END $$""",
]


def upgrade() -> None:
    run_statements(postgres=POSTGRES)


def downgrade() -> None:
    forward_only()
