"""Whole-store upkeep on PostgreSQL: erasure, namespaces, stats, and the integrity doctor.

``forget`` is erasure, unlike ``delete``: it keeps no before-image, and the tables are
vacuumed afterwards (or, with ``compact``, rewritten) so the space of the dead rows is
reclaimed. ``doctor`` checks the derived indexes (keyword rows, vectors, the vector
indexes) against the tables and can rebuild them.
"""

from __future__ import annotations

from typing import Any

import psycopg

from engramdb.errors import EngramError
from engramdb.stores.postgres.connection import Database
from engramdb.stores.postgres.keyword_index import missing_triggers
from engramdb.stores.postgres.meta import meta_value
from engramdb.stores.postgres.vectors import (
    BITS_INDEX,
    COVER_INDEX,
    COVER_MAX_DIM,
    HNSW_MAX_DIM,
    USER_INDEX,
    VectorIndexes,
)
from engramdb.stores.rows import CHECKPOINT_TABLES, forget_checkpoints

# The tables ``forget`` deletes from, vacuumed (or, with ``compact``, rewritten) after it.
_FORGET_TABLES = (
    "records",
    "chunks",
    "history",
    "events",
    "slots",
    "slot_versions",
    "archived_records",
    *CHECKPOINT_TABLES,
)


def _count(c: psycopg.Connection[Any], sql: str, *args: Any) -> int:
    row = c.execute(sql, args).fetchone()
    return int(row[0]) if row else 0


