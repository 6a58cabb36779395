"""Thread checkpoints of agent frameworks on SQLite (the ``Checkpoints`` role of stores.base).

Three tables of migration 0013: checkpoints, channel blobs (one row per channel version, so
an unchanged channel is stored once) and pending writes. Every write is one ``BEGIN
IMMEDIATE`` transaction of the store's one write path; a delete collects, in the same
transaction, the blobs no remaining checkpoint of the thread reads.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from engramdb.errors import ValidationError
from engramdb.models import CheckpointBlob, CheckpointRow, CheckpointSummary, CheckpointWrite
from engramdb.stores.checkpoint_rows import (
    LATEST_SQL,
    exported_checkpoints,
    import_checkpoints,
    list_filters,
)
from engramdb.stores.sqlite.connection import Connections
from engramdb.timeutil import from_us_req, now_us

_COLUMNS = (
    "thread_id, checkpoint_ns, checkpoint_id, parent_id, type, checkpoint, metadata, versions"
)
# A top-level metadata value as compact JSON text, to compare with the filter's value.
_JSON_VALUE = (
    "CASE j.type WHEN 'object' THEN json(j.value) WHEN 'array' THEN json(j.value) "
    "WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' WHEN 'null' THEN 'null' "
    "ELSE json_quote(j.value) END"
)
# Keys of checkpoint metadata that mark a thread using LangGraph's DeltaChannel.
DELTA_KEYS = ("counters_since_delta_snapshot", "delta_writes_versioned")
_GC_BLOBS = (
    "DELETE FROM thread_checkpoint_blobs WHERE namespace = ? AND thread_id = ? "
    "AND checkpoint_ns = ? AND NOT EXISTS (SELECT 1 FROM thread_checkpoints c, "
    "json_each(c.versions) v WHERE c.namespace = thread_checkpoint_blobs.namespace "
    "AND c.thread_id = thread_checkpoint_blobs.thread_id "
    "AND c.checkpoint_ns = thread_checkpoint_blobs.checkpoint_ns "
    "AND v.key = thread_checkpoint_blobs.channel AND v.value = thread_checkpoint_blobs.version)"
)


def compact_json(value: Any) -> str:
    """JSON text as SQLite's ``json()`` writes it (no spaces), for equality tests."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _row(r: tuple[Any, ...]) -> CheckpointRow:
    return CheckpointRow(
        r[0], r[1], r[2], r[3], r[4], bytes(r[5]), json.loads(r[6]), json.loads(r[7])
    )


