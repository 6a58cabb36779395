"""The ``meta`` table and what the store says about itself: identity, embedder, generations.

``meta`` holds one value per key: ``store_id`` and ``index_epoch`` (made on first open),
``embedder_name`` and ``embedder_dim`` (recorded on first use), ``reembed_target`` during a
re-embedding, and whatever ``migrate`` checkpoints there.
"""

from __future__ import annotations

import sqlite3
import uuid

from engramdb.errors import EmbedderMismatchError
from engramdb.stores.rows import GENERATION_SQL
from engramdb.stores.sqlite.connection import Connections

_UPSERT = (
    "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
    "SET value = excluded.value"
)


def read_meta(conn: sqlite3.Connection, key: str) -> str | None:
    """One ``meta`` value, read on ``conn`` (inside the caller's transaction)."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def write_meta(conn: sqlite3.Connection, key: str, value: str | None) -> None:
    """Set one ``meta`` value on ``conn`` (inside the caller's write transaction)."""
    conn.execute(_UPSERT, (key, value))


class StoreMeta:
    """The store's identity, its embedder, and its namespaces' write generations."""

    def __init__(self, db: Connections) -> None:
        self._db = db

    def initialise(self) -> None:
        """Give a new file its identity and its vector-index epoch (kept if present)."""
        with self._db.write("initialising metadata") as c:
            c.execute(
                "INSERT INTO meta(key, value) VALUES ('index_epoch', ?) ON CONFLICT DO NOTHING",
                (uuid.uuid4().hex,),
            )
            c.execute(
                "INSERT INTO meta(key, value) VALUES ('store_id', ?) ON CONFLICT DO NOTHING",
                (uuid.uuid4().hex,),
            )

    def embedder_info(self) -> tuple[str, int] | None:
        """Return the (name, dim) recorded in the store, if any."""
        with self._db.read("reading the embedder") as c:
            name, dim = read_meta(c, "embedder_name"), read_meta(c, "embedder_dim")
        return None if name is None or dim is None else (name, int(dim))

    def check_embedder(self, name: str, dim: int) -> None:
        """Record the embedder on first use; refuse a different one (invariant 7)."""
        info = self.embedder_info()
        if info is None:
            with self._db.write("recording the embedder") as c:
                c.execute(
                    "INSERT INTO meta(key, value) VALUES ('embedder_name', ?), ('embedder_dim', ?)"
                    " ON CONFLICT DO NOTHING",
                    (name, str(dim)),
                )
            info = self.embedder_info()
        if info != (name, dim):
            raise EmbedderMismatchError(
                f"{self._db.path} was built with embedder {info[0]!r} (dim {info[1]}), "  # type: ignore[index]
                f"not {name!r} (dim {dim}); open it with that embedder or run `engramdb reembed`",
                stored_name=info[0] if info else None,
                stored_dim=info[1] if info else None,
                name=name,
                dim=dim,
            )

    def store_id(self) -> str:
        """Return this store's identity (kept by ``restore``; a ``backup`` copy gets its own)."""
        with self._db.read("reading the store id") as c:
            return read_meta(c, "store_id") or ""

    def generation(self, namespace: str) -> int:
        """Return the namespace's write generation (see ``Store.generation``)."""
        with self._db.read("reading the write generation") as c:
            return int(c.execute(GENERATION_SQL.format(p="?"), (namespace,)).fetchone()[0])
