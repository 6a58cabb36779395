"""SQLite's ``archived_records``: records consolidation took out of the live set."""

from __future__ import annotations

import json

from engramdb.stores.archive_rows import (
    archive_history,
    archive_values,
    archived_row,
    insert_archived_sql,
    row_values,
    select_archived_sql,
    upsert_archived_sql,
)
from engramdb.stores.prepared import ArchivedRow, ArchiveItem
from engramdb.stores.rows import row_to_record
from engramdb.stores.sqlite.chunks import delete_chunks_of
from engramdb.stores.sqlite.connection import Connections
from engramdb.stores.sqlite.records import COLS, INSERT_HISTORY
from engramdb.timeutil import now_us


class Archive:
    """Moves records between ``records`` and ``archived_records`` (see ``stores.base.Archive``)."""

    def __init__(self, db: Connections) -> None:
        self._db = db

    def archive_records(self, namespace: str, items: list[ArchiveItem]) -> list[str]:
        """Take records out of the live set in one transaction; return the ids taken."""
        done: list[str] = []
        with self._db.write("archiving records", [namespace]) as c:
            now = now_us()
            for it in items:
                row = c.execute(
                    f"SELECT {COLS} FROM records r WHERE namespace = ? AND id = ?",
                    (namespace, it.record_id),
                ).fetchone()
                if row is None:
                    continue
                rec = row_to_record(row)
                if rec.version != it.version:
                    continue
                c.execute(INSERT_HISTORY, archive_history(namespace, rec, it, now))
                if it.reason is not None:
                    c.execute(upsert_archived_sql("?"), archive_values(namespace, rec, it, now))
                delete_chunks_of(c, [row[0]])
                c.execute("DELETE FROM records WHERE rid = ?", (row[0],))
                done.append(it.record_id)
        return done

    def archived(self, namespace: str, ids: list[str]) -> list[ArchivedRow]:
        """Return the archive rows of these ids (missing ones omitted)."""
        rows = self._db.query(
            "reading archived records",
            select_archived_sql("?", "id IN (SELECT value FROM json_each(?))"),
            (namespace, json.dumps(ids)),
        )
        return [archived_row(r) for r in rows]

    def list_archived(
        self, namespace: str, user_id: str | None, merged_into: str | None, limit: int
    ) -> list[ArchivedRow]:
        """Return archive rows, newest first, of one user or one merge survivor if given."""
        where, args = ["1"], [namespace]
        if user_id is not None:
            where.append("user_id = ?")
            args.append(user_id)
        if merged_into is not None:
            where.append("merged_into = ?")
            args.append(merged_into)
        rows = self._db.query(
            "listing archived records",
            select_archived_sql("?", " AND ".join(where))
            + " ORDER BY archived_at DESC, id LIMIT ?",
            (*args, limit),
        )
        return [archived_row(r) for r in rows]

    def drop_archived(self, namespace: str, ids: list[str]) -> int:
        """Delete archive rows (after their records were restored); return how many."""
        with self._db.write("dropping archived records", [namespace]) as c:
            return c.execute(
                "DELETE FROM archived_records WHERE namespace = ? AND id IN "
                "(SELECT value FROM json_each(?))",
                (namespace, json.dumps(ids)),
            ).rowcount

    def put_archived(self, rows: list[ArchivedRow]) -> int:
        """Insert exported archive rows unless present (import); return how many were new."""
        if not rows:
            return 0
        with self._db.write("importing archived records", {r.namespace for r in rows}) as c:
            return sum(c.execute(insert_archived_sql("?"), row_values(r)).rowcount for r in rows)

    def iter_archived(self, namespace: str | None) -> list[ArchivedRow]:
        """Every archive row of a namespace (or of all), for export."""
        where, args = ("namespace = ?", (namespace,)) if namespace else ("1", ())
        rows = self._db.query(
            "exporting archived records",
            "SELECT namespace, id, user_id, thread_id, reason, merged_into, merge_group, image, "
            f"survivor, archived_at FROM archived_records WHERE {where} ORDER BY namespace, id",
            args,
        )
        return [archived_row(r) for r in rows]
