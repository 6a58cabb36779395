"""Whole rows out of and into a PostgreSQL store: ``export``/``import`` and ``migrate``'s source.

Exports read one snapshot and stream records through a server-side cursor, with their chunk
vectors and history; imports insert exported rows verbatim (ids, times, versions, history)
in one transaction per batch. The line shapes are shared with SQLite
(:mod:`engramdb.stores.transfer_rows`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout

from engramdb.query.filters import Node
from engramdb.stores.postgres.connection import Database
from engramdb.stores.postgres.filters import compile_postgres
from engramdb.stores.postgres.inserts import insert_chunk_rows
from engramdb.stores.postgres.record_sql import COLS, INSERT_HISTORY, select_one
from engramdb.stores.postgres.vectors import parse_vector, vector_text
from engramdb.stores.rows import row_to_record
from engramdb.stores.transfer_rows import (
    RECORD_COLUMNS,
    exported_events_and_slots,
    history_rows,
    import_events_and_slots,
    insert_sql,
    present_outcome,
    record_values,
)

# An imported record keeps its id, times and version; ``metadata_raw`` keeps the JSON text.
_IMPORT_RECORD = insert_sql(
    "records",
    (*RECORD_COLUMNS, "metadata_raw"),
    "%s",
    "ON CONFLICT DO NOTHING",
    casts={"metadata": "jsonb", "tags": "jsonb"},
)


def _export_batch(
    conn: psycopg.Connection[Any], batch: list[tuple[Any, ...]]
) -> Iterator[dict[str, Any]]:
    rids = [r[0] for r in batch]
    chunks: dict[int, list[tuple[int, int, bytes, str]]] = {}
    for rid, start, end, emb, body in conn.execute(
        "SELECT rid, start_pos, end_pos, embedding::text, body FROM chunks "
        "WHERE rid = ANY(%s) ORDER BY rid, ord",
        (rids,),
    ).fetchall():
        chunks.setdefault(rid, []).append((start, end, parse_vector(emb).tobytes(), body))
    keys = [(r[2], r[1]) for r in batch]
    hist: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    for ns, rec_id, op, ver, before, after, at in conn.execute(
        "SELECT h.namespace, h.record_id, h.op, h.version, h.before, h.after, h.at "
        "FROM history h JOIN unnest(%s::text[], %s::text[]) AS k(ns, id) "
        "ON h.namespace = k.ns AND h.record_id = k.id ORDER BY h.seq",
        ([k[0] for k in keys], [k[1] for k in keys]),
    ).fetchall():
        hist.setdefault((ns, rec_id), []).append((op, ver, before, after, at))
    for row in batch:
        rec = row_to_record(row)
        yield {
            "record": rec,
            "chunks": chunks.get(row[0], []),
            "history": hist.get((rec.namespace, rec.id), []),
        }


class Transfer:
    """Export and import of whole rows of one store."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def iter_all(
        self, namespace: str | None, node: Node | None, after: tuple[str, str] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Yield every matching record with its chunk vectors and history, for export.

        One read-only snapshot; records stream through a server-side cursor in batches.
        ``after`` (namespace, id) starts after that record: how ``migrate`` resumes.
        """
        where, params = compile_postgres(node)
        ns_sql, ns_args = ("r.namespace = %s", [namespace]) if namespace else ("TRUE", [])
        if after is not None:
            ns_sql += " AND (r.namespace, r.id) > (%s, %s)"
            ns_args = [*ns_args, *after]
        try:
            with self._db.connection() as conn, conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                with conn.cursor(name="engramdb_export") as cur:
                    cur.itersize = 500
                    cur.execute(
                        f"SELECT {COLS} FROM records r WHERE {ns_sql} AND {where} "
                        "ORDER BY r.namespace, r.id",
                        (*ns_args, *params),
                    )
                    while True:
                        batch = cur.fetchmany(500)
                        if not batch:
                            break
                        yield from _export_batch(conn, batch)
        except (psycopg.Error, PoolTimeout) as exc:
            raise self._db.translate(exc, "exporting") from exc

    def iter_orphan_history(self, after_seq: int, limit: int) -> list[tuple[Any, ...]]:
        """Return history rows of records that no longer exist, in ``seq`` order."""
        with self._db.read("reading history") as c:
            return [
                tuple(r)
                for r in c.execute(
                    "SELECT h.seq, h.namespace, h.record_id, h.user_id, h.thread_id, h.op, "
                    "h.version, h.before, h.after, h.at FROM history h WHERE h.seq > %s AND NOT "
                    "EXISTS (SELECT 1 FROM records r WHERE r.namespace = h.namespace AND "
                    "r.id = h.record_id) ORDER BY h.seq LIMIT %s",
                    (after_seq, limit),
                ).fetchall()
            ]

    def iter_digests(self, namespace: str) -> Iterator[tuple[str, int, str]]:
        """Yield ``(id, version, content_hash)`` of a namespace's records in id order."""
        try:
            with (
                self._db.connection() as conn,
                conn.transaction(),
                conn.cursor(name="engramdb_digests") as cur,
            ):
                cur.itersize = 5000
                cur.execute(
                    "SELECT id, version, content_hash FROM records WHERE namespace = %s "
                    "ORDER BY id",
                    (namespace,),
                )
                for row in cur:
                    yield str(row[0]), int(row[1]), str(row[2])
        except (psycopg.Error, PoolTimeout) as exc:
            raise self._db.translate(exc, "reading record digests") from exc

    def iter_events_and_slots(self, namespace: str | None) -> Iterator[dict[str, Any]]:
        """Yield events and slot maps as export lines."""
        with self._db.read("exporting events", snapshot=True) as c:
            lines = exported_events_and_slots(
                lambda sql, args: c.execute(sql, args).fetchall(), "%s", namespace
            )
        yield from lines

    def import_records(self, batch: list[dict[str, Any]]) -> dict[str, int]:
        """Insert exported records verbatim (ids, times, versions, history) in one transaction.

        An id that already exists with the same text and version counts as unchanged; with
        anything else it counts as a conflict and is left as it is.
        """
        counts = {"written": 0, "unchanged": 0, "conflicts": 0}
        with self._db.write("importing records", [""]) as c, c.cursor() as cur:
            for r in batch:
                row = c.execute(
                    _IMPORT_RECORD + " RETURNING rid", (*record_values(r), r["metadata"])
                ).fetchone()
                if row is None:
                    counts[present_outcome(select_one(c, r["namespace"], r["id"]), r)] += 1
                    continue
                insert_chunk_rows(
                    c,
                    [
                        (row[0], r["namespace"], r["user_id"], o, s, e, body, vector_text(vec))
                        for o, (s, e, body, vec) in enumerate(r["chunks"])
                    ],
                )
                if r["history"]:
                    cur.executemany(INSERT_HISTORY, history_rows(r))
                counts["written"] += 1
        return counts

    def import_events_and_slots(self, lines: list[dict[str, Any]]) -> tuple[int, int]:
        """Insert exported events (idempotent by id) and slot maps; return their counts."""
        with self._db.write("importing events", [""]) as c, c.cursor() as cur:
            return import_events_and_slots(lines, c.execute, cur.executemany, "%s")