class CheckpointTables:
    """The checkpoint tables of one SQLite file."""

    def __init__(self, db: Connections) -> None:
        self._db = db

    def put_checkpoint(
        self, namespace: str, row: CheckpointRow, blobs: list[CheckpointBlob]
    ) -> None:
        """Save the blobs (existing versions kept) and the checkpoint (replaced) together."""
        with self._db.write("saving a checkpoint") as c:
            c.executemany(
                "INSERT INTO thread_checkpoint_blobs(namespace, thread_id, checkpoint_ns, channel,"
                " version, type, blob) VALUES (?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                [
                    (
                        namespace,
                        row.thread_id,
                        row.checkpoint_ns,
                        b.channel,
                        b.version,
                        b.type,
                        b.blob,
                    )
                    for b in blobs
                ],
            )
            c.execute(
                f"INSERT INTO thread_checkpoints(namespace, {_COLUMNS}, run_id, created_at) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT(namespace, thread_id, checkpoint_ns, checkpoint_id) DO UPDATE SET "
                "type = excluded.type, checkpoint = excluded.checkpoint, "
                "metadata = excluded.metadata, versions = excluded.versions, "
                "run_id = excluded.run_id",
                (
                    namespace,
                    row.thread_id,
                    row.checkpoint_ns,
                    row.checkpoint_id,
                    row.parent_id,
                    row.type,
                    row.checkpoint,
                    compact_json(row.metadata),
                    compact_json(row.versions),
                    _run_id(row.metadata),
                    now_us(),
                ),
            )

    def put_checkpoint_writes(
        self,
        namespace: str,
        thread_id: str,
        checkpoint_ns: str,
        checkpoint_id: str,
        writes: list[CheckpointWrite],
        replace: bool,
    ) -> None:
        """Save a task's pending writes; ``replace`` overwrites a write of the same index."""
        conflict = (
            "DO UPDATE SET channel = excluded.channel, type = excluded.type, blob = excluded.blob"
            if replace
            else "DO NOTHING"
        )
        with self._db.write("saving pending writes") as c:
            c.executemany(
                "INSERT INTO thread_checkpoint_writes(namespace, thread_id, checkpoint_ns, "
                "checkpoint_id, task_id, idx, task_path, channel, type, blob) "
                "VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT(namespace, thread_id, checkpoint_ns, "
                f"checkpoint_id, task_id, idx) {conflict}",
                [
                    (
                        namespace,
                        thread_id,
                        checkpoint_ns,
                        checkpoint_id,
                        w.task_id,
                        w.idx,
                        w.task_path,
                        w.channel,
                        w.type,
                        w.blob,
                    )
                    for w in writes
                ],
            )

    def get_checkpoint(
        self, namespace: str, thread_id: str, checkpoint_ns: str, checkpoint_id: str | None
    ) -> CheckpointRow | None:
        """Return one checkpoint (the thread's newest without an id) with blobs and writes."""
        sql = (
            f"SELECT {_COLUMNS} FROM thread_checkpoints "
            "WHERE namespace = ? AND thread_id = ? AND checkpoint_ns = ?"
        )
        args: list[Any] = [namespace, thread_id, checkpoint_ns]
        if checkpoint_id is not None:
            sql += " AND checkpoint_id = ?"
            args.append(checkpoint_id)
        else:
            sql += " ORDER BY checkpoint_id DESC LIMIT 1"
        with self._db.read("reading a checkpoint") as c:
            found = c.execute(sql, args).fetchone()
            if found is None:
                return None
            row = _row(found)
            self._attach(c, namespace, row)
            return row

    def list_checkpoints(
        self,
        namespace: str,
        thread_id: str | None,
        checkpoint_ns: str | None,
        checkpoint_id: str | None,
        before: str | None,
        metadata: dict[str, Any] | None,
        limit: int | None,
    ) -> list[CheckpointRow]:
        """Return matching checkpoints, newest first, with their blobs and writes."""
        where, args = list_filters(
            "", "?", namespace, thread_id, checkpoint_ns, checkpoint_id, before
        )
        for key, value in (metadata or {}).items():
            where.append(
                "EXISTS (SELECT 1 FROM json_each(thread_checkpoints.metadata) j "
                f"WHERE j.key = ? AND {_JSON_VALUE} = json(?))"
            )
            args += [key, compact_json(value)]
        sql = (
            f"SELECT {_COLUMNS} FROM thread_checkpoints WHERE {' AND '.join(where)} "
            "ORDER BY checkpoint_id DESC"
        )
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        with self._db.read("listing checkpoints") as c:
            rows = [_row(r) for r in c.execute(sql, args).fetchall()]
            for row in rows:
                self._attach(c, namespace, row)
        return rows

    @staticmethod
    def _attach(c: sqlite3.Connection, namespace: str, row: CheckpointRow) -> None:
        """Fill the row's blobs (the versions it reads) and pending writes."""
        scope = (namespace, row.thread_id, row.checkpoint_ns)
        if row.versions:
            row.blobs = [
                CheckpointBlob(ch, ver, t, None if b is None else bytes(b))
                for ch, ver, t, b in c.execute(
                    "SELECT channel, version, type, blob FROM thread_checkpoint_blobs "
                    "WHERE namespace = ? AND thread_id = ? AND checkpoint_ns = ? "
                    "AND (channel, version) IN (SELECT key, value FROM json_each(?))",
                    (*scope, compact_json(row.versions)),
                )
            ]
        row.writes = [
            CheckpointWrite(task, path, idx, ch, t, bytes(b))
            for task, path, idx, ch, t, b in c.execute(
                "SELECT task_id, task_path, idx, channel, type, blob FROM thread_checkpoint_writes "
                "WHERE namespace = ? AND thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?",
                (*scope, row.checkpoint_id),
            )
        ]

    def delete_checkpoint_threads(self, namespace: str, thread_ids: list[str]) -> int:
        """Delete every checkpoint, blob and write of the threads; return the checkpoints."""
        ids = json.dumps(thread_ids)
        with self._db.write("deleting checkpoint threads") as c:
            n = c.execute(
                "DELETE FROM thread_checkpoints WHERE namespace = ? "
                "AND thread_id IN (SELECT value FROM json_each(?))",
                (namespace, ids),
            ).rowcount
            for table in ("thread_checkpoint_blobs", "thread_checkpoint_writes"):
                c.execute(
                    f"DELETE FROM {table} WHERE namespace = ? "
                    "AND thread_id IN (SELECT value FROM json_each(?))",
                    (namespace, ids),
                )
            return n

    def delete_checkpoint_runs(self, namespace: str, run_ids: list[str]) -> int:
        """Delete the checkpoints (and their writes) whose metadata names one of the runs."""
        with self._db.write("deleting checkpoints of runs") as c:
            doomed = c.execute(
                "SELECT thread_id, checkpoint_ns, checkpoint_id FROM thread_checkpoints "
                "WHERE namespace = ? AND run_id IN (SELECT value FROM json_each(?))",
                (namespace, json.dumps(run_ids)),
            ).fetchall()
            self._delete(c, namespace, doomed)
            return len(doomed)

    def copy_checkpoint_thread(self, namespace: str, source: str, target: str) -> int:
        """Copy every checkpoint, blob and write of ``source`` to ``target``."""
        with self._db.write("copying a checkpoint thread") as c:
            n = c.execute(
                f"INSERT INTO thread_checkpoints(namespace, {_COLUMNS}, run_id, created_at) "
                "SELECT namespace, ?, checkpoint_ns, checkpoint_id, parent_id, type, checkpoint, "
                "metadata, versions, run_id, created_at FROM thread_checkpoints "
                "WHERE namespace = ? AND thread_id = ? ORDER BY checkpoint_id "
                "ON CONFLICT DO NOTHING",
                (target, namespace, source),
            ).rowcount
            c.execute(
                "INSERT INTO thread_checkpoint_blobs(namespace, thread_id, checkpoint_ns, channel,"
                " version, type, blob) SELECT namespace, ?, checkpoint_ns, channel, version, type,"
                " blob FROM thread_checkpoint_blobs WHERE namespace = ? AND thread_id = ? "
                "ORDER BY rowid ON CONFLICT DO NOTHING",
                (target, namespace, source),
            )
            c.execute(
                "INSERT INTO thread_checkpoint_writes(namespace, thread_id, checkpoint_ns, "
                "checkpoint_id, task_id, idx, task_path, channel, type, blob) "
                "SELECT namespace, ?, checkpoint_ns, checkpoint_id, task_id, idx, task_path, "
                "channel, type, blob FROM thread_checkpoint_writes "
                "WHERE namespace = ? AND thread_id = ? ORDER BY rowid ON CONFLICT DO NOTHING",
                (target, namespace, source),
            )
            return n

    def prune_checkpoints(self, namespace: str, thread_ids: list[str]) -> int:
        """Keep only the newest checkpoint of each (thread, checkpoint namespace)."""
        ids = json.dumps(thread_ids)
        with self._db.write("pruning checkpoints") as c:
            delta = c.execute(
                "SELECT DISTINCT thread_id FROM thread_checkpoints, json_each(metadata) j "
                "WHERE namespace = ? AND thread_id IN (SELECT value FROM json_each(?)) "
                "AND j.key IN (SELECT value FROM json_each(?)) ORDER BY thread_id",
                (namespace, ids, json.dumps(DELTA_KEYS)),
            ).fetchall()
            if delta:
                raise ValidationError(
                    "prune keeps only the newest checkpoint and cannot prune threads that use "
                    f"a DeltaChannel: {', '.join(r[0] for r in delta)}",
                    field="thread_ids",
                )
            doomed = c.execute(
                "SELECT thread_id, checkpoint_ns, checkpoint_id FROM thread_checkpoints t "
                "WHERE namespace = ? AND thread_id IN (SELECT value FROM json_each(?)) "
                "AND checkpoint_id < (SELECT max(checkpoint_id) FROM thread_checkpoints m "
                "WHERE m.namespace = t.namespace AND m.thread_id = t.thread_id "
                "AND m.checkpoint_ns = t.checkpoint_ns)",
                (namespace, ids),
            ).fetchall()
            self._delete(c, namespace, doomed)
            return len(doomed)

    def latest_checkpoints(
        self, namespace: str, thread_id: str, limit: int
    ) -> list[CheckpointSummary]:
        """Return a thread's newest checkpoints, newest first (ids order a thread's)."""
        with self._db.read("listing checkpoints") as c:
            rows = c.execute(
                LATEST_SQL.format(p="?"),
                (namespace, thread_id, int(limit)),
            ).fetchall()
        return [
            CheckpointSummary(r[0], r[1], r[2], json.loads(r[3]), from_us_req(int(r[4])))
            for r in rows
        ]

    def iter_checkpoint_lines(self, namespace: str | None) -> list[dict[str, Any]]:
        """Every checkpoint row as an export line, read in one snapshot."""
        with self._db.read("exporting checkpoints") as c:
            return list(
                exported_checkpoints(
                    lambda sql, args: c.execute(sql, args).fetchall(), "?", namespace
                )
            )

    def import_checkpoint_lines(self, lines: list[dict[str, Any]]) -> int:
        """Insert checked export lines in one transaction (rows present are kept)."""
        if not lines:
            return 0
        with self._db.write("importing checkpoints") as c:
            return import_checkpoints(lines, c.executemany, "?")

    @staticmethod
    def _delete(c: sqlite3.Connection, namespace: str, doomed: list[Any]) -> None:
        """Delete checkpoints and their writes, unlink their children, collect their blobs."""
        keys = [(namespace, t, ns, cid) for t, ns, cid in doomed]
        c.executemany(
            "DELETE FROM thread_checkpoints WHERE namespace = ? AND thread_id = ? "
            "AND checkpoint_ns = ? AND checkpoint_id = ?",
            keys,
        )
        c.executemany(
            "DELETE FROM thread_checkpoint_writes WHERE namespace = ? AND thread_id = ? "
            "AND checkpoint_ns = ? AND checkpoint_id = ?",
            keys,
        )
        c.executemany(
            "UPDATE thread_checkpoints SET parent_id = NULL WHERE namespace = ? "
            "AND thread_id = ? AND checkpoint_ns = ? AND parent_id = ?",
            keys,
        )
        for scope in sorted({(namespace, t, ns) for t, ns, _ in doomed}):
            c.execute(_GC_BLOBS, scope)


def _run_id(metadata: dict[str, Any]) -> str | None:
    """The run a checkpoint belongs to (LangGraph puts ``run_id`` in its metadata)."""
    run = metadata.get("run_id")
    return None if run is None else str(run)