def _table_bytes(c: psycopg.Connection[Any]) -> int:
    """Bytes on disk of the tables ``forget`` erases from, with their indexes and TOAST."""
    row = c.execute(
        "SELECT sum(pg_total_relation_size(t::regclass)) FROM unnest(%s::text[]) t",
        (list(_FORGET_TABLES),),
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


class Admin:
    """Erasure, counts and integrity checks of one store."""

    def __init__(self, db: Database, indexes: VectorIndexes) -> None:
        self._db = db
        self._indexes = indexes

    def forget(
        self,
        namespace: str,
        user_id: str | None,
        thread_id: str | None,
        everything: bool,
        compact: bool = False,
    ) -> dict[str, int]:
        """Erase records, history, events and slots of a user, a thread or a namespace.

        Unlike ``delete`` this keeps no before-image; afterwards the tables are vacuumed so
        the dead rows' space is reclaimed and reused. ``VACUUM`` does not zero that space:
        the erased text stays in table and index pages until it is overwritten. ``compact``
        runs ``VACUUM FULL`` instead, which writes each table and its indexes anew without
        the dead rows (they are locked against reads and writes meanwhile; the HNSW graph
        is rebuilt). Copies in WAL segments, replicas and backups are outside its reach.

        Raises:
            EngramError: neither a user, a thread nor the whole namespace was named.
        """
        conds: list[str] = []
        args: list[Any] = []
        if user_id is not None:
            conds.append("user_id = %s")
            args.append(user_id)
        if thread_id is not None:
            conds.append("thread_id = %s")
            args.append(thread_id)
        if not conds and not everything:
            raise EngramError("forget needs a user_id, a thread_id or the whole namespace")
        cond = " AND ".join(["namespace = %s", *conds])
        args = [namespace, *args]
        counts: dict[str, int] = {}
        with self._db.write("forgetting", [namespace]) as c:
            counts["records"] = c.execute(f"DELETE FROM records WHERE {cond}", args).rowcount
            counts["history"] = c.execute(f"DELETE FROM history WHERE {cond}", args).rowcount
            counts["events"] = c.execute(f"DELETE FROM events WHERE {cond}", args).rowcount
            counts["archived"] = c.execute(
                f"DELETE FROM archived_records WHERE {cond}", args
            ).rowcount
            if user_id is None or thread_id is not None:
                slot_cond = ["namespace = %s"]
                slot_args: list[Any] = [namespace]
                if thread_id is not None:
                    slot_cond.append("thread_id = %s")
                    slot_args.append(thread_id)
                sc = " AND ".join(slot_cond)
                counts["slot_threads"] = c.execute(
                    f"DELETE FROM slot_versions WHERE {sc}", slot_args
                ).rowcount
                c.execute(f"DELETE FROM slots WHERE {sc}", slot_args)
            else:
                threads = [
                    r[0]
                    for r in c.execute(
                        "DELETE FROM slot_versions WHERE namespace = %s AND user_id = %s "
                        "RETURNING thread_id",
                        (namespace, user_id),
                    ).fetchall()
                ]
                c.execute(
                    "DELETE FROM slots WHERE namespace = %s AND thread_id = ANY(%s)",
                    (namespace, threads),
                )
                counts["slot_threads"] = len(threads)
            if user_id is None:
                # Agent checkpoints name no user: a thread or the namespace takes them.
                counts["checkpoints"] = forget_checkpoints(c, "%s", namespace, thread_id)
        with self._db.read("reclaiming space") as c:
            if compact:
                before = _table_bytes(c)
                c.execute(f"VACUUM FULL {', '.join(_FORGET_TABLES)}")
                counts["bytes_freed"] = max(0, before - _table_bytes(c))
            else:
                c.execute(f"VACUUM {', '.join(_FORGET_TABLES)}")
        return counts

    def namespaces(self) -> dict[str, int]:
        """Return record counts per namespace (namespaces with only events count 0)."""
        with self._db.read("listing namespaces") as c:
            rows = c.execute(
                "SELECT namespace, sum(n) FROM (SELECT namespace, count(*) AS n FROM records "
                "GROUP BY namespace UNION ALL SELECT DISTINCT namespace, 0 FROM events "
                "UNION ALL SELECT DISTINCT namespace, 0 FROM slot_versions) s "
                "GROUP BY namespace ORDER BY namespace"
            ).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def stats(self, namespace: str | None = None) -> dict[str, Any]:
        """Return counts (for one namespace, or all) and the database size."""
        with self._db.read("reading stats", snapshot=True) as c:

            def one(sql: str, *a: Any) -> int:
                row = c.execute(sql, a).fetchone()
                return int(row[0]) if row else 0

            if namespace is None:
                out: dict[str, Any] = {
                    "records": one("SELECT count(*) FROM records"),
                    "chunks": one("SELECT count(*) FROM chunks"),
                    "events": one("SELECT count(*) FROM events"),
                    "history": one("SELECT count(*) FROM history"),
                    "threads_with_slots": one("SELECT count(*) FROM slot_versions"),
                }
            else:
                out = {
                    "records": one("SELECT count(*) FROM records WHERE namespace = %s", namespace),
                    "events": one("SELECT count(*) FROM events WHERE namespace = %s", namespace),
                    "history": one("SELECT count(*) FROM history WHERE namespace = %s", namespace),
                    "threads_with_slots": one(
                        "SELECT count(*) FROM slot_versions WHERE namespace = %s", namespace
                    ),
                }
            out["database_bytes"] = one("SELECT pg_database_size(current_database())")
        out["backend"] = "postgres"
        out["url"] = self._db.where()
        out["indexed_vectors"] = out.get("chunks")
        if namespace is None and self._db.router is not None:
            out["replica"] = self._db.router.stats()
        return out

    def doctor(self, repair: bool = False) -> dict[str, Any]:
        """Check that every derived index agrees with the tables.

        Keyword rows must equal the analysis of each chunk's text, every vector must have
        the recorded dimension, every record must have a chunk, and the HNSW index must be
        valid. With ``repair`` stale keyword rows are recomputed and the HNSW index rebuilt.
        """
        problems: list[str] = []
        repaired: list[str] = []
        with self._db.read("checking integrity", snapshot=True) as c:
            dim_s = meta_value(c, "embedder_dim")
            chunks = _count(c, "SELECT count(*) FROM chunks")
            stale_fts = _count(
                c, "SELECT count(*) FROM chunks WHERE fts <> to_tsvector('engram', body)"
            )
            bad_vec = (
                _count(
                    c,
                    "SELECT count(*) FROM chunks WHERE vector_dims(embedding) <> %s",
                    int(dim_s),
                )
                if dim_s
                else 0
            )
            orphan_records = _count(
                c,
                "SELECT count(*) FROM records r WHERE NOT EXISTS "
                "(SELECT 1 FROM chunks c WHERE c.rid = r.rid)",
            )
            no_feed = missing_triggers(c)
            valid = {
                str(r[0])
                for r in c.execute(
                    "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                    "WHERE i.indisvalid AND i.indrelid = to_regclass('chunks')"
                ).fetchall()
            }
        hnsw_ok = "chunks_hnsw" in valid
        needs_hnsw = dim_s is not None and int(dim_s) <= HNSW_MAX_DIM
        user_index = (
            COVER_INDEX if dim_s is not None and int(dim_s) <= COVER_MAX_DIM else USER_INDEX
        )
        cover_ok = user_index in valid
        bits_ok = dim_s is None or BITS_INDEX in valid
        if stale_fts:
            problems.append(f"{stale_fts} keyword rows disagree with their chunk text")
        if bad_vec:
            problems.append(f"{bad_vec} vectors do not have the recorded dimension {dim_s}")
        if orphan_records:
            problems.append(f"{orphan_records} records have no indexed chunk")
        if needs_hnsw and not hnsw_ok:
            problems.append("the HNSW vector index is missing or invalid")
        if not cover_ok:
            problems.append(f"the user index {user_index} is missing or invalid")
        if not bits_ok:
            problems.append(f"the sign-bits index {BITS_INDEX} is missing or invalid")
        if no_feed:
            # Not repaired here: the triggers are the schema's (migration 0026). Without
            # them no process builds its keyword index, so searches stay correct in SQL.
            problems.append(
                f"the keyword feed triggers {', '.join(sorted(no_feed))} are missing or "
                "disabled: keyword search ranks in SQL until they are back (migration 0026)"
            )
        if repair:
            if stale_fts:
                with self._db.write("repairing the keyword index", [""]) as c:
                    c.execute(
                        "UPDATE chunks SET fts = to_tsvector('engram', body) "
                        "WHERE fts <> to_tsvector('engram', body)"
                    )
                repaired.append("keyword rows recomputed from the chunk text")
            if (needs_hnsw and not hnsw_ok) or not cover_ok or not bits_ok:
                with self._db.write("rebuilding the vector indexes", [""]) as c:
                    self._indexes.rebuild(c, None if dim_s is None else int(dim_s))
                repaired.append("vector indexes rebuilt")
        fixable = {"keyword", "HNSW", COVER_INDEX, USER_INDEX, BITS_INDEX}
        return {
            "ok": not problems
            or (repair and not no_feed and all(any(f in p for f in fixable) for p in problems)),
            "integrity_check": "ok" if not problems else "problems",
            "chunks": chunks,
            "keyword_rows": chunks - stale_fts,
            "vector_rows": chunks - bad_vec,
            "problems": problems,
            "repaired": repaired,
        }
