"""Records on PostgreSQL: add, update, delete, and the reads by id, by filter and of history.

Every write is one transaction that also bumps the namespace's write generation (the cache
tier's guard). An add inserts through :mod:`engramdb.stores.postgres.inserts` and checks the
namespace quota after its inserts, so rolling back is the refusal; updates and deletes write
the before-image to ``history``. Filters compile to bound SQL
(:func:`engramdb.stores.postgres.filters.compile_postgres`), and every statement is scoped
by ``namespace``.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import errors as pgerr

from engramdb.errors import CommitUnknownError, ConflictError
from engramdb.models import AddResult, HistoryEntry, MemoryRecord
from engramdb.query.filters import Node
from engramdb.stores.postgres.connection import Database
from engramdb.stores.postgres.filters import compile_postgres
from engramdb.stores.postgres.inserts import (
    chunk_values,
    insert_batch,
    insert_chunk_rows,
    insert_chunks,
    insert_one,
)
from engramdb.stores.postgres.record_sql import (
    COLS,
    INSERT_HISTORY,
    SELECT_HISTORY,
    lock_rows,
)
from engramdb.stores.postgres.replica import INSERT_LSN_SQL, parse_lsn
from engramdb.stores.postgres.threads import insert_events
from engramdb.stores.prepared import (
    OnError,
    PreparedEvent,
    PreparedRecord,
    RecordChanges,
    RecordUpdate,
)
from engramdb.stores.rows import (
    DISTINCT_USERS_SQL,
    GENERATION_SQL,
    NEXT_EXPIRY_SQL,
    change_row,
    check_quota,
    checked_for_update,
    history_entry,
    row_to_record,
    scalar_set_clauses,
)
from engramdb.timeutil import now_us


class Records:
    """The record reads and writes of one store."""

    def __init__(self, db: Database, namespace_max_records: int) -> None:
        self._db = db
        self.namespace_max_records = int(namespace_max_records)

    # ------------------------------------------------------------------ writes

    def add_records(
        self,
        namespace: str,
        items: list[PreparedRecord],
        on_error: OnError,
        events: list[PreparedEvent] | None = None,
    ) -> list[AddResult]:
        """Insert records (and events) in one transaction, deduplicating in the database.

        With ``on_error="abort"`` the first conflicting item rolls back everything and its
        error is raised (with ``details['index']``); with ``"skip"`` each item runs in a
        savepoint and a conflicting one is reported as rejected while the others commit.

        Raises:
            CommitUnknownError: the connection was lost after COMMIT was sent; its
                ``details["ids"]`` are the batch's ids, safe to add again (idempotent add).
        """
        try:
            return self._insert_records(namespace, items, on_error, events)
        except CommitUnknownError as exc:
            exc.details["ids"] = [it.id for it in items]
            raise

    def _insert_records(
        self,
        namespace: str,
        items: list[PreparedRecord],
        on_error: OnError,
        events: list[PreparedEvent] | None,
    ) -> list[AddResult]:
        results: list[AddResult] = []
        with self._db.write("adding records", [namespace]) as c:
            now = now_us()
            before = self._quota_count(c, namespace)
            if events:
                insert_events(c, namespace, events)
            if len({it.id for it in items}) == len(items):
                self._db.send_vectors_binary(c)
                results = insert_batch(c, namespace, items, now, on_error)
                check_quota(namespace, self.namespace_max_records, before, results)
                return results
            # Repeated ids in one batch: item by item, so each repeat sees the earlier ones.
            for i, item in enumerate(items):
                if on_error == "skip":
                    try:
                        with c.transaction():
                            results.append(insert_one(c, namespace, item, now, i))
                    except ConflictError as exc:
                        results.append(AddResult(i, "rejected", None, exc.message))
                else:
                    try:
                        results.append(insert_one(c, namespace, item, now, i))
                    except ConflictError as exc:
                        exc.details["index"] = i
                        raise
            check_quota(namespace, self.namespace_max_records, before, results)
        return results

    def _quota_count(self, c: psycopg.Connection[Any], namespace: str) -> int:
        """Records of the namespace, when a quota is set (0 otherwise: nothing to check).

        Concurrent adds to one namespace would each count the same total and together pass
        the quota (write skew), so the count is taken under a lock on the namespace's
        generation row: the upsert below locks it until COMMIT (the write bumps that row
        at the end anyway), and adds to the namespace queue behind each other. Under READ
        COMMITTED the count, a new statement, sees what the previous holder committed.
        """
        if not self.namespace_max_records:
            return 0
        c.execute(
            "INSERT INTO namespace_generations(namespace, generation) VALUES (%s, 0) "
            "ON CONFLICT (namespace) DO UPDATE SET generation = namespace_generations.generation",
            (namespace,),
        )
        row = c.execute(
            "SELECT count(*) FROM records WHERE namespace = %s", (namespace,)
        ).fetchone()
        return int(row[0]) if row else 0

    def update_record(
        self,
        namespace: str,
        record_id: str,
        changes: RecordChanges,
        expected_version: int | None,
    ) -> MemoryRecord:
        """Apply changes in one transaction, bump the version and write a history row.

        Raises:
            NotFoundError: no such record.
            ConflictError: another version was expected, or the new text duplicates
                another record of the same scope.
        """
        with self._db.write("updating a record", [namespace]) as c:
            row = c.execute(
                f"SELECT {COLS} FROM records r WHERE namespace = %s AND id = %s FOR UPDATE",
                (namespace, record_id),
            ).fetchone()
            before = checked_for_update(
                None if row is None else row_to_record(row), namespace, record_id, expected_version
            )
            assert row is not None  # checked_for_update raised otherwise
            now = now_us()
            after = _apply(c, namespace, row[0], before, changes, now)
            c.execute(INSERT_HISTORY, change_row(namespace, before, after, now, changes.op))
            return after

    def update_records(
        self, namespace: str, updates: list[RecordUpdate]
    ) -> list[MemoryRecord | None]:
        """Apply many updates in one transaction (see ``Archive.update_records``).

        The rows are locked in one statement (in ``rid`` order, as every batch locks them);
        each update is then one ``UPDATE ... RETURNING`` (in a savepoint only when it
        touches the dedup key, so that one duplicate text refuses only itself), and the
        chunk rewrites and history rows go in one statement each.
        """
        if not updates:
            return []
        with self._db.write("updating records", [namespace]) as c:
            by_id = lock_rows(c, namespace, [u.record_id for u in updates])
            now = now_us()
            out: list[MemoryRecord | None] = [None] * len(updates)
            befores: dict[int, tuple[int, MemoryRecord]] = {}
            # Updates that cannot collide with another record run as one executemany per
            # statement shape (pipelined); one that may collide gets its own savepoint.
            shapes: dict[str, list[tuple[int, tuple[Any, ...]]]] = {}
            for i, u in enumerate(updates):
                row = by_id.pop(u.record_id, None)  # a repeated id: its first update only
                before = None if row is None else row_to_record(row)
                if before is None or (
                    u.expected_version is not None and before.version != u.expected_version
                ):
                    continue
                assert row is not None
                befores[i] = (row[0], before)
                if _keyed(u.changes):
                    try:
                        out[i] = _apply(c, namespace, row[0], before, u.changes, now, True)
                    except ConflictError:
                        del befores[i]
                else:
                    sql, params = _update_sql(u.changes, now)
                    shapes.setdefault(sql, []).append((i, (*params, row[0])))
            with c.cursor() as cur:
                for sql, calls in shapes.items():
                    cur.executemany(sql, [p for _, p in calls], returning=True)
                    for n, (i, _) in enumerate(calls):
                        if n:
                            cur.nextset()
                        got = cur.fetchone()
                        assert got is not None  # the row is locked by this transaction
                        out[i] = row_to_record(got)
            history: list[tuple[Any, ...]] = []
            rewrite: list[int] = []
            chunk_rows: list[tuple[Any, ...]] = []
            for i, (rid, before) in befores.items():
                u, after = updates[i], out[i]
                assert after is not None
                if u.changes.chunks is not None:
                    rewrite.append(rid)
                    chunk_rows.extend(
                        chunk_values(rid, namespace, before.user_id or "", u.changes.chunks)
                    )
                history.append(change_row(namespace, before, after, now, u.changes.op))
            if rewrite:
                c.execute("DELETE FROM chunks WHERE rid = ANY(%s)", (rewrite,))
                insert_chunk_rows(c, chunk_rows)
            if history:
                with c.cursor() as cur:
                    cur.executemany(INSERT_HISTORY, history)
            return out

    def delete_records(self, namespace: str, ids: list[str] | None, node: Node | None) -> int:
        """Delete by ids or filter from every index in one transaction, leaving history."""
        with self._db.write("deleting records", [namespace]) as c:
            if ids is not None:
                rows = c.execute(
                    f"SELECT {COLS} FROM records r WHERE namespace = %s AND id = ANY(%s) "
                    "FOR UPDATE",
                    (namespace, list(ids)),
                ).fetchall()
            else:
                where, params = compile_postgres(node)
                rows = c.execute(
                    f"SELECT {COLS} FROM records r WHERE r.namespace = %s AND {where} FOR UPDATE",
                    (namespace, *params),
                ).fetchall()
            if not rows:
                return 0
            rids = [r[0] for r in rows]
            now = now_us()
            with c.cursor() as cur:
                cur.executemany(
                    INSERT_HISTORY,
                    [change_row(namespace, row_to_record(r), None, now) for r in rows],
                )
            # Chunks (vectors and keyword rows) go with their record (ON DELETE CASCADE).
            c.execute(
                "DELETE FROM records WHERE namespace = %s AND rid = ANY(%s)", (namespace, rids)
            )
            return len(rids)

    # ------------------------------------------------------------------ reads

    def get_records(self, namespace: str, ids: list[str]) -> list[MemoryRecord]:
        """Return the records with these ids in the order asked; missing ones omitted."""
        with self._db.read("reading records", route=True) as c:
            rows = c.execute(
                f"SELECT {COLS} FROM records r WHERE namespace = %s AND id = ANY(%s)",
                (namespace, list(ids)),
            ).fetchall()
        by_id = {r[1]: row_to_record(r) for r in rows}
        return [by_id[i] for i in ids if i in by_id]

    def list_records(
        self, namespace: str, node: Node | None, limit: int, after: str | None, descending: bool
    ) -> list[MemoryRecord]:
        """Return one keyset page of matching records ordered by id."""
        where, params = compile_postgres(node)
        cmp, order = ("<", "DESC") if descending else (">", "ASC")
        sql = f"SELECT {COLS} FROM records r WHERE r.namespace = %s AND {where}"
        args: list[Any] = [namespace, *params]
        if after is not None:
            sql += f" AND r.id {cmp} %s"
            args.append(after)
        sql += f" ORDER BY r.id {order} LIMIT %s"
        args.append(limit)
        with self._db.read("listing records", route=True) as c:
            return [row_to_record(r) for r in c.execute(sql, args).fetchall()]

    def count_records(self, namespace: str, node: Node | None) -> int:
        """Count matching records."""
        where, params = compile_postgres(node)
        with self._db.read("counting records", route=True) as c:
            row = c.execute(
                f"SELECT count(*) FROM records r WHERE r.namespace = %s AND {where}",
                (namespace, *params),
            ).fetchone()
        return int(row[0]) if row else 0

    def history(self, namespace: str, record_id: str) -> list[HistoryEntry]:
        """Return every change of a record, oldest first."""
        with self._db.read("reading history", route=True) as c:
            rows = c.execute(SELECT_HISTORY, (namespace, record_id)).fetchall()
        return [history_entry(r) for r in rows]

    def generation(self, namespace: str) -> int:
        """Return the namespace's write generation (see ``Store.generation``)."""
        router = self._db.router
        with self._db.read("reading the write generation", route=True) as c:
            row = c.execute(GENERATION_SQL.format(p="%s"), (namespace,)).fetchone()
            if router is not None and not router.on_replica():
                # Served by the primary: the data reads this generation guards (and the
                # cache entries stored under it) must not come from an older replica.
                pos = c.execute(INSERT_LSN_SQL).fetchone()
                if pos:
                    router.note_thread_floor(parse_lsn(str(pos[0])))
        return int(row[0]) if row else 0

    def user_ids(self, namespace: str, now: int) -> list[str]:
        """The distinct user scopes of the namespace's records live at ``now`` (see
        ``Store.user_ids``)."""
        with self._db.read("listing user scopes", route=True) as c:
            rows = c.execute(
                DISTINCT_USERS_SQL.format(p="%s"), (namespace, "", now, namespace, now)
            ).fetchall()
        return [str(r[0]) for r in rows]

    def next_expiry(self, namespace: str, after: int) -> int | None:
        """Return the earliest ``expires_at`` after ``after`` (see ``Store.next_expiry``)."""
        with self._db.read("reading the next expiry", route=True) as c:
            row = c.execute(NEXT_EXPIRY_SQL.format(p="%s"), (namespace, after)).fetchone()
        return None if row is None or row[0] is None else int(row[0])


