"""Records: insert with dedup, update, delete, and the reads by id, page, count and history.

Everything a write touches (record, chunks with vectors, keyword index rows, value index
rows, history, events) is one transaction through :meth:`Connections.write`; the vector
index is derived and caught up from the tables on the next read.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from engramdb.errors import ConflictError
from engramdb.models import AddResult, HistoryEntry, MemoryRecord
from engramdb.query.filters import Node, required_equalities
from engramdb.stores.prepared import (
    OnError,
    PreparedEvent,
    PreparedRecord,
    RecordChanges,
    RecordUpdate,
)
from engramdb.stores.rows import (
    DISTINCT_USERS_SQL,
    HISTORY_SQL,
    NEXT_EXPIRY_SQL,
    change_row,
    check_quota,
    checked_for_update,
    existing_id_outcome,
    history_entry,
    inserted_record,
    record_params,
    row_to_record,
    scalar_set_clauses,
)
from engramdb.stores.sqlite import gates
from engramdb.stores.sqlite.chunks import (
    RECORD_COLS,
    delete_chunks_of,
    insert_chunk_batch,
    insert_chunks,
    vector_bytes,
)
from engramdb.stores.sqlite.connection import Connections
from engramdb.stores.sqlite.entities import queue_extraction
from engramdb.stores.sqlite.keys import SCOPE_FIELDS, dedup_digest, dedup_of, scope_text
from engramdb.stores.sqlite.threads import insert_events
from engramdb.stores.sqlite.value_index import index_values
from engramdb.stores.transfer_rows import HISTORY_COLUMNS, insert_sql
from engramdb.timeutil import from_us_req, now_us

COLS = RECORD_COLS
INSERT_HISTORY = insert_sql("history", HISTORY_COLUMNS, "?")
_INSERT_RECORD = (
    "INSERT INTO records(id, namespace, user_id, agent_id, thread_id, type, text, "
    "content_hash, metadata, tags, source, importance, occurred_at, created_at, "
    "updated_at, valid_from, valid_to, expires_at, version, event_id, dedup) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,1,?,?) ON CONFLICT DO NOTHING"
)
_DEDUP_LOOKUP = f"SELECT {COLS} FROM records r WHERE namespace = ? AND dedup = ?"
_HISTORY_SQL = HISTORY_SQL.format(p="?")


def select_one(c: sqlite3.Connection, ns: str, record_id: str) -> MemoryRecord | None:
    """The record with this id in the namespace, read on ``c``; None when absent."""
    row = c.execute(
        f"SELECT {COLS} FROM records r WHERE namespace = ? AND id = ?", (ns, record_id)
    ).fetchone()
    return None if row is None else row_to_record(row)


def _record_row(ns: str, it: PreparedRecord, now: int) -> tuple[Any, ...]:
    """The values of :data:`_INSERT_RECORD` for one prepared record."""
    return (*record_params(ns, it, now), dedup_of(it))


class Records:
    """The record rows of the store, and every write of them."""

    def __init__(self, db: Connections, namespace_max_records: int = 0) -> None:
        self._db = db
        self._max_records = int(namespace_max_records)

    # ------------------------------------------------------------------ writes

    def add_records(
        self,
        namespace: str,
        items: list[PreparedRecord],
        on_error: OnError,
        events: list[PreparedEvent] | None = None,
    ) -> list[AddResult]:
        """Insert records (and events) in one transaction, deduplicating in the database.

        With ``on_error="abort"`` the first failing item rolls back everything and its error
        is raised (with ``details['index']``); with ``"skip"`` each item runs in a savepoint
        and a failing one is reported as rejected while the others commit.
        """
        results: list[AddResult] = []
        with self._db.write("adding records", [namespace]) as c:
            now = now_us()
            before = self._quota_count(c, namespace)
            if events:
                insert_events(c, namespace, events)
            if len({it.id for it in items}) == len(items):
                results = self._insert_batch(c, namespace, items, now, on_error)
                check_quota(namespace, self._max_records, before, results)
                return results
            # Repeated ids in one batch: item by item, so each repeat sees the earlier ones.
            for i, item in enumerate(items):
                if on_error == "skip":
                    c.execute("SAVEPOINT item")
                try:
                    results.append(self._insert_one(c, namespace, item, now, i))
                except ConflictError as exc:
                    if on_error == "abort":
                        exc.details["index"] = i
                        raise
                    c.execute("ROLLBACK TO item")
                    c.execute("RELEASE item")
                    results.append(AddResult(i, "rejected", None, exc.message))
                    continue
                if on_error == "skip":
                    c.execute("RELEASE item")
            check_quota(namespace, self._max_records, before, results)
        return results

    def _quota_count(self, c: sqlite3.Connection, namespace: str) -> int:
        """Records of the namespace, when a quota is set (0 otherwise: nothing to check).

        The write transaction (BEGIN IMMEDIATE) holds the file's only write lock, so no
        other writer can add between this count and the commit.
        """
        if not self._max_records:
            return 0
        return int(
            c.execute("SELECT count(*) FROM records WHERE namespace = ?", (namespace,)).fetchone()[
                0
            ]
        )

    def _insert_one(
        self, c: sqlite3.Connection, ns: str, it: PreparedRecord, now: int, index: int
    ) -> AddResult:
        row = c.execute(
            _INSERT_RECORD + " RETURNING rid",
            _record_row(ns, it, now),
        ).fetchone()
        if row is None:
            return self._conflict_result(c, ns, it, index)
        rid = row[0]
        insert_chunks(c, rid, it.chunks, scope_text(ns, it.user_id, it.thread_id))
        index_values(c, ns, [(rid, it.tags_json, it.metadata_json)])
        queue_extraction(c, [rid])
        now_dt = from_us_req(now)
        # No history row: the engine's history derives the add (``_derived_add``).
        return AddResult(index, "written", inserted_record(ns, it, now_dt))

    def _conflict_result(
        self, c: sqlite3.Connection, ns: str, it: PreparedRecord, index: int
    ) -> AddResult:
        """The outcome of an item whose INSERT hit a unique index (same id or same text)."""
        if it.caller_id:
            existing = select_one(c, ns, it.id)
            if existing is not None:
                return existing_id_outcome(existing, it, index)
        dup = c.execute(_DEDUP_LOOKUP, (ns, dedup_of(it))).fetchone()
        if dup is None:  # pragma: no cover - a conflict must have a cause
            raise ConflictError(f"record {it.id!r} conflicts with an existing record")
        return AddResult(index, "deduplicated", row_to_record(dup))

    def _insert_batch(
        self,
        c: sqlite3.Connection,
        ns: str,
        items: list[PreparedRecord],
        now: int,
        on_error: OnError,
    ) -> list[AddResult]:
        """Insert a batch with distinct ids through ``executemany`` (the bulk-ingest path).

        Dedup stays with the unique indexes: every row is offered with ``ON CONFLICT DO
        NOTHING`` and the rows that went in are read back by rowid (AUTOINCREMENT assigns
        increasing rowids in insertion order and we hold the write lock), so an item that is
        absent hit a unique index and gets the same outcome as on the one-by-one path. A
        rejected item (an id clash with a different text) inserted nothing, so no savepoint
        is needed to skip it.
        """
        base_rid = c.execute("SELECT coalesce(max(rid), 0) FROM records").fetchone()[0]
        c.executemany(_INSERT_RECORD, [_record_row(ns, it, now) for it in items])
        rids = dict(c.execute("SELECT id, rid FROM records WHERE rid > ?", (base_rid,)).fetchall())
        results: list[AddResult] = []
        chunk_rows: list[tuple[int, int, int, int, bytes]] = []
        tagged: list[tuple[int, str, str]] = []
        bodies: list[tuple[str, str]] = []
        scopes: dict[tuple[str, str], str] = {}
        now_dt = from_us_req(now)
        for i, it in enumerate(items):
            rid = rids.get(it.id)
            if rid is None:
                try:
                    results.append(self._conflict_result(c, ns, it, i))
                except ConflictError as exc:
                    if on_error == "abort":
                        exc.details["index"] = i
                        raise
                    results.append(AddResult(i, "rejected", None, exc.message))
                continue
            key = (it.user_id, it.thread_id)
            scope = scopes.get(key)
            if scope is None:
                scope = scopes[key] = scope_text(ns, it.user_id, it.thread_id)
            for ordinal, ch in enumerate(it.chunks):
                chunk_rows.append((rid, ordinal, ch.start, ch.end, vector_bytes(ch.vector)))
                bodies.append((ch.index_text, scope))
            tagged.append((rid, it.tags_json, it.metadata_json))
            results.append(AddResult(i, "written", inserted_record(ns, it, now_dt)))
        index_values(c, ns, tagged)
        queue_extraction(c, [t[0] for t in tagged])
        insert_chunk_batch(c, chunk_rows, bodies)
        # No history rows: an add is derivable (the record as inserted is the before-image
        # of its first change, or the live record), so Engine.history derives it: a row
        # per add, and its (namespace, user_id) index entry, would be written to the WAL
        # every batch for nothing.
        return results

    def update_record(
        self,
        namespace: str,
        record_id: str,
        changes: RecordChanges,
        expected_version: int | None,
    ) -> MemoryRecord:
        """Apply changes in one transaction, bump the version and write a history row."""
        with self._db.write("updating a record", [namespace]) as c:
            row = c.execute(
                f"SELECT {COLS} FROM records r WHERE namespace = ? AND id = ?",
                (namespace, record_id),
            ).fetchone()
            before = checked_for_update(
                None if row is None else row_to_record(row), namespace, record_id, expected_version
            )
            now = now_us()
            after = _apply(c, namespace, row[0], before, changes, now)
            c.execute(INSERT_HISTORY, change_row(namespace, before, after, now, changes.op))
            return after

    def update_records(
        self, namespace: str, updates: list[RecordUpdate]
    ) -> list[MemoryRecord | None]:
        """Apply many updates in one transaction (see ``Archive.update_records``); an
        update whose new text duplicates another record's is rolled back to its savepoint."""
        if not updates:
            return []
        with self._db.write("updating records", [namespace]) as c:
            rows = c.execute(
                f"SELECT {COLS} FROM records r WHERE namespace = ? AND id IN "
                "(SELECT value FROM json_each(?))",
                (namespace, json.dumps([u.record_id for u in updates])),
            ).fetchall()
            by_id = {r[1]: r for r in rows}
            now = now_us()
            out: list[MemoryRecord | None] = []
            history: list[tuple[Any, ...]] = []
            for u in updates:
                row = by_id.pop(u.record_id, None)  # a repeated id: its first update only
                before = None if row is None else row_to_record(row)
                if before is None or (
                    u.expected_version is not None and before.version != u.expected_version
                ):
                    out.append(None)
                    continue
                assert row is not None
                keyed = any(getattr(u.changes, f) is not None for f in _KEY_FIELDS)
                if keyed:
                    c.execute("SAVEPOINT record_update")
                try:
                    after = _apply(c, namespace, row[0], before, u.changes, now)
                except ConflictError:
                    c.execute("ROLLBACK TO record_update")
                    out.append(None)
                    continue
                finally:
                    if keyed:
                        c.execute("RELEASE record_update")
                history.append(change_row(namespace, before, after, now, u.changes.op))
                out.append(after)
            c.executemany(INSERT_HISTORY, history)
            return out

    def delete_records(self, namespace: str, ids: list[str] | None, node: Node | None) -> int:
        """Delete by ids or filter from every index in one transaction, leaving history."""
        with self._db.write("deleting records", [namespace]) as c:
            if ids is not None:
                rows = c.execute(
                    f"SELECT {COLS} FROM records r WHERE namespace = ? AND id IN "
                    "(SELECT value FROM json_each(?))",
                    (namespace, json.dumps(ids)),
                ).fetchall()
            else:
                sql, args = gates.gated_select(c, COLS, namespace, node)
                rows = c.execute(sql, args).fetchall()
            if not rows:
                return 0
            rids = [r[0] for r in rows]
            now = now_us()
            c.executemany(
                INSERT_HISTORY,
                [change_row(namespace, row_to_record(r), None, now) for r in rows],
            )
            delete_chunks_of(c, rids)
            c.execute(
                "DELETE FROM records WHERE rid IN (SELECT value FROM json_each(?))",
                (json.dumps(rids),),
            )
            return len(rids)

    # ------------------------------------------------------------------ reads

    def get_records(self, namespace: str, ids: list[str]) -> list[MemoryRecord]:
        """Return the records with these ids in the order asked; missing ones omitted."""
        rows = self._db.query(
            "reading records",
            f"SELECT {COLS} FROM records r WHERE namespace = ? AND id IN "
            "(SELECT value FROM json_each(?))",
            (namespace, json.dumps(ids)),
        )
        by_id = {r[1]: row_to_record(r) for r in rows}
        return [by_id[i] for i in ids if i in by_id]

    def list_records(
        self, namespace: str, node: Node | None, limit: int, after: str | None, descending: bool
    ) -> list[MemoryRecord]:
        """Return one keyset page of matching records ordered by id.

        A page of one thread reads the thread's index and sorts its rows: left to itself,
        the planner walked the whole namespace in id order (``records_ns_thread`` is in time
        order) to skip that sort, reading the namespace for a thread's few rows. A page of a
        tag or metadata value held by at most ``LIST_TAG_GATE`` records sorts those records
        (see gates.rare_values); a commoner one is met soon enough walking the namespace in
        id order.
        """
        cmp, order = ("<", "DESC") if descending else (">", "ASC")
        in_thread = any(f == "thread_id" for f, _ in required_equalities(node, SCOPE_FIELDS))
        with self._db.read("listing records") as c:
            hint = " INDEXED BY records_ns_thread" if in_thread else ""
            sql, args = gates.gated_select(
                c, COLS, namespace, node, most=gates.LIST_TAG_GATE, hint=hint
            )
            if after is not None:
                sql += f" AND r.id {cmp} ?"
                args.append(after)
            sql += f" ORDER BY r.id {order} LIMIT ?"
            args.append(limit)
            return [row_to_record(r) for r in c.execute(sql, args).fetchall()]

    def count_records(self, namespace: str, node: Node | None) -> int:
        """Count matching records."""
        with self._db.read("counting records") as c:
            sql, args = gates.gated_select(c, "count(*)", namespace, node)
            row = c.execute(sql, args).fetchone()
        return int(row[0])

    def history(self, namespace: str, record_id: str) -> list[HistoryEntry]:
        """Return every change of a record, oldest first."""
        with self._db.read("reading history") as c:
            rows = c.execute(_HISTORY_SQL, (namespace, record_id)).fetchall()
        return [history_entry(r) for r in rows]

    def user_ids(self, namespace: str, now: int) -> list[str]:
        """The distinct user scopes of the namespace's records live at ``now`` (see
        ``Store.user_ids``)."""
        with self._db.read("listing user scopes") as c:
            rows = c.execute(
                DISTINCT_USERS_SQL.format(p="?"), (namespace, "", now, namespace, now)
            ).fetchall()
        return [str(r[0]) for r in rows]

    def next_expiry(self, namespace: str, after: int) -> int | None:
        """Return the earliest ``expires_at`` after ``after`` (see ``Store.next_expiry``)."""
        with self._db.read("reading the next expiry") as c:
            row = c.execute(NEXT_EXPIRY_SQL.format(p="?"), (namespace, after)).fetchone()
        return None if row is None or row[0] is None else int(row[0])


