"""Re-embedding: every chunk's vector replaced by a new embedder's, resumable, switched
atomically.

New vectors are stored beside the old ones (``reembed_vectors``) in committed batches, so an
interrupted run resumes where it stopped; the switch (every chunk's vector, the embedder in
``meta``, a new vector-index epoch) is one transaction, and searches use the old vectors
until then.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import numpy as np

from engramdb.stores.sqlite.connection import Connections
from engramdb.stores.sqlite.meta import read_meta, write_meta
from engramdb.stores.sqlite.vector_search import VectorSearch


class Reembedding:
    """One re-embedding run's steps: begin, pending, put, finish."""

    def __init__(self, db: Connections, vectors: VectorSearch) -> None:
        self._db = db
        self._vectors = vectors

    def reembed_begin(self, target: str) -> None:
        """Start (or resume) a re-embedding towards ``target``; a new target starts over."""
        with self._db.write("starting re-embedding") as c:
            if read_meta(c, "reembed_target") != target:
                c.execute("DELETE FROM reembed_vectors")
                write_meta(c, "reembed_target", target)

    def reembed_pending(self, limit: int) -> list[tuple[int, str]]:
        """Return up to ``limit`` chunks without a new vector yet: (chunk id, chunk text)."""
        with self._db.read("listing chunks to re-embed") as c:
            rows = c.execute(
                "SELECT c.id, substr(r.text, c.start + 1, c.end - c.start) FROM chunks c "
                "JOIN records r ON r.rid = c.rid LEFT JOIN reembed_vectors n ON n.chunk_id = c.id "
                "WHERE n.chunk_id IS NULL ORDER BY c.id LIMIT ?",
                (limit,),
            ).fetchall()
        return [(r[0], r[1]) for r in rows]

    def reembed_put(self, rows: list[tuple[int, np.ndarray]]) -> None:
        """Store new vectors for chunks (committed, so an interrupted run resumes here)."""
        with self._db.write("storing re-embedded vectors") as c:
            c.executemany(
                "INSERT OR REPLACE INTO reembed_vectors(chunk_id, vector) VALUES (?, ?)",
                [(cid, np.asarray(vec, np.float32).tobytes()) for cid, vec in rows],
            )

    def reembed_finish(self, name: str, dim: int, embed: Callable[[list[str]], np.ndarray]) -> None:
        """Switch every chunk to its new vector and the store to the new embedder, atomically."""
        with self._db.write("switching embedder", [""]) as c:
            late = c.execute(
                "SELECT c.id, substr(r.text, c.start + 1, c.end - c.start) FROM chunks c "
                "JOIN records r ON r.rid = c.rid LEFT JOIN reembed_vectors n ON n.chunk_id = c.id "
                "WHERE n.chunk_id IS NULL"
            ).fetchall()
            if late:
                vecs = embed([t for _, t in late])
                c.executemany(
                    "INSERT INTO reembed_vectors(chunk_id, vector) VALUES (?, ?)",
                    [
                        (cid, vec.astype(np.float32).tobytes())
                        for (cid, _), vec in zip(late, vecs, strict=True)
                    ],
                )
            c.execute(
                # INSERT, not UPDATE: a chunk whose vector row was lost gets one again
                "INSERT OR REPLACE INTO chunk_vectors(chunk_id, vector) SELECT n.chunk_id, "
                "n.vector FROM reembed_vectors n JOIN chunks c ON c.id = n.chunk_id"
            )
            for key, value in (
                ("embedder_name", name),
                ("embedder_dim", str(dim)),
                ("index_epoch", uuid.uuid4().hex),
            ):
                write_meta(c, key, value)
            c.execute("DELETE FROM reembed_vectors")
            c.execute("DELETE FROM meta WHERE key = 'reembed_target'")
        self._vectors.drop_index(remove_sidecar=True)
