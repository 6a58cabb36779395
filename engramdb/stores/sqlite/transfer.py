"""Whole rows out and in (``export``/``import`` and ``migrate``), ids and history kept."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from engramdb.errors import ConflictError
from engramdb.query.filters import Node
from engramdb.stores.rows import row_to_record
from engramdb.stores.sqlite.chunks import INSERT_CHUNK, INSERT_FTS
from engramdb.stores.sqlite.connection import Connections
from engramdb.stores.sqlite.entities import queue_extraction
from engramdb.stores.sqlite.filters import compile_sqlite
from engramdb.stores.sqlite.keys import dedup_digest, scope_text
from engramdb.stores.sqlite.meta import write_meta
from engramdb.stores.sqlite.records import COLS, INSERT_HISTORY, select_one
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
                    "SELECT c.start, c.end, c.vector, f.body FROM chunks c JOIN chunks_fts f "
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
        """
        counts = {"written": 0, "unchanged": 0, "conflicts": 0}
        with self._db.write("importing records", [""]) as c:
            for r in batch:
                dedup = dedup_digest(
                    r["user_id"], r["agent_id"], r["thread_id"], r["type"], r["content_hash"]
                )
                row = c.execute(
                    _IMPORT_RECORD + " RETURNING rid", (*record_values(r), dedup)
                ).fetchone()
                if row is None:
                    outcome = present_outcome(select_one(c, r["namespace"], r["id"]), r)
                    if outcome == "conflicts" and refuse_conflicts:
                        raise ConflictError(
                            f"the target already holds record {r['id']!r} of namespace "
                            f"{r['namespace']!r} with different data, or another id holds "
                            "the same text in the same scope; nothing of the batch was written",
                            namespace=r["namespace"],
                            ids=[r["id"]],
                        )
                    counts[outcome] += 1
                    continue
                index_values(c, r["namespace"], [(row[0], r["tags"], r["metadata"])])
                queue_extraction(c, [row[0]])
                scope = scope_text(r["namespace"], r["user_id"], r["thread_id"])
                for ordinal, (start, end, body, vec) in enumerate(r["chunks"]):
                    cur = c.execute(
                        INSERT_CHUNK,
                        (row[0], ordinal, start, end, np.asarray(vec, np.float32).tobytes()),
                    )
                    c.execute(INSERT_FTS, (cur.lastrowid, body, scope))
                c.executemany(INSERT_HISTORY, history_rows(r))
                counts["written"] += 1
            for key, value in (meta or {}).items():
                write_meta(c, key, value)
        return counts

    def import_events_and_slots(self, lines: list[dict[str, Any]]) -> tuple[int, int]:
        """Insert exported events (idempotent by id) and slot maps; return their counts."""
        with self._db.write("importing events", [""]) as c:
            return import_events_and_slots(lines, c.execute, c.executemany, "?")
