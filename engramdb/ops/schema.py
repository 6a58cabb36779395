"""Store-level operations the surfaces need before (or instead of) opening a ``Memory``.

Upgrading a schema once before several server workers start, reading a file's schema
revision, peeking at the embedder a file was built with: each drives a store, not records,
so the CLI and the server reach them here instead of opening a store themselves.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from engramdb.config import Settings
from engramdb.errors import ValidationError
from engramdb.stores import open_store, parse_store_url
from engramdb.stores.opener import probe_store
from engramdb.stores.sqlite.schema import current_revision, ensure_schema, read_embedder


def upgrade_store(settings: Settings) -> None:
    """Open the store named by ``settings.url`` once (creating or upgrading its schema)."""
    open_store(settings.url, settings).close()


def check_reachable(settings: Settings) -> None:
    """Raise ``StoreUnavailableError`` (one line) when a PostgreSQL store's server is down."""
    probe_store(settings.url, settings)


def is_in_memory(url: str) -> bool:
    """True when ``url`` names a throwaway in-memory store (nothing to share between processes).

    Raises:
        ValidationError: the URL is not a store URL.
    """
    return parse_store_url(url).in_memory


def sqlite_file(url: str) -> Path:
    """The file of a SQLite store URL.

    Raises:
        ValidationError: the URL names an in-memory or a PostgreSQL store.
    """
    path = parse_store_url(url).path
    if path is None:
        raise ValidationError(f"{url!r} is not a SQLite file URL", field="url")
    return path


def sqlite_revision(path: Path) -> str | None:
    """The schema revision of a SQLite file (read-only; None when it has none yet)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return current_revision(conn)
    finally:
        conn.close()


def upgrade_sqlite_file(path: Path) -> None:
    """Create or upgrade a SQLite file's schema to the head revision (safe to run twice)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path))
    try:
        ensure_schema(path, conn, auto_migrate=True)
    finally:
        conn.close()


def stored_embedder(url: str) -> tuple[str, int] | None:
    """Peek (read-only) at the embedder a store file was built with; None when unknown.

    Only SQLite files are peeked at (a PostgreSQL store is checked when it opens).
    """
    try:
        path = parse_store_url(url).path
    except ValidationError:
        return None
    if path is None or not path.is_file():
        return None
    return read_embedder(path)
