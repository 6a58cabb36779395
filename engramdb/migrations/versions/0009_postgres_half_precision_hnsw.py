"""PostgreSQL builds its HNSW graph over half-precision copies of the vectors.

``chunks_hnsw`` was ``USING hnsw (embedding vector_cosine_ops)``; it becomes an expression
index on ``embedding::halfvec(dim)`` with ``halfvec_cosine_ops`` and the same ``m`` and
``ef_construction`` it had. The column and every score stay float32; only the graph's keys
are halved: on the benchmark's MiniLM vectors inserts and the build are ~18% faster, the
graph 43% smaller, and recall@10 unchanged within 0.001 (see
``engramdb.stores.postgres.HNSW_MAX_DIM``). The rebuild reads every chunk once (about 30 s
per 100k 384-d chunks on 2 cores). A store whose vectors have 2,001-4,000 dimensions had no
HNSW index (pgvector's limit on ``vector``) and can now have one: ``engramdb doctor
--repair`` builds it with the store's settings. SQLite: nothing to do.
"""

from engramdb.migrations.steps import forward_only, run_statements

revision = "0009"
down_revision = "0008"

# Mirrors engramdb.stores.postgres.vector_index_ddl (kept literal: a migration must not
# change when the code does).
POSTGRES = [
    """DO $$
    DECLARE
        graph regclass := to_regclass('chunks_hnsw');
        dim int;
        opts text;
    BEGIN
        IF graph IS NOT NULL AND position('halfvec' in pg_get_indexdef(graph)) = 0 THEN
            SELECT value::int INTO dim FROM meta WHERE key = 'embedder_dim';
            SELECT array_to_string(reloptions, ', ') INTO opts FROM pg_class WHERE oid = graph;
            PERFORM set_config('maintenance_work_mem', '512MB', true);
            DROP INDEX chunks_hnsw;
            EXECUTE 'CREATE INDEX chunks_hnsw ON chunks USING hnsw '
                || '(((embedding)::halfvec(' || dim || ')) halfvec_cosine_ops)'
                || coalesce(' WITH (' || opts || ')', '');
        END IF;
    END $$""",
]


def upgrade() -> None:
    run_statements(postgres=POSTGRES)


def downgrade() -> None:
    forward_only()