# Changes that can collide with another record's dedup key (same scope and content hash).
_KEY_FIELDS = ("text", "content_hash", "type")


def _keyed(changes: RecordChanges) -> bool:
    """The update can collide with another record's dedup key."""
    return any(getattr(changes, f) is not None for f in _KEY_FIELDS)


def _update_sql(changes: RecordChanges, now: int) -> tuple[str, list[Any]]:
    """The ``UPDATE ... RETURNING`` of one record's changes; its last parameter, the row's
    ``rid``, is the caller's to append."""
    sets, params = scalar_set_clauses(changes, "%s")
    if changes.metadata_json is not None:
        sets.append("metadata = %s::jsonb, metadata_raw = %s")
        params.extend([changes.metadata_json, changes.metadata_json])
    if changes.add_tags or changes.remove_tags:
        # One statement: the new set is computed from the row's current tags.
        sets.append(
            "tags = (SELECT COALESCE(jsonb_agg(v ORDER BY v COLLATE \"C\"), '[]'::jsonb) "
            "FROM (SELECT e.t AS v FROM jsonb_array_elements_text(r.tags) AS e(t) "
            "WHERE e.t <> ALL(%s::text[]) UNION SELECT a.t FROM unnest(%s::text[]) "
            "AS a(t) WHERE a.t <> ALL(%s::text[])) s)"
        )
        rm = list(changes.remove_tags or [])
        params.extend([rm, list(changes.add_tags or []), rm])
    sets.append("version = version + 1")
    sets.append("updated_at = %s")
    params.append(now)
    return f"UPDATE records r SET {', '.join(sets)} WHERE rid = %s RETURNING {COLS}", params


def _apply(
    c: psycopg.Connection[Any],
    namespace: str,
    rid: int,
    before: MemoryRecord,
    changes: RecordChanges,
    now: int,
    deferred: bool = False,
) -> MemoryRecord:
    """Update the locked row ``rid`` and return the record after (no history row).

    Its chunks are rewritten here unless ``deferred`` (the caller rewrites a batch's at once).

    Raises:
        ConflictError: the new text duplicates another record of the same scope.
    """
    sql, params = _update_sql(changes, now)
    try:
        if _keyed(changes):
            with c.transaction():
                row = c.execute(sql, (*params, rid)).fetchone()
        else:
            row = c.execute(sql, (*params, rid)).fetchone()
    except pgerr.UniqueViolation as exc:
        raise ConflictError(
            f"another record in the same scope already has this text ({before.id!r})",
            id=before.id,
        ) from exc
    assert row is not None  # the row is locked by the caller
    if changes.chunks is not None and not deferred:
        c.execute("DELETE FROM chunks WHERE rid = %s", (rid,))
        insert_chunks(c, rid, namespace, before.user_id or "", changes.chunks)
    return row_to_record(row)
