"""The one place that turns a store URL into a store.

Every caller (the facades, the CLI, the server, migrate) goes through :func:`parse_store_url`
and :func:`open_store`, so a scheme is accepted or refused the same way everywhere.

Accepted URLs:

* ``sqlite:///path/to/file.db``, a bare path, or ``:memory:`` / ``sqlite://`` /
  ``sqlite:///:memory:`` for a throwaway in-memory store;
* ``postgresql://…``, ``postgres://…``, ``postgresql+psycopg://…`` and
  ``postgresql+asyncpg://…`` (the last two are SQLAlchemy driver spellings that teams copy
  from their settings; engramdb always speaks psycopg 3 and normalises them away).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from engramdb.config import Settings, url_without_password
from engramdb.errors import ValidationError
from engramdb.stores.base import Store

Backend = Literal["sqlite", "postgresql"]

MEMORY_URLS = frozenset({":memory:", "sqlite://", "sqlite:///:memory:"})
# SQLAlchemy's driver-qualified spellings are aliases: the store always uses psycopg 3.
POSTGRES_SCHEMES = (
    "postgresql://",
    "postgres://",
    "postgresql+psycopg://",
    "postgres+psycopg://",
    "postgresql+asyncpg://",
    "postgres+asyncpg://",
)


@dataclass(frozen=True, slots=True)
class StoreURL:
    """A parsed store URL.

    Attributes:
        backend: ``"sqlite"`` or ``"postgresql"``.
        url: the URL as given.
        path: the SQLite file (``None`` for an in-memory or PostgreSQL store).
        dsn: the libpq connection string for PostgreSQL (driver suffix removed).
    """

    backend: Backend
    url: str
    path: Path | None = None
    dsn: str | None = None

    @property
    def in_memory(self) -> bool:
        """True for a throwaway in-memory SQLite store."""
        return self.backend == "sqlite" and self.path is None

    @property
    def identity(self) -> str:
        """A stable name of the store with no password (the same file gives the same name)."""
        if self.backend == "postgresql":
            return url_without_password(self.url)
        if self.path is None:
            return ":memory:"
        return "sqlite:///" + str(self.path.resolve())


def parse_store_url(url: str) -> StoreURL:
    """Parse a store URL; see the module docstring for what is accepted.

    Raises:
        ValidationError: the URL is empty, not a string, or of an unknown scheme.
    """
    if not isinstance(url, str) or not url:
        raise ValidationError("the store URL is empty", field="url")
    for scheme in POSTGRES_SCHEMES:
        if url.startswith(scheme):
            return StoreURL("postgresql", url, dsn="postgresql://" + url[len(scheme) :])
    if url in MEMORY_URLS:
        return StoreURL("sqlite", url)
    if url.startswith("sqlite:///"):
        return StoreURL("sqlite", url, path=Path(url[len("sqlite:///") :]))
    if "://" not in url:
        return StoreURL("sqlite", url, path=Path(url))
    raise ValidationError(
        f"unsupported store URL {url_without_password(url)!r}: use sqlite:///path/to/file.db, "
        ":memory: or postgresql://user@host:port/database",
        field="url",
    )


def probe_store(url: str, settings: Settings) -> None:
    """Fail fast, in one clear error, when the server of a PostgreSQL store is unreachable.

    A SQLite store has no server: nothing to check.

    Raises:
        StoreUnavailableError: no connection within ``store_connect_timeout_s``.
    """
    parsed = parse_store_url(url)
    if parsed.backend == "postgresql":
        from engramdb.stores.postgres.connection import probe

        probe(parsed.dsn or parsed.url, settings.store_connect_timeout_s)


def open_store(url: str | StoreURL, settings: Settings | None = None, **overrides: Any) -> Store:
    """Open the store named by ``url``.

    Args:
        url: a store URL (see :func:`parse_store_url`) or an already parsed one.
        settings: the settings the store reads its options from (defaults: ``Settings()``).
        **overrides: settings fields that replace those of ``settings`` for this store,
            e.g. ``open_store(url, auto_migrate=False)``.

    Raises:
        ValidationError: a bad URL, or ``read_url`` set for a store that is not PostgreSQL.
        SchemaError: the store's schema is older and ``auto_migrate`` is off.
        StoreError: the store cannot be opened.

    Example::

        store = open_store("sqlite:///agent.db", ann_min_rows=50_000)
    """
    parsed = url if isinstance(url, StoreURL) else parse_store_url(url)
    base = settings if settings is not None else Settings()
    if overrides:
        base = base.model_copy(update=overrides)
    if base.read_url is not None and not (
        parsed.backend == "postgresql" and parse_store_url(base.read_url).backend == "postgresql"
    ):
        raise ValidationError(
            "read_url (a read replica) needs a PostgreSQL store and a postgresql:// replica "
            f"URL; got url scheme {parsed.url.split('://')[0]!r} and read_url scheme "
            f"{base.read_url.split('://')[0]!r}",
            field="read_url",
        )
    if parsed.backend == "postgresql":
        from engramdb.stores.postgres import PostgresStore

        return PostgresStore(
            parsed.dsn or parsed.url,
            auto_migrate=base.auto_migrate,
            pool_max=base.store_pool_max,
            ann_min_rows=base.ann_min_rows,
            ann_min_user_rows=base.ann_min_user_rows,
            namespace_max_records=base.namespace_max_records,
            hnsw_m=base.ann_connectivity,
            hnsw_ef_construction=base.ann_ef_add,
            hnsw_ef_search=base.ann_ef_search,
            retry_s=base.store_retry_s,
            connect_timeout_s=base.store_connect_timeout_s,
            io_timeout_s=base.store_io_timeout_s,
            read_url=base.read_url,
            read_max_lag_s=base.read_max_lag_s,
            keyword_index_min_rows=base.keyword_index_min_rows,
        )
    from engramdb.stores.sqlite import SQLiteStore

    return SQLiteStore(
        ":memory:" if parsed.path is None else str(parsed.path),
        synchronous=base.synchronous,
        busy_timeout_ms=base.busy_timeout_ms,
        mmap_mb=base.sqlite_mmap_mb,
        auto_migrate=base.auto_migrate,
        ann_min_rows=base.ann_min_rows,
        ann_min_user_rows=base.ann_min_user_rows,
        ann_connectivity=base.ann_connectivity,
        ann_ef_search=base.ann_ef_search,
        ann_ef_add=base.ann_ef_add,
        namespace_max_records=base.namespace_max_records,
        keyword_index_min_rows=base.keyword_index_min_rows,
    )
