"""PostgreSQL logs which chunks' keywords changed, for the process-local keyword index.

Each service process keeps a derived keyword index in memory
(``stores/postgres/keyword_index.py``) and catches it up before a search from this feed:
one row per chunk inserted, deleted, or updated in its words or scope, with the writing
transaction's id (``xid8``). A reader that caught up at a snapshot whose oldest running
transaction was ``x`` next reads the rows of transactions from ``x`` on, so a transaction
that commits later than one with a larger id is still seen (ids are not commit order).
The triggers write the feed in the writing transaction, so every write path (inserts,
COPY, cascades from records, thread re-indexing, doctor, restore) is covered without its
code knowing; a TRUNCATE raises the epoch, which makes every process rebuild. Old rows are
pruned by the processes (``floor`` says below which transaction ids rows may be gone).
SQLite: nothing to do (its index reads its own tables' watermarks).
"""

from engramdb.migrations.steps import forward_only, run_statements

revision = "0026"
down_revision = "0025"

POSTGRES = [
    """CREATE TABLE IF NOT EXISTS keyword_feed (
        seq BIGSERIAL PRIMARY KEY,
        xid XID8 NOT NULL DEFAULT pg_current_xact_id(),
        at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
        chunk_id BIGINT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS keyword_feed_xid ON keyword_feed (xid)",
    """CREATE TABLE IF NOT EXISTS keyword_feed_state (
        one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
        epoch BIGINT NOT NULL DEFAULT 0,
        floor XID8 NOT NULL DEFAULT '0'
    )""",
    "INSERT INTO keyword_feed_state DEFAULT VALUES ON CONFLICT DO NOTHING",
    """CREATE OR REPLACE FUNCTION engram_keyword_feed_new() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
    BEGIN
        INSERT INTO keyword_feed(chunk_id) SELECT id FROM changed_rows;
        RETURN NULL;
    END $$""",
    """CREATE OR REPLACE FUNCTION engram_keyword_feed_row() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
    BEGIN
        INSERT INTO keyword_feed(chunk_id) VALUES (NEW.id);
        RETURN NULL;
    END $$""",
    """CREATE OR REPLACE FUNCTION engram_keyword_feed_truncated() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
    BEGIN
        UPDATE keyword_feed_state SET epoch = epoch + 1;
        RETURN NULL;
    END $$""",
    "DROP TRIGGER IF EXISTS chunks_keyword_feed_insert ON chunks",
    "CREATE TRIGGER chunks_keyword_feed_insert AFTER INSERT ON chunks "
    "REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT "
    "EXECUTE FUNCTION engram_keyword_feed_new()",
    "DROP TRIGGER IF EXISTS chunks_keyword_feed_delete ON chunks",
    "CREATE TRIGGER chunks_keyword_feed_delete AFTER DELETE ON chunks "
    "REFERENCING OLD TABLE AS changed_rows FOR EACH STATEMENT "
    "EXECUTE FUNCTION engram_keyword_feed_new()",
    "DROP TRIGGER IF EXISTS chunks_keyword_feed_update ON chunks",
    "CREATE TRIGGER chunks_keyword_feed_update AFTER UPDATE OF fts, namespace, user_id "
    "ON chunks FOR EACH ROW WHEN (OLD.fts IS DISTINCT FROM NEW.fts OR OLD.namespace IS "
    "DISTINCT FROM NEW.namespace OR OLD.user_id IS DISTINCT FROM NEW.user_id) "
    "EXECUTE FUNCTION engram_keyword_feed_row()",
    "DROP TRIGGER IF EXISTS chunks_keyword_feed_truncate ON chunks",
    "CREATE TRIGGER chunks_keyword_feed_truncate AFTER TRUNCATE ON chunks "
    "FOR EACH STATEMENT EXECUTE FUNCTION engram_keyword_feed_truncated()",
]


def upgrade() -> None:
    run_statements(postgres=POSTGRES)


def downgrade() -> None:
    forward_only()
