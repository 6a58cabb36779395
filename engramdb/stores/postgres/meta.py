"""The ``meta`` table of a PostgreSQL store: its identity, its embedder, and named entries.

``store_id`` and ``index_epoch`` are written once when a store is first opened. The embedder
(name and dimension) is recorded by the first ``check_embedder``, which also gives the
vector column its dimension and builds the vector indexes (the dimension is unknown when
the schema is created). Other entries are keys a caller owns, such as ``migrate``'s batch
log, written in the caller's own transaction where it must commit with rows it covers.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from engramdb.errors import EmbedderMismatchError
from engramdb.stores.postgres.connection import Database
from engramdb.stores.postgres.vectors import VectorIndexes

EMBEDDER_LOCK = 0x656E6772616D6465  # advisory-lock key: first recording of the embedder


def meta_value(conn: psycopg.Connection[Any], key: str) -> str | None:
    """Read one ``meta`` value on ``conn`` (None when unset)."""
    row = conn.execute("SELECT value FROM meta WHERE key = %s", (key,)).fetchone()
    return None if row is None else str(row[0])


def put_meta(c: psycopg.Connection[Any], key: str, value: str | None) -> None:
    """Set (or, with None, remove) one ``meta`` value in the transaction of ``c``."""
    if value is None:
        c.execute("DELETE FROM meta WHERE key = %s", (key,))
    else:
        c.execute(
            "INSERT INTO meta(key, value) VALUES (%s, %s) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )


class Meta:
    """Reads and writes of the ``meta`` table, each in a transaction of its own."""

    def __init__(self, db: Database, indexes: VectorIndexes) -> None:
        self._db = db
        self._indexes = indexes

    def init(self) -> None:
        """Give a new store its identity and index epoch (a no-op for an existing one)."""
        with self._db.write("initialising metadata") as c:
            c.execute(
                "INSERT INTO meta(key, value) VALUES ('index_epoch', %s), ('store_id', %s) "
                "ON CONFLICT DO NOTHING",
                (uuid.uuid4().hex, uuid.uuid4().hex),
            )

    def embedder_info(self) -> tuple[str, int] | None:
        """Return the (name, dim) recorded in the store, if any."""
        with self._db.read("reading the embedder", snapshot=True) as c:
            name, dim = meta_value(c, "embedder_name"), meta_value(c, "embedder_dim")
        return None if name is None or dim is None else (name, int(dim))

    def check_embedder(self, name: str, dim: int) -> None:
        """Record the embedder on first use; refuse a different one (invariant 7).

        The first recording also gives the vector column its dimension and builds the HNSW
        index (the dimension is unknown when the schema is created). Concurrent first
        openers serialise on an advisory lock, and only the one whose insert wrote both
        rows changes the column.

        Raises:
            EmbedderMismatchError: the store was built with another embedder.
        """
        info = self.embedder_info()
        if info is None:
            with self._db.write("recording the embedder") as c:
                c.execute("SELECT pg_advisory_xact_lock(%s)", (EMBEDDER_LOCK,))
                cur = c.execute(
                    "INSERT INTO meta(key, value) VALUES ('embedder_name', %s), "
                    "('embedder_dim', %s) ON CONFLICT DO NOTHING",
                    (name, str(dim)),
                )
                if cur.rowcount == 2:
                    self._indexes.set_dimension(c, int(dim))
            info = self.embedder_info()
        if info != (name, dim):
            stored = info or ("?", 0)
            raise EmbedderMismatchError(
                f"{self._db.where()} was built with embedder {stored[0]!r} (dim {stored[1]}), "
                f"not {name!r} (dim {dim}); open it with that embedder or run `engramdb reembed`",
                stored_name=info[0] if info else None,
                stored_dim=info[1] if info else None,
                name=name,
                dim=dim,
            )

    def store_id(self) -> str:
        """Return this store's identity (kept by ``restore``)."""
        with self._db.read("reading the store id") as c:
            return meta_value(c, "store_id") or ""

    def read(self, key: str) -> str | None:
        """Return one ``meta`` value (None when unset)."""
        with self._db.read("reading metadata") as c:
            return meta_value(c, key)

    def write(self, key: str, value: str | None) -> None:
        """Set (or, with None, remove) one ``meta`` value."""
        with self._db.write("writing metadata") as c:
            put_meta(c, key, value)

    def read_prefix(self, prefix: str) -> dict[str, str]:
        """Every ``meta`` value whose key starts with ``prefix`` (a migration's batch log)."""
        with self._db.read("reading metadata") as c:
            rows = c.execute(
                "SELECT key, value FROM meta WHERE starts_with(key, %s)", (prefix,)
            ).fetchall()
        return {str(r[0]): str(r[1]) for r in rows}

    def delete_prefix(self, prefix: str) -> int:
        """Remove every ``meta`` value whose key starts with ``prefix``; return how many."""
        with self._db.write("writing metadata") as c:
            cur = c.execute("DELETE FROM meta WHERE starts_with(key, %s)", (prefix,))
            return cur.rowcount
