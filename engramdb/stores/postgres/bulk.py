"""Bulk loading into PostgreSQL for ``migrate``: COPY, resume checkpoints, index rebuilds.

Records, chunks and history go in through COPY (chunks through a session-local staging
table and one ``INSERT … SELECT`` that computes each tsvector and joins the new row ids).
A caller's checkpoint (``meta`` entries) commits in the same transaction as the rows it
covers, under a shared advisory lock that :meth:`BulkLoad.settle_checkpoints` takes
exclusively, so a resumed run never copies a batch twice. Building the vector indexes once
after a load is several times faster than maintaining the graph row by row.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import errors as pgerr

from engramdb.errors import ConflictError, ValidationError
from engramdb.stores.base import BUILD_MEMORY
from engramdb.stores.postgres.connection import Database
from engramdb.stores.postgres.meta import meta_value, put_meta
from engramdb.stores.postgres.vectors import VectorIndexes, _Vector
from engramdb.stores.transfer_rows import (
    HISTORY_COLUMNS,
    RECORD_COLUMNS,
    history_rows,
    record_values,
)

# A write that commits a resume checkpoint (``meta`` of load_records / load_history) holds
# this lock shared for its transaction; settle_checkpoints takes it exclusively, so it
# returns only once every such transaction has ended, including one whose client died
# after sending COMMIT (the server still commits it; see settle_checkpoints).
CHECKPOINT_FENCE_SQL = (
    "SELECT pg_advisory_xact_lock{mode}(hashtext('engramdb:checkpoints:' || current_schema()))"
)
_COPY_RECORDS = f"COPY records({', '.join(RECORD_COLUMNS)}, metadata_raw) FROM STDIN"


class BulkLoad:
    """``migrate``'s target side of one store: loads, locks, and vector-index rebuilds."""

    def __init__(self, db: Database, indexes: VectorIndexes) -> None:
        self._db = db
        self._indexes = indexes

    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """Hold a session advisory lock named ``name`` (per schema) for the ``with`` body.

        A dedicated connection (outside the pool) holds it, so the lock ends with the
        process even on kill -9; a second holder waits until the first is done.
        """
        try:
            conn = psycopg.connect(self._db.conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise self._db.translate(exc, f"taking the {name} lock") from exc
        try:
            conn.execute(
                "SELECT pg_advisory_lock(hashtext(%s || current_schema())::bigint)",
                (f"engramdb:{name}:",),
            )
            yield
        finally:
            conn.close()  # ends the session: the lock goes with it

    def existing_digests(self, namespace: str, ids: list[str]) -> dict[str, tuple[int, str]]:
        """Map each of ``ids`` already stored in ``namespace`` to its (version, content hash)."""
        with self._db.read("comparing records") as c:
            rows = c.execute(
                "SELECT id, version, content_hash FROM records WHERE namespace = %s "
                "AND id = ANY(%s)",
                (namespace, ids),
            ).fetchall()
        return {str(r[0]): (int(r[1]), str(r[2])) for r in rows}

    def settle_checkpoints(self) -> None:
        """Wait until every write carrying a resume checkpoint has committed or rolled back.

        Why: a run killed while a batch's COMMIT was on its way leaves a transaction the
        server still commits, a moment after the client is gone. A resumed run that read
        its checkpoints before that commit would copy the batch again (the kill test
        caught it: a second loader mid-COMMIT when the first one's commit became
        visible). Checkpointing writes hold :data:`CHECKPOINT_FENCE_SQL`
        shared; taking it exclusively here waits them out. A dead client's transaction
        that has not sent COMMIT is rolled back when its server process sees the
        connection closed.
        """
        with self._db.read("waiting for checkpointing writes") as c:
            c.execute(CHECKPOINT_FENCE_SQL.format(mode=""))

    def load_records(
        self, batch: list[dict[str, Any]], meta: dict[str, str | None] | None = None
    ) -> dict[str, int]:
        """Bulk-insert exported records through COPY, and ``meta`` values, in one transaction.

        The batch has ``import_records``' shape (history ``before``/``after`` may be the
        JSON text itself, kept verbatim). Records stream into ``records`` with COPY; chunks
        go through a session-local staging table (COPY) and one ``INSERT … SELECT`` that
        computes each chunk's tsvector and joins the new row ids; history rows are copied
        as they are. ``meta`` rides in the same transaction so a caller's checkpoint commits
        exactly with the rows it covers (resume never duplicates).

        Ids already present with the same version and content hash count as unchanged.

        Raises:
            ConflictError: an id is present with another version or text, or another id
                holds the same text in the same scope (nothing of the batch is written).
        """
        counts = {"written": 0, "unchanged": 0}
        by_ns: dict[str, list[dict[str, Any]]] = {}
        for r in batch:
            by_ns.setdefault(r["namespace"], []).append(r)
        # Cached searches of these namespaces must not outlive the load (cache tier).
        with self._db.write("bulk-loading records", bump=list(by_ns)) as c:
            if meta:
                c.execute(CHECKPOINT_FENCE_SQL.format(mode="_shared"))
            fresh: list[dict[str, Any]] = []
            for ns, items in by_ns.items():
                have = {
                    str(row[0]): (int(row[1]), str(row[2]))
                    for row in c.execute(
                        "SELECT id, version, content_hash FROM records WHERE namespace = %s "
                        "AND id = ANY(%s)",
                        (ns, [r["id"] for r in items]),
                    ).fetchall()
                }
                for r in items:
                    old = have.get(r["id"])
                    if old is None:
                        fresh.append(r)
                    elif old == (int(r["version"]), r["content_hash"]):
                        counts["unchanged"] += 1
                    else:
                        raise ConflictError(
                            f"the target already holds record {r['id']!r} of namespace "
                            f"{ns!r} with different data (version {old[0]}, content hash "
                            f"{old[1][:12]}…; the source has version {r['version']}, "
                            f"{r['content_hash'][:12]}…)",
                            id=r["id"],
                            namespace=ns,
                        )
            if fresh:
                try:
                    self._copy_records(c, fresh)
                except pgerr.UniqueViolation as exc:
                    raise ConflictError(
                        "the target already holds a record with the same text and scope under "
                        f"another id: {str(exc).strip()}"
                    ) from exc
            counts["written"] = len(fresh)
            for key, value in (meta or {}).items():
                put_meta(c, key, value)
        return counts

    def load_history(
        self, rows: list[tuple[Any, ...]], meta: dict[str, str | None] | None = None
    ) -> int:
        """Copy history rows (``iter_orphan_history``'s shape, seq ignored) and ``meta``
        values in one transaction; return how many were new.

        A row already present (same namespace, record, op, version and time) is skipped,
        so copying the same rows twice leaves one of each.
        """
        with (
            self._db.write("bulk-loading history", bump={r[1] for r in rows}) as c,
            c.cursor() as cur,
        ):
            if meta:
                cur.execute(CHECKPOINT_FENCE_SQL.format(mode="_shared"))
            cur.execute(
                'CREATE TEMP TABLE IF NOT EXISTS engram_load_history (namespace text COLLATE "C", '
                'record_id text COLLATE "C", user_id text COLLATE "C", thread_id text '
                'COLLATE "C", op text, version int, before text, after text, at bigint) '
                "ON COMMIT DELETE ROWS"
            )
            with cur.copy(
                "COPY engram_load_history(namespace, record_id, user_id, thread_id, op, version, "
                "before, after, at) FROM STDIN"
            ) as cp:
                for r in rows:
                    cp.write_row(r[1:10])
            cur.execute(
                "INSERT INTO history(namespace, record_id, user_id, thread_id, op, version, "
                "before, after, at) SELECT s.* FROM engram_load_history s WHERE NOT EXISTS "
                "(SELECT 1 FROM history h WHERE h.namespace = s.namespace AND h.record_id = "
                "s.record_id AND h.op = s.op AND h.version = s.version AND h.at = s.at)"
            )
            added = cur.rowcount
            for key, value in (meta or {}).items():
                put_meta(c, key, value)
        return max(added, 0)

    def _copy_records(self, c: psycopg.Connection[Any], batch: list[dict[str, Any]]) -> None:
        """COPY a batch of exported records, their chunks and their history.

        Chunks are staged in binary COPY form (vectors as pgvector's binary floats): as text
        each vector would be formatted here and parsed again on the server.
        """
        self._db.send_vectors_binary(c)
        with c.cursor() as cur:
            with cur.copy(_COPY_RECORDS) as cp:
                for r in batch:
                    cp.write_row((*record_values(r), r["metadata"]))
            # Temporary and emptied at commit: the staging area of this session only.
            cur.execute(
                'CREATE TEMP TABLE IF NOT EXISTS engram_load_chunks (namespace text COLLATE "C", '
                'id text COLLATE "C", ord int, start_pos int, end_pos int, body text, '
                "embedding vector) ON COMMIT DELETE ROWS"
            )
            with cur.copy(
                "COPY engram_load_chunks(namespace, id, ord, start_pos, end_pos, body, "
                "embedding) FROM STDIN (FORMAT BINARY)"
            ) as cp:
                cp.set_types(["text", "text", "int4", "int4", "int4", "text", "vector"])
                for r in batch:
                    for o, (s, e, body, vec) in enumerate(r["chunks"]):
                        cp.write_row((r["namespace"], r["id"], o, s, e, body, _Vector(vec)))
            cur.execute(
                "INSERT INTO chunks(rid, namespace, user_id, ord, start_pos, end_pos, body, fts, "
                "embedding) SELECT r.rid, s.namespace, r.user_id, s.ord, s.start_pos, s.end_pos, "
                "s.body, to_tsvector('engram', s.body), s.embedding FROM engram_load_chunks s "
                "JOIN records r ON r.namespace = s.namespace AND r.id = s.id "
                "ORDER BY r.rid, s.ord"
            )
            with cur.copy(f"COPY history({', '.join(HISTORY_COLUMNS)}) FROM STDIN") as cp:
                for r in batch:
                    for row in history_rows(r):
                        cp.write_row(row)

    def vector_index_exists(self) -> bool:
        """Whether the HNSW index on ``chunks.embedding`` exists."""
        with self._db.read("checking the vector index") as c:
            row = c.execute("SELECT to_regclass('chunks_hnsw') IS NOT NULL").fetchone()
        return bool(row and row[0])

    def drop_vector_index(self) -> None:
        """Drop the vector indexes before a bulk load into an empty store (rebuilt after)."""
        with self._db.write("dropping the vector indexes") as c:
            self._indexes.drop(c)

    def build_vector_index(self, maintenance_work_mem: str = BUILD_MEMORY) -> None:
        """(Re)build the vector indexes in one pass over the loaded rows, then ANALYZE.

        Building once after a bulk load is several times faster than maintaining the graph
        row by row; ``maintenance_work_mem`` is raised for this transaction only, so the
        graph is built in memory (pgvector warns and slows down when it does not fit).
        The covering user index (:data:`engramdb.stores.postgres.vectors.COVER_MAX_DIM`)
        takes ~1 s per 100k chunks.

        Raises:
            ValidationError: ``maintenance_work_mem`` is not a size like ``512MB``.
        """
        if not re.fullmatch(r"[0-9]{1,6}(kB|MB|GB)", maintenance_work_mem):
            raise ValidationError(
                f"maintenance_work_mem {maintenance_work_mem!r} is not like '512MB'",
                field="maintenance_work_mem",
            )
        with self._db.write("building the vector indexes") as c:
            dim = meta_value(c, "embedder_dim")
            c.execute(f"SET LOCAL maintenance_work_mem = '{maintenance_work_mem}'")
            self._indexes.rebuild(c, None if dim is None else int(dim))
        with self._db.write("analyzing tables") as c:
            c.execute("ANALYZE records, chunks, history, events, slot_versions")