# Changes that can collide with another record's dedup key (same scope and content hash).
_KEY_FIELDS = ("text", "content_hash", "type")


def _apply(
    c: sqlite3.Connection,
    namespace: str,
    rid: int,
    before: MemoryRecord,
    changes: RecordChanges,
    now: int,
) -> MemoryRecord:
    """Update row ``rid`` and its chunks and return the record after (no history row).

    Raises:
        ConflictError: the new text duplicates another record of the same scope.
    """
    sets, params = scalar_set_clauses(changes, "?")
    if changes.content_hash is not None or changes.type is not None:
        sets.append("dedup = ?")
        params.append(
            dedup_digest(
                before.user_id or "",
                before.agent_id or "",
                before.thread_id or "",
                changes.type or before.type,
                changes.content_hash or before.content_hash or "",
            )
        )
    if changes.metadata_json is not None:
        sets.append("metadata = ?")
        params.append(changes.metadata_json)
    if changes.add_tags or changes.remove_tags:
        sets.append(
            "tags = (SELECT json_group_array(v) FROM ("
            "SELECT value AS v FROM json_each(records.tags) "
            "WHERE value NOT IN (SELECT value FROM json_each(?)) "
            "UNION SELECT value FROM json_each(?) "
            "WHERE value NOT IN (SELECT value FROM json_each(?)) ORDER BY 1))"
        )
        rm = json.dumps(changes.remove_tags or [])
        params.extend([rm, json.dumps(changes.add_tags or []), rm])
    sets.append("version = version + 1")
    sets.append("updated_at = ?")
    params.append(now)
    try:
        c.execute(f"UPDATE records SET {', '.join(sets)} WHERE rid = ?", (*params, rid))
    except sqlite3.IntegrityError as exc:
        raise ConflictError(
            f"another record in the same scope already has this text ({before.id!r})",
            id=before.id,
        ) from exc
    if changes.chunks is not None:
        delete_chunks_of(c, [rid])
        insert_chunks(
            c,
            rid,
            changes.chunks,
            scope_text(namespace, before.user_id or "", before.thread_id or ""),
        )
    after = select_one(c, namespace, before.id)
    assert after is not None
    return after
