"""PostgreSQL's ``archived_records``: records consolidation took out of the live set."""

from __future__ import annotations

from typing import Any

from engramdb.stores.archive_rows import (
    archive_history,
    archive_values,
    archived_row,
    insert_archived_sql,
    row_values,
    select_archived_sql,
    upsert_archived_sql,
)
from engramdb.stores.postgres.connection import Database
from engramdb.stores.postgres.record_sql import INSERT_HISTORY, lock_rows
from engramdb.stores.prepared import ArchivedRow, ArchiveItem
from engramdb.stores.rows import row_to_record
from engramdb.timeutil import now_us


class Archive:
    """Moves records between ``records`` and ``archived_records`` (see ``stores.base.Archive``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def archive_records(self, namespace: str, items: list[ArchiveItem]) -> list[str]:
        """Take records out of the live set in one transaction; return the ids taken.

        The record rows are locked first (one statement, in ``rid`` order as every batch
        locks them), so a concurrent update waits, then finds them gone; the history rows,
        archive rows and the delete then go in one statement each.
        """
        if not items:
            return []
        done: list[str] = []
        with self._db.write("archiving records", [namespace]) as c:
            by_id = lock_rows(c, namespace, [it.record_id for it in items])
            now = now_us()
            history: list[tuple[Any, ...]] = []
            kept: list[tuple[Any, ...]] = []
            rids: list[int] = []
            for it in items:
                row = by_id.pop(it.record_id, None)  # a repeated id: its first item only
                if row is None:
                    continue
                rec = row_to_record(row)
                if rec.version != it.version:
                    continue
                history.append(archive_history(namespace, rec, it, now))
                if it.reason is not None:
                    kept.append(archive_values(namespace, rec, it, now))
                rids.append(row[0])
                done.append(it.record_id)
            if not rids:
                return done
            with c.cursor() as cur:
                cur.executemany(INSERT_HISTORY, history)
                if kept:
                    cur.executemany(upsert_archived_sql("%s"), kept)
            # Chunks (vectors and keyword rows) go with their record (ON DELETE CASCADE).
            c.execute(
                "DELETE FROM records WHERE namespace = %s AND rid = ANY(%s)", (namespace, rids)
            )
        return done

    def archived(self, namespace: str, ids: list[str]) -> list[ArchivedRow]:
        """Return the archive rows of these ids (missing ones omitted)."""
        with self._db.read("reading archived records") as c:
            rows = c.execute(
                select_archived_sql("%s", "id = ANY(%s)"), (namespace, list(ids))
            ).fetchall()
        return [archived_row(r) for r in rows]

    def list_archived(
        self, namespace: str, user_id: str | None, merged_into: str | None, limit: int
    ) -> list[ArchivedRow]:
        """Return archive rows, newest first, of one user or one merge survivor if given."""
        where, args = ["TRUE"], [namespace]
        if user_id is not None:
            where.append("user_id = %s")
            args.append(user_id)
        if merged_into is not None:
            where.append("merged_into = %s")
            args.append(merged_into)
        with self._db.read("listing archived records") as c:
            rows = c.execute(
                select_archived_sql("%s", " AND ".join(where))
                + " ORDER BY archived_at DESC, id LIMIT %s",
                (*args, limit),
            ).fetchall()
        return [archived_row(r) for r in rows]

    def drop_archived(self, namespace: str, ids: list[str]) -> int:
        """Delete archive rows (after their records were restored); return how many."""
        with self._db.write("dropping archived records", [namespace]) as c:
            return c.execute(
                "DELETE FROM archived_records WHERE namespace = %s AND id = ANY(%s)",
                (namespace, list(ids)),
            ).rowcount

    def put_archived(self, rows: list[ArchivedRow]) -> int:
        """Insert exported archive rows unless present (import); return how many were new."""
        if not rows:
            return 0
        with self._db.write("importing archived records", {r.namespace for r in rows}) as c:
            return sum(c.execute(insert_archived_sql("%s"), row_values(r)).rowcount for r in rows)

    def iter_archived(self, namespace: str | None) -> list[ArchivedRow]:
        """Every archive row of a namespace (or of all), for export."""
        where, args = ("namespace = %s", (namespace,)) if namespace else ("TRUE", ())
        with self._db.read("exporting archived records") as c:
            rows = c.execute(
                "SELECT namespace, id, user_id, thread_id, reason, merged_into, merge_group, "
                f"image, survivor, archived_at FROM archived_records WHERE {where} "
                "ORDER BY namespace, id",
                args,
            ).fetchall()
        return [archived_row(r) for r in rows]
