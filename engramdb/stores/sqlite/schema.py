"""Opening a SQLite file at the right schema version (Alembic), safely across processes."""

from __future__ import annotations

import fcntl
import sqlite3
from pathlib import Path

from engramdb.errors import SchemaError, SchemaTooNewError
from engramdb.migrations import SCHEMA_HEAD, SCHEMA_REVISIONS, SCRIPT_LOCATION


def current_revision(conn: sqlite3.Connection) -> str | None:
    """Return the Alembic revision recorded in the file, or None for a fresh file."""
    row = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
    ).fetchone()
    if row is None:
        return None
    row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return None if row is None else str(row[0])


def ensure_schema(path: Path, conn: sqlite3.Connection, auto_migrate: bool) -> None:
    """Upgrade the file to the head revision, or refuse a file too new or too old.

    Concurrent openers serialise on a lock file beside the database (``<db>.migrate.lock``),
    so exactly one applies each migration and the others find it done.
    """
    rev = current_revision(conn)
    if rev == SCHEMA_HEAD:
        return
    if rev is not None and rev not in SCHEMA_REVISIONS:
        raise SchemaTooNewError(
            f"{path} has schema revision {rev!r}, newer than this engramdb knows "
            f"(head {SCHEMA_HEAD!r}); upgrade engramdb",
            revision=rev,
        )
    if not auto_migrate:
        raise SchemaError(
            f"{path} is at schema revision {rev!r}, this engramdb needs {SCHEMA_HEAD!r}; "
            "run `engramdb db upgrade` or enable auto_migrate",
            revision=rev,
        )
    lock_path = path.with_name(path.name + ".migrate.lock")
    with open(lock_path, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if current_revision(conn) != SCHEMA_HEAD:
                upgrade(path)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def upgrade(path: Path, revision: str = "head") -> None:
    """Run Alembic's upgrade on the file up to ``revision`` (head unless a test stops
    earlier); imports Alembic only when needed."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine

    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as connection:
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, revision)
    finally:
        engine.dispose()


def read_embedder(path: Path) -> tuple[str, int] | None:
    """The (name, dim) of the embedder a file was built with, read-only; None if unknown."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = dict(
                conn.execute(
                    "SELECT key, value FROM meta WHERE key IN ('embedder_name', 'embedder_dim')"
                ).fetchall()
            )
        finally:
            conn.close()
        return str(rows["embedder_name"]), int(rows["embedder_dim"])
    except (sqlite3.Error, KeyError, ValueError):
        return None
