"""Whole rows out and in (``export``/``import`` and ``migrate``), ids and history kept."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from typing import Any

from engramdb.errors import ConflictError
from engramdb.models import MemoryRecord
from engramdb.query.filters import Node
from engramdb.stores.rows import row_to_record
from engramdb.stores.sqlite.chunks import insert_chunk_batch, vector_bytes
from engramdb.stores.sqlite.connection import Connections
from engramdb.stores.sqlite.entities import queue_extraction
from engramdb.stores.sqlite.filters import compile_sqlite
from engramdb.stores.sqlite.keys import dedup_digest, scope_text
from engramdb.stores.sqlite.meta import write_meta
from engramdb.stores.sqlite.records import COLS, INSERT_HISTORY
from engramdb.stores.sqlite.value_index import index_values
from engramdb.stores.transfer_rows import (
    RECORD_COLUMNS,
    exported_events_and_slots,
    history_rows,
    import_events_and_slots,
    insert_sql,
    present_outcome,
    record_values,
)

# An imported record keeps its id, times and version; SQLite adds its dedup key.
_IMPORT_RECORD = insert_sql("records", (*RECORD_COLUMNS, "dedup"), "?", "ON CONFLICT DO NOTHING")


class RowTransfer:
    """Exports records, history, events and slots as rows, and imports them verbatim."""

    def __init__(self, db: Connections) -> None:
        self._db = db

    def iter_all(
        self, namespace: str | None, node: Node | None, after: tuple[str, str] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Yield every matching record with its chunk vectors and history, for export.

        ``after`` (namespace, id) starts after that record: how ``migrate`` resumes. Reads on
        a connection of its own, one snapshot for the whole iteration.
        """
        where, params = compile_sqlite(node)
        ns_sql, ns_args = ("r.namespace = ?", [namespace]) if namespace else ("1", [])
        if after is not None:
            ns_sql += " AND (r.namespace, r.id) > (?, ?)"
            ns_args = [*ns_args, *after]
        conn = self._db.connect(readonly=True)
        try:
            conn.execute("BEGIN")
            cur = conn.execute(
                f"SELECT {COLS} FROM records r WHERE {ns_sql} AND {where} "
                "ORDER BY r.namespace, r.id",
                (*ns_args, *params),
            )
            for row in cur:
                rec = row_to_record(row)
                chunks = conn.execute(
                    "SELECT c.start, c.end, v.vector, f.body FROM chunks c "
                    "JOIN chunk_vectors v ON v.chunk_id = c.id JOIN chunks_fts f "
                    "ON f.rowid = c.id WHERE c.rid = ? ORDER BY c.ord",
                    (row[0],),
                ).fetchall()
                hist = conn.execute(
                    "SELECT op, version, before, after, at FROM history WHERE namespace = ? AND "
                    "record_id = ? ORDER BY seq",
                    (rec.namespace, rec.id),
                ).fetchall()
                yield {"record": rec, "chunks": chunks, "history": hist}
            conn.execute("COMMIT")
        finally:
            conn.close()

    def load_history(
        self, rows: list[tuple[Any, ...]], meta: dict[str, str | None] | None = None
    ) -> int:
        """Insert history rows unless already present (see ``Transfer.load_history``)."""
        added = 0
        with self._db.write("loading history", bump={r[1] for r in rows}) as c:
            for r in rows:
                cur = c.execute(
                    "INSERT INTO history(namespace, record_id, user_id, thread_id, op, version, "
                    "before, after, at) SELECT ?,?,?,?,?,?,?,?,? WHERE NOT EXISTS (SELECT 1 FROM "
                    "history h WHERE h.namespace = ? AND h.record_id = ? AND h.op = ? AND "
                    "h.version = ? AND h.at = ?)",
                    (*r[1:10], r[1], r[2], r[5], r[6], r[9]),
                )
                added += cur.rowcount
            for key, value in (meta or {}).items():
                write_meta(c, key, value)
        return added

    def iter_orphan_history(self, after_seq: int, limit: int) -> list[tuple[Any, ...]]:
        """Return history rows of records that no longer exist, in ``seq`` order."""
        with self._db.read("reading history") as c:
            return [
                tuple(r)
                for r in c.execute(
                    "SELECT h.seq, h.namespace, h.record_id, h.user_id, h.thread_id, h.op, "
                    "h.version, h.before, h.after, h.at FROM history h WHERE h.seq > ? AND NOT "
                    "EXISTS (SELECT 1 FROM records r WHERE r.namespace = h.namespace AND "
                    "r.id = h.record_id) ORDER BY h.seq LIMIT ?",
                    (after_seq, limit),
                ).fetchall()
            ]

    def iter_digests(self, namespace: str) -> Iterator[tuple[str, int, str]]:
        """Yield ``(id, version, content_hash)`` of a namespace's records in id order."""
        conn = self._db.connect(readonly=True)
        try:
            yield from conn.execute(
                "SELECT id, version, content_hash FROM records WHERE namespace = ? ORDER BY id",
                (namespace,),
            )
        finally:
            conn.close()

    def iter_events_and_slots(self, namespace: str | None) -> Iterator[dict[str, Any]]:
        """Yield events and slot maps as export lines."""
        with self._db.read("exporting events") as c:
            lines = exported_events_and_slots(
                lambda sql, args: c.execute(sql, args).fetchall(), "?", namespace
            )
        yield from lines

    def import_records(
        self,
        batch: list[dict[str, Any]],
        meta: dict[str, str | None] | None = None,
        refuse_conflicts: bool = False,
    ) -> dict[str, int]:
        """Insert exported records verbatim (ids, times, versions, history) in one transaction.

        An id that already exists with the same text and version counts as unchanged; with
        anything else it counts as a conflict and is left as it is, or, with
        ``refuse_conflicts`` (``migrate``), raises ``ConflictError`` and the transaction is
        rolled back. ``meta`` values (a migration's batch-log entry) commit with the rows.

        Set-wise, as the add path's batch insert: every row is offered through one
        ``executemany`` with ``ON CONFLICT DO NOTHING``, the rows that went in are read
        back by rowid (AUTOINCREMENT gives increasing rowids and we hold the write lock),
        and only the rows that did not are looked up, in one query per namespace. Chunks,
        keyword rows, value-index rows and history then go in one statement each; a
        statement per record made the load several times slower than the same rows in bulk.
        """
        counts = {"written": 0, "unchanged": 0, "conflicts": 0}
        with self._db.write("importing records", [""]) as c:
            base_rid = c.execute("SELECT coalesce(max(rid), 0) FROM records").fetchone()[0]
            c.executemany(
                _IMPORT_RECORD,
                [
                    (
                        *record_values(r),
                        dedup_digest(
                            r["user_id"],
                            r["agent_id"],
                            r["thread_id"],
                            r["type"],
                            r["content_hash"],
                        ),
                    )
                    for r in batch
                ],
            )
            inserted = {
                (str(ns), str(rid_text)): int(rid)
                for rid, ns, rid_text in c.execute(
                    "SELECT rid, namespace, id FROM records WHERE rid > ?", (base_rid,)
                )
            }
            written: list[tuple[int, dict[str, Any]]] = []
            absent: list[dict[str, Any]] = []
            for r in batch:
                rid = inserted.pop((r["namespace"], r["id"]), None)
                if rid is None:  # hit a unique index, or repeats an id of this batch
                    absent.append(r)
                else:
                    written.append((rid, r))
            if absent:
                self._count_present(c, absent, counts, refuse_conflicts)
            self._write_derived(c, written)
            counts["written"] = len(written)
            for key, value in (meta or {}).items():
                write_meta(c, key, value)
        return counts

    @staticmethod
    def _count_present(
        c: sqlite3.Connection,
        rows: list[dict[str, Any]],
        counts: dict[str, int],
        refuse_conflicts: bool,
    ) -> None:
        """Count rows that were not inserted as unchanged or conflicts (see
        :func:`present_outcome`), reading the stored ones in one query per namespace.

        Raises:
            ConflictError: with ``refuse_conflicts``, on the first conflict (in batch order).
        """
        wanted: dict[str, list[str]] = {}
        for r in rows:
            wanted.setdefault(r["namespace"], []).append(r["id"])
        stored: dict[tuple[str, str], MemoryRecord] = {}
        for ns, ids in wanted.items():
            for row in c.execute(
                f"SELECT {COLS} FROM records r WHERE namespace = ? AND id IN "
                "(SELECT value FROM json_each(?))",
                (ns, json.dumps(ids)),
            ):
                rec = row_to_record(row)
                stored[(ns, rec.id)] = rec
        for r in rows:
            outcome = present_outcome(stored.get((r["namespace"], r["id"])), r)
            if outcome == "conflicts" and refuse_conflicts:
                raise ConflictError(
                    f"the target already holds record {r['id']!r} of namespace "
                    f"{r['namespace']!r} with different data, or another id holds "
                    "the same text in the same scope; nothing of the batch was written",
                    namespace=r["namespace"],
                    ids=[r["id"]],
                )
            counts[outcome] += 1

    @staticmethod
    def _write_derived(c: sqlite3.Connection, written: list[tuple[int, dict[str, Any]]]) -> None:
        """Write what goes with the inserted records: value-index rows, the extraction
        queue, chunks with their keyword rows, and history, one statement each."""
        if not written:
            return
        by_ns: dict[str, list[tuple[int, str, str]]] = {}
        chunk_rows: list[tuple[int, int, int, int, bytes]] = []
        bodies: list[tuple[str, str]] = []
        scopes: dict[tuple[str, str, str], str] = {}
        history: list[tuple[Any, ...]] = []
        for rid, r in written:
            by_ns.setdefault(r["namespace"], []).append((rid, r["tags"], r["metadata"]))
            key = (r["namespace"], r["user_id"], r["thread_id"])
            scope = scopes.get(key)
            if scope is None:
                scope = scopes[key] = scope_text(*key)
            for ordinal, (start, end, body, vec) in enumerate(r["chunks"]):
                chunk_rows.append((rid, ordinal, start, end, vector_bytes(vec)))
                bodies.append((body, scope))
            if r["history"]:
                history.extend(history_rows(r))
        for ns, values in by_ns.items():
            index_values(c, ns, values)
        queue_extraction(c, [rid for rid, _ in written])
        insert_chunk_batch(c, chunk_rows, bodies)
        if history:
            c.executemany(INSERT_HISTORY, history)

    def import_events_and_slots(self, lines: list[dict[str, Any]]) -> tuple[int, int]:
        """Insert exported events (idempotent by id) and slot maps; return their counts."""
        with self._db.write("importing events", [""]) as c:
            return import_events_and_slots(lines, c.execute, c.executemany, "?")
