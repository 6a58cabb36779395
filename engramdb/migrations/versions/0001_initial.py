"""Initial schema: records, chunks (vectors + keyword index), history, events, slots."""

from alembic import op

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


def upgrade() -> None:
    for statement in SQLITE:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("engramdb schemas are upgraded forward only; restore a backup")
