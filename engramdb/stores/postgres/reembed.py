"""Re-embedding a PostgreSQL store: new vectors in a side table, then one atomic switch.

New vectors go to ``reembed_vectors`` as they are computed, each batch committed, so an
interrupted run resumes where it stopped; ``meta.reembed_target`` names the embedder they
are for (a new target starts over). The switch moves every chunk to its new vector, gives
the column its new dimension, rebuilds the vector indexes and records the new embedder in
one transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import numpy as np

from engramdb.stores.postgres.connection import Database
from engramdb.stores.postgres.meta import meta_value
from engramdb.stores.postgres.vectors import VectorIndexes, vector_text


class Reembed:
    """The re-embedding steps of one store."""

    def __init__(self, db: Database, indexes: VectorIndexes) -> None:
        self._db = db
        self._indexes = indexes

    def begin(self, target: str) -> None:
        """Start (or resume) a re-embedding towards ``target``; a new target starts over."""
        with self._db.write("starting re-embedding") as c:
            if meta_value(c, "reembed_target") != target:
                c.execute("DELETE FROM reembed_vectors")
                c.execute(
                    "INSERT INTO meta(key, value) VALUES ('reembed_target', %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (target,),
                )

    def pending(self, limit: int) -> list[tuple[int, str]]:
        """Return up to ``limit`` chunks without a new vector yet: (chunk id, chunk text)."""
        with self._db.read("listing chunks to re-embed") as c:
            rows = c.execute(
                "SELECT c.id, substr(r.text, c.start_pos + 1, c.end_pos - c.start_pos) "
                "FROM chunks c JOIN records r ON r.rid = c.rid "
                "LEFT JOIN reembed_vectors n ON n.chunk_id = c.id "
                "WHERE n.chunk_id IS NULL ORDER BY c.id LIMIT %s",
                (limit,),
            ).fetchall()
        return [(int(r[0]), r[1]) for r in rows]

    def put(self, rows: list[tuple[int, np.ndarray]]) -> None:
        """Store new vectors for chunks (committed, so an interrupted run resumes here)."""
        with self._db.write("storing re-embedded vectors") as c, c.cursor() as cur:
            cur.executemany(
                "INSERT INTO reembed_vectors(chunk_id, vector) VALUES (%s, %s::vector) "
                "ON CONFLICT (chunk_id) DO UPDATE SET vector = excluded.vector",
                [(cid, vector_text(vec)) for cid, vec in rows],
            )

    def finish(self, name: str, dim: int, embed: Callable[[list[str]], np.ndarray]) -> None:
        """Switch every chunk to its new vector and the store to the new embedder, atomically.

        Chunks added since the last batch are embedded here, in the same transaction. The
        vector column loses its dimension for the switch and gets the new one after it;
        the vector indexes are rebuilt in the same transaction.
        """
        with self._db.write("switching embedder", [""]) as c:
            late = c.execute(
                "SELECT c.id, substr(r.text, c.start_pos + 1, c.end_pos - c.start_pos) "
                "FROM chunks c JOIN records r ON r.rid = c.rid "
                "LEFT JOIN reembed_vectors n ON n.chunk_id = c.id WHERE n.chunk_id IS NULL"
            ).fetchall()
            if late:
                vecs = embed([t for _, t in late])
                with c.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO reembed_vectors(chunk_id, vector) VALUES (%s, %s::vector)",
                        [(cid, vector_text(v)) for (cid, _), v in zip(late, vecs, strict=True)],
                    )
            self._indexes.untype(c)
            c.execute(
                "UPDATE chunks SET embedding = n.vector FROM reembed_vectors n "
                "WHERE n.chunk_id = chunks.id"
            )
            self._indexes.set_dimension(c, int(dim))
            for key, value in (
                ("embedder_name", name),
                ("embedder_dim", str(dim)),
                ("index_epoch", uuid.uuid4().hex),
            ):
                c.execute(
                    "INSERT INTO meta(key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE "
                    "SET value = excluded.value",
                    (key, value),
                )
            c.execute("DELETE FROM reembed_vectors")
            c.execute("DELETE FROM meta WHERE key = 'reembed_target'")
