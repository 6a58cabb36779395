"""Bringing a PostgreSQL database to the right schema version (Alembic), once across starts.

The same revisions as the SQLite store (``engramdb/migrations``, PostgreSQL branch of the
DDL). Concurrent openers serialise on a transaction-scoped advisory lock, so exactly one
applies each migration and the others, once they get the lock, find it done.
"""

from __future__ import annotations

from typing import Any

import psycopg

from engramdb.errors import SchemaError, SchemaTooNewError
from engramdb.migrations import SCHEMA_HEAD, SCHEMA_REVISIONS, SCRIPT_LOCATION

# "engramdb" in ASCII: the advisory-lock key of schema migrations.
MIGRATE_LOCK = 0x656E6772616D6462


def current_revision(conn: psycopg.Connection[Any]) -> str | None:
    """Return the Alembic revision recorded in the database, or None for a fresh one."""
    row = conn.execute("SELECT to_regclass('alembic_version')::text").fetchone()
    if row is None or row[0] is None:
        return None
    row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return None if row is None else str(row[0])


def ensure_schema(
    conninfo: str, conn: psycopg.Connection[Any], auto_migrate: bool, where: str
) -> None:
    """Upgrade the database to the head revision, or refuse one too new or too old.

    Raises:
        SchemaTooNewError: the database has a revision this engramdb does not know.
        SchemaError: the schema is out of date and ``auto_migrate`` is off.
    """
    rev = current_revision(conn)
    if rev == SCHEMA_HEAD:
        return
    if rev is not None and rev not in SCHEMA_REVISIONS:
        raise SchemaTooNewError(
            f"{where} has schema revision {rev!r}, newer than this engramdb knows "
            f"(head {SCHEMA_HEAD!r}); upgrade engramdb",
            revision=rev,
        )
    if not auto_migrate:
        raise SchemaError(
            f"{where} is at schema revision {rev!r}, this engramdb needs {SCHEMA_HEAD!r}; "
            "run `engramdb db upgrade` or enable auto_migrate",
            revision=rev,
        )
    upgrade(conninfo)


def upgrade(conninfo: str, target: str = "head") -> None:
    """Run Alembic's upgrade under the migration advisory lock (one migrator at a time)."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    engine = create_engine(
        "postgresql+psycopg://", creator=lambda: psycopg.connect(conninfo), poolclass=NullPool
    )
    try:
        with engine.begin() as connection:
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATE_LOCK})
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, target)
    finally:
        engine.dispose()
