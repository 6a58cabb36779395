"""Initial schema: records, chunks (vectors + keyword index), history, events, slots."""

from alembic import op

from engramdb.migrations.steps import forward_only

revision = "0001"
down_revision = None

SQLITE = [
    """CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
    """CREATE TABLE records (
        rid INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL,
        namespace TEXT NOT NULL,
        user_id TEXT NOT NULL DEFAULT '',
        agent_id TEXT NOT NULL DEFAULT '',
        thread_id TEXT NOT NULL DEFAULT '',
        type TEXT NOT NULL,
        text TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        metadata TEXT NOT NULL DEFAULT '{}',
        tags TEXT NOT NULL DEFAULT '[]',
        source TEXT NOT NULL DEFAULT '',
        importance REAL,
        occurred_at INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        valid_from INTEGER,
        valid_to INTEGER,
        expires_at INTEGER,
        version INTEGER NOT NULL DEFAULT 1,
        event_id TEXT
    )""",
    "CREATE UNIQUE INDEX records_ns_id ON records(namespace, id)",
    """CREATE UNIQUE INDEX records_dedup ON records(
        namespace, user_id, agent_id, thread_id, type, content_hash)""",
    "CREATE INDEX records_ns_user ON records(namespace, user_id, id)",
    "CREATE INDEX records_ns_thread ON records(namespace, thread_id, occurred_at)",
    """CREATE TABLE chunks (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        rid INTEGER NOT NULL REFERENCES records(rid) ON DELETE CASCADE,
        ord INTEGER NOT NULL,
        start INTEGER NOT NULL,
        end INTEGER NOT NULL,
        vector BLOB NOT NULL
    )""",
    "CREATE INDEX chunks_rid ON chunks(rid)",
    """CREATE VIRTUAL TABLE chunks_fts USING fts5(
        body, tokenize = 'porter unicode61 remove_diacritics 2')""",
    """CREATE TABLE chunk_deletes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, chunk_id INTEGER NOT NULL)""",
    """CREATE TABLE history (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        namespace TEXT NOT NULL,
        record_id TEXT NOT NULL,
        user_id TEXT NOT NULL DEFAULT '',
        thread_id TEXT NOT NULL DEFAULT '',
        op TEXT NOT NULL,
        version INTEGER NOT NULL,
        before TEXT,
        after TEXT,
        at INTEGER NOT NULL
    )""",
    "CREATE INDEX history_record ON history(namespace, record_id, seq)",
    "CREATE INDEX history_user ON history(namespace, user_id)",
    """CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL,
        namespace TEXT NOT NULL,
        thread_id TEXT NOT NULL,
        user_id TEXT NOT NULL DEFAULT '',
        actor TEXT NOT NULL DEFAULT '',
        action TEXT NOT NULL,
        payload TEXT NOT NULL DEFAULT '{}',
        ts INTEGER NOT NULL
    )""",
    "CREATE UNIQUE INDEX events_ns_id ON events(namespace, id)",
    "CREATE INDEX events_thread ON events(namespace, thread_id, seq)",
    "CREATE INDEX events_user ON events(namespace, user_id)",
    """CREATE TABLE slots (
        namespace TEXT NOT NULL,
        thread_id TEXT NOT NULL,
        name TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (namespace, thread_id, name)
    )""",
    """CREATE TABLE slot_versions (
        namespace TEXT NOT NULL,
        thread_id TEXT NOT NULL,
        user_id TEXT NOT NULL DEFAULT '',
        version INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (namespace, thread_id)
    )""",
    """CREATE TABLE reembed_vectors (
        chunk_id INTEGER PRIMARY KEY, vector BLOB NOT NULL)""",
]

# PostgreSQL: the same tables. Text columns use the "C" collation so ordering and keyset
# paging compare bytes exactly as SQLite does; metadata and tags are JSONB (filters run in
# SQL), and metadata is also kept as the exact JSON text given (JSONB normalises numbers:
# 1.2e16 would come back as an integer); chunks carry their record's namespace and user
# so that a user-scoped vector search is an exact scan through (namespace, user_id). The
# vector column gets its dimension and its HNSW index when the store first records its
# embedder (the dimension is not known here). Every index leads with the namespace,
# except the HNSW one, which cannot.
POSTGRES = [
    "CREATE EXTENSION IF NOT EXISTS vector",
    "CREATE EXTENSION IF NOT EXISTS btree_gin",
    "CREATE EXTENSION IF NOT EXISTS unaccent",
    # Keyword analysis close to SQLite's 'porter unicode61 remove_diacritics 2': accents
    # folded, English (Porter 2) stemming, and no stop-word list (FTS5 has none).
    "CREATE TEXT SEARCH DICTIONARY engram_stem (TEMPLATE = snowball, Language = english)",
    "CREATE TEXT SEARCH CONFIGURATION engram (COPY = pg_catalog.simple)",
    # (the unaccent dictionary is qualified by its extension's schema in upgrade())
    """ALTER TEXT SEARCH CONFIGURATION engram ALTER MAPPING FOR
        asciiword, asciihword, hword_asciipart, word, hword, hword_part, numword, numhword,
        hword_numpart
        WITH {unaccent}.unaccent, engram_stem""",
    """CREATE TABLE meta (key TEXT COLLATE "C" PRIMARY KEY, value TEXT NOT NULL)""",
    """CREATE TABLE records (
        rid BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        id TEXT COLLATE "C" NOT NULL,
        namespace TEXT COLLATE "C" NOT NULL,
        user_id TEXT COLLATE "C" NOT NULL DEFAULT '',
        agent_id TEXT COLLATE "C" NOT NULL DEFAULT '',
        thread_id TEXT COLLATE "C" NOT NULL DEFAULT '',
        type TEXT COLLATE "C" NOT NULL,
        text TEXT NOT NULL,
        content_hash TEXT COLLATE "C" NOT NULL,
        metadata JSONB NOT NULL DEFAULT '{}',
        metadata_raw TEXT NOT NULL DEFAULT '{}',
        tags JSONB NOT NULL DEFAULT '[]',
        source TEXT COLLATE "C" NOT NULL DEFAULT '',
        importance DOUBLE PRECISION,
        occurred_at BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        valid_from BIGINT,
        valid_to BIGINT,
        expires_at BIGINT,
        version INTEGER NOT NULL DEFAULT 1,
        event_id TEXT COLLATE "C"
    )""",
    "CREATE UNIQUE INDEX records_ns_id ON records(namespace, id)",
    """CREATE UNIQUE INDEX records_dedup ON records(
        namespace, user_id, agent_id, thread_id, type, content_hash)""",
    "CREATE INDEX records_ns_user ON records(namespace, user_id, id)",
    "CREATE INDEX records_ns_thread ON records(namespace, thread_id, occurred_at)",
    "CREATE INDEX records_ns_meta ON records USING gin (namespace, metadata jsonb_path_ops)",
    "CREATE INDEX records_ns_tags ON records USING gin (namespace, tags jsonb_path_ops)",
    """CREATE TABLE chunks (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        rid BIGINT NOT NULL REFERENCES records(rid) ON DELETE CASCADE,
        namespace TEXT COLLATE "C" NOT NULL,
        user_id TEXT COLLATE "C" NOT NULL DEFAULT '',
        ord INTEGER NOT NULL,
        start_pos INTEGER NOT NULL,
        end_pos INTEGER NOT NULL,
        body TEXT NOT NULL,
        fts TSVECTOR NOT NULL,
        embedding VECTOR NOT NULL
    )""",
    "CREATE INDEX chunks_rid ON chunks(rid)",
    "CREATE INDEX chunks_ns_user ON chunks(namespace, user_id, id)",
    "CREATE INDEX chunks_ns_fts ON chunks USING gin (namespace, fts)",
    """CREATE TABLE history (
        seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        namespace TEXT COLLATE "C" NOT NULL,
        record_id TEXT COLLATE "C" NOT NULL,
        user_id TEXT COLLATE "C" NOT NULL DEFAULT '',
        thread_id TEXT COLLATE "C" NOT NULL DEFAULT '',
        op TEXT NOT NULL,
        version INTEGER NOT NULL,
        before TEXT,
        after TEXT,
        at BIGINT NOT NULL
    )""",
    "CREATE INDEX history_record ON history(namespace, record_id, seq)",
    "CREATE INDEX history_user ON history(namespace, user_id)",
    "CREATE INDEX history_thread ON history(namespace, thread_id)",
    """CREATE TABLE events (
        seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        id TEXT COLLATE "C" NOT NULL,
        namespace TEXT COLLATE "C" NOT NULL,
        thread_id TEXT COLLATE "C" NOT NULL,
        user_id TEXT COLLATE "C" NOT NULL DEFAULT '',
        actor TEXT NOT NULL DEFAULT '',
        action TEXT NOT NULL,
        payload TEXT NOT NULL DEFAULT '{}',
        ts BIGINT NOT NULL
    )""",
    "CREATE UNIQUE INDEX events_ns_id ON events(namespace, id)",
    "CREATE INDEX events_thread ON events(namespace, thread_id, seq)",
    "CREATE INDEX events_user ON events(namespace, user_id)",
    """CREATE TABLE slots (
        namespace TEXT COLLATE "C" NOT NULL,
        thread_id TEXT COLLATE "C" NOT NULL,
        name TEXT COLLATE "C" NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (namespace, thread_id, name)
    )""",
    """CREATE TABLE slot_versions (
        namespace TEXT COLLATE "C" NOT NULL,
        thread_id TEXT COLLATE "C" NOT NULL,
        user_id TEXT COLLATE "C" NOT NULL DEFAULT '',
        version INTEGER NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (namespace, thread_id)
    )""",
    "CREATE INDEX slot_versions_user ON slot_versions(namespace, user_id)",
    """CREATE TABLE reembed_vectors (chunk_id BIGINT PRIMARY KEY, vector VECTOR NOT NULL)""",
]


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        for statement in SQLITE:
            op.execute(statement)
        return
    unaccent = None
    for statement in POSTGRES:
        if "{unaccent}" in statement:
            if unaccent is None:
                unaccent = bind.exec_driver_sql(
                    "SELECT quote_ident(n.nspname) FROM pg_extension e JOIN pg_namespace n "
                    "ON n.oid = e.extnamespace WHERE e.extname = 'unaccent'"
                ).scalar_one()
            statement = statement.replace("{unaccent}", unaccent)
        op.execute(statement)


def downgrade() -> None:
    forward_only()
