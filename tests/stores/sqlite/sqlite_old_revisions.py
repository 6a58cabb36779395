"""Turn a head-schema SQLite file back into what an earlier revision left, to test upgrades.

Each ``as_revision_*`` undoes the migrations after that revision (and labels the file so),
so opening the file again runs them on existing rows.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path


def _drop_value_index(db: Path, kind: str, revision: str) -> None:
    """Drop record_<kind> and its two triggers, and label the file ``revision``."""
    with sqlite3.connect(db) as conn:
        for trigger in ("update", "delete"):
            conn.execute(f"DROP TRIGGER records_{kind}_{trigger}")
        conn.execute(f"DROP TABLE record_{kind}")
        conn.execute(f"UPDATE alembic_version SET version_num = '{revision}'")


def as_revision_0017(db: Path) -> None:
    """Put a file back in the shape revision 0017 left it in (vectors inline in ``chunks``)."""
    with sqlite3.connect(db) as conn:
        conn.execute("ALTER TABLE chunks ADD COLUMN vector BLOB NOT NULL DEFAULT x''")
        conn.execute(
            "UPDATE chunks SET vector = "
            "(SELECT v.vector FROM chunk_vectors v WHERE v.chunk_id = chunks.id)"
        )
        conn.execute("DROP TABLE chunk_vectors")
        conn.execute("UPDATE alembic_version SET version_num = '0017'")


def as_revision_0011(db: Path) -> None:
    """Put a file back in the shape revision 0011 left it in (no service keys, no audit log,
    no thread checkpoints)."""
    as_revision_0017(db)
    with sqlite3.connect(db) as conn:
        for table in (
            "api_keys",
            "admin_audit",
            "thread_checkpoints",
            "thread_checkpoint_blobs",
            "thread_checkpoint_writes",
        ):
            conn.execute(f"DROP TABLE {table}")
        conn.execute("UPDATE alembic_version SET version_num = '0011'")


def as_revision_0009(db: Path) -> None:
    """Put a file back in the shape revision 0009 left it in (no metadata index)."""
    as_revision_0011(db)
    _drop_value_index(db, "meta", "0009")


def as_revision_0007(db: Path) -> None:
    """Put a file back in the shape revision 0007 left it in (no tag index)."""
    as_revision_0009(db)
    _drop_value_index(db, "tags", "0007")


def as_revision_0006(db: Path) -> None:
    """Put a file back in the shape revision 0006 left it in (keyword rows without scope)."""
    as_revision_0007(db)
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE VIRTUAL TABLE old_fts USING fts5("
            "body, tokenize = 'porter unicode61 remove_diacritics 2')"
        )
        conn.execute("INSERT INTO old_fts(rowid, body) SELECT rowid, body FROM chunks_fts")
        conn.execute("DROP TABLE chunks_fts")
        conn.execute("ALTER TABLE old_fts RENAME TO chunks_fts")
        conn.execute("UPDATE alembic_version SET version_num = '0006'")


def as_revision_0005(db: Path) -> None:
    """Put a file back in the shape revision 0005 left it in (dedup on six columns)."""
    as_revision_0006(db)
    with sqlite3.connect(db) as conn:
        conn.execute("DROP INDEX records_dedup")
        conn.execute("ALTER TABLE records DROP COLUMN dedup")
        conn.execute(
            "CREATE UNIQUE INDEX records_dedup ON records("
            "namespace, user_id, agent_id, thread_id, type, content_hash)"
        )
        conn.execute("UPDATE alembic_version SET version_num = '0005'")


def as_revision_0001(path: Path) -> None:
    """Turn a head-schema file into what engramdb at revision 0001 wrote (0002 only adds)."""
    as_revision_0005(path)
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE namespace_generations")
        conn.execute("DROP INDEX records_ns_expires")
        conn.execute("UPDATE alembic_version SET version_num = '0001'")
