"""Thread checkpoints of agent frameworks (LangGraph's checkpointer), on both stores.

Three tables, scoped by namespace like every other: ``thread_checkpoints`` (one row per
checkpoint: the framework's serialised checkpoint without its channel values, its JSON
metadata, the channel versions it reads and its parent), ``thread_checkpoint_blobs`` (one
row per channel value and version, so an unchanged channel is stored once however many
checkpoints read it) and ``thread_checkpoint_writes`` (the pending writes of tasks, per
checkpoint). engramdb never decodes the bytes: the serializer is the framework's. The
names are not LangGraph's own (``checkpoints``...), so LangGraph's savers can share a
database or schema with an engramdb store.
"""

from engramdb.migrations.steps import forward_only, run_statements

revision = "0013"
down_revision = "0012"

SQLITE = [
    """CREATE TABLE thread_checkpoints (
        namespace TEXT NOT NULL,
        thread_id TEXT NOT NULL,
        checkpoint_ns TEXT NOT NULL,
        checkpoint_id TEXT NOT NULL,
        parent_id TEXT,
        type TEXT NOT NULL,
        checkpoint BLOB NOT NULL,
        metadata TEXT NOT NULL,
        versions TEXT NOT NULL,
        run_id TEXT,
        created_at INTEGER NOT NULL,
        UNIQUE (namespace, thread_id, checkpoint_ns, checkpoint_id)
    )""",
    """CREATE INDEX thread_checkpoints_run ON thread_checkpoints(namespace, run_id)
        WHERE run_id IS NOT NULL""",
    """CREATE TABLE thread_checkpoint_blobs (
        namespace TEXT NOT NULL,
        thread_id TEXT NOT NULL,
        checkpoint_ns TEXT NOT NULL,
        channel TEXT NOT NULL,
        version TEXT NOT NULL,
        type TEXT NOT NULL,
        blob BLOB,
        UNIQUE (namespace, thread_id, checkpoint_ns, channel, version)
    )""",
    """CREATE TABLE thread_checkpoint_writes (
        namespace TEXT NOT NULL,
        thread_id TEXT NOT NULL,
        checkpoint_ns TEXT NOT NULL,
        checkpoint_id TEXT NOT NULL,
        task_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        task_path TEXT NOT NULL,
        channel TEXT NOT NULL,
        type TEXT NOT NULL,
        blob BLOB NOT NULL,
        UNIQUE (namespace, thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
    )""",
]

POSTGRES = [
    """CREATE TABLE IF NOT EXISTS thread_checkpoints (
        namespace TEXT NOT NULL,
        thread_id TEXT NOT NULL,
        checkpoint_ns TEXT NOT NULL,
        checkpoint_id TEXT NOT NULL,
        parent_id TEXT,
        type TEXT NOT NULL,
        checkpoint BYTEA NOT NULL,
        metadata JSONB NOT NULL,
        versions JSONB NOT NULL,
        run_id TEXT,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (namespace, thread_id, checkpoint_ns, checkpoint_id)
    )""",
    """CREATE INDEX IF NOT EXISTS thread_checkpoints_run ON thread_checkpoints(namespace, run_id)
        WHERE run_id IS NOT NULL""",
    """CREATE TABLE IF NOT EXISTS thread_checkpoint_blobs (
        namespace TEXT NOT NULL,
        thread_id TEXT NOT NULL,
        checkpoint_ns TEXT NOT NULL,
        channel TEXT NOT NULL,
        version TEXT NOT NULL,
        type TEXT NOT NULL,
        blob BYTEA,
        PRIMARY KEY (namespace, thread_id, checkpoint_ns, channel, version)
    )""",
    """CREATE TABLE IF NOT EXISTS thread_checkpoint_writes (
        namespace TEXT NOT NULL,
        thread_id TEXT NOT NULL,
        checkpoint_ns TEXT NOT NULL,
        checkpoint_id TEXT NOT NULL,
        task_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        task_path TEXT NOT NULL,
        channel TEXT NOT NULL,
        type TEXT NOT NULL,
        blob BYTEA NOT NULL,
        PRIMARY KEY (namespace, thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
    )""",
]


def upgrade() -> None:
    run_statements(sqlite=SQLITE, postgres=POSTGRES)


def downgrade() -> None:
    forward_only()
