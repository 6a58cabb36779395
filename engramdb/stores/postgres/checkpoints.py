"""Thread checkpoints of agent frameworks on PostgreSQL (the ``Checkpoints`` role).

The tables of migration 0013, as on SQLite. A read is one statement: the checkpoint row with
its blobs (the versions it reads, looked up through ``jsonb_each_text(versions)``) and its
pending writes aggregated into arrays of ``bytea``, so ``get_tuple`` is one round trip.
Metadata filters are JSONB containment (``metadata @> filter``) with the filter bound. Every
write is one transaction of :meth:`~engramdb.stores.postgres.connection.Database.write`.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from engramdb.errors import ValidationError
from engramdb.models import CheckpointBlob, CheckpointRow, CheckpointSummary, CheckpointWrite
from engramdb.stores.checkpoint_rows import (
    LATEST_SQL,
    exported_checkpoints,
    import_checkpoints,
    list_filters,
)
from engramdb.stores.postgres.connection import Database
from engramdb.timeutil import from_us_req, now_us

DELTA_KEYS = ["counters_since_delta_snapshot", "delta_writes_versioned"]
_SELECT = """
SELECT c.thread_id, c.checkpoint_ns, c.checkpoint_id, c.parent_id, c.type, c.checkpoint,
    c.metadata, c.versions,
    (SELECT array_agg(array[convert_to(b.channel, 'UTF8'), convert_to(b.version, 'UTF8'),
                            convert_to(b.type, 'UTF8'), b.blob])
       FROM jsonb_each_text(c.versions) v
       JOIN thread_checkpoint_blobs b
         ON b.namespace = c.namespace AND b.thread_id = c.thread_id
        AND b.checkpoint_ns = c.checkpoint_ns AND b.channel = v.key AND b.version = v.value),
    (SELECT array_agg(array[convert_to(w.task_id, 'UTF8'), convert_to(w.task_path, 'UTF8'),
                            convert_to(w.idx::text, 'UTF8'), convert_to(w.channel, 'UTF8'),
                            convert_to(w.type, 'UTF8'), w.blob])
       FROM thread_checkpoint_writes w
      WHERE w.namespace = c.namespace AND w.thread_id = c.thread_id
        AND w.checkpoint_ns = c.checkpoint_ns AND w.checkpoint_id = c.checkpoint_id)
FROM thread_checkpoints c
"""
_GC_BLOBS = """
DELETE FROM thread_checkpoint_blobs b
WHERE b.namespace = %s AND b.thread_id = %s AND b.checkpoint_ns = %s
  AND NOT EXISTS (SELECT 1 FROM thread_checkpoints c
                  WHERE c.namespace = b.namespace AND c.thread_id = b.thread_id
                    AND c.checkpoint_ns = b.checkpoint_ns AND c.versions ->> b.channel = b.version)
"""


def _text(b: bytes | None) -> str:
    return b.decode("utf-8") if b is not None else ""


def _row(r: tuple[Any, ...]) -> CheckpointRow:
    row = CheckpointRow(r[0], r[1], r[2], r[3], r[4], bytes(r[5]), r[6], r[7])
    row.blobs = [
        CheckpointBlob(_text(ch), _text(ver), _text(t), None if b is None else bytes(b))
        for ch, ver, t, b in r[8] or []
    ]
    row.writes = [
        CheckpointWrite(_text(task), _text(path), int(_text(idx)), _text(ch), _text(t), bytes(b))
        for task, path, idx, ch, t, b in r[9] or []
    ]
    return row


class CheckpointTables:
    """The checkpoint tables of one PostgreSQL store."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def put_checkpoint(
        self, namespace: str, row: CheckpointRow, blobs: list[CheckpointBlob]
    ) -> None:
        """Save the blobs (existing versions kept) and the checkpoint (replaced) together."""
        with self._db.write("saving a checkpoint") as c:
            if blobs:
                with c.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO thread_checkpoint_blobs(namespace, thread_id, checkpoint_ns,"
                        " channel, version, type, blob) VALUES (%s,%s,%s,%s,%s,%s,%s) "
                        "ON CONFLICT DO NOTHING",
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
                "INSERT INTO thread_checkpoints(namespace, thread_id, checkpoint_ns, "
                "checkpoint_id, parent_id, type, checkpoint, metadata, versions, run_id, "
                "created_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) "
                "ON CONFLICT (namespace, thread_id, checkpoint_ns, checkpoint_id) DO UPDATE SET "
                "type = EXCLUDED.type, checkpoint = EXCLUDED.checkpoint, "
                "metadata = EXCLUDED.metadata, versions = EXCLUDED.versions, "
                "run_id = EXCLUDED.run_id",
                (
                    namespace,
                    row.thread_id,
                    row.checkpoint_ns,
                    row.checkpoint_id,
                    row.parent_id,
                    row.type,
                    row.checkpoint,
                    Jsonb(row.metadata),
                    Jsonb(row.versions),
                    None if row.metadata.get("run_id") is None else str(row.metadata["run_id"]),
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
            "DO UPDATE SET channel = EXCLUDED.channel, type = EXCLUDED.type, blob = EXCLUDED.blob"
            if replace
            else "DO NOTHING"
        )
        with self._db.write("saving pending writes") as c, c.cursor() as cur:
            cur.executemany(
                "INSERT INTO thread_checkpoint_writes(namespace, thread_id, checkpoint_ns, "
                "checkpoint_id, task_id, idx, task_path, channel, type, blob) "
                "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (namespace, thread_id, "
                f"checkpoint_ns, checkpoint_id, task_id, idx) {conflict}",
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
        sql = _SELECT + "WHERE c.namespace = %s AND c.thread_id = %s AND c.checkpoint_ns = %s"
        args: list[Any] = [namespace, thread_id, checkpoint_ns]
        if checkpoint_id is not None:
            sql += " AND c.checkpoint_id = %s"
            args.append(checkpoint_id)
        else:
            sql += " ORDER BY c.checkpoint_id DESC LIMIT 1"
        with self._db.read("reading a checkpoint") as c:
            found = c.execute(sql, args).fetchone()
        return None if found is None else _row(found)

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
            "c.", "%s", namespace, thread_id, checkpoint_ns, checkpoint_id, before
        )
        if metadata:
            where.append("c.metadata @> %s")
            args.append(Jsonb(metadata))
        sql = _SELECT + f"WHERE {' AND '.join(where)} ORDER BY c.checkpoint_id DESC"
        if limit is not None:
            sql += " LIMIT %s"
            args.append(limit)
        with self._db.read("listing checkpoints", snapshot=True) as c:
            return [_row(r) for r in c.execute(sql, args).fetchall()]

    def delete_checkpoint_threads(self, namespace: str, thread_ids: list[str]) -> int:
        """Delete every checkpoint, blob and write of the threads; return the checkpoints."""
        with self._db.write("deleting checkpoint threads") as c:
            cur = c.execute(
                "DELETE FROM thread_checkpoints WHERE namespace = %s AND thread_id = ANY(%s)",
                (namespace, thread_ids),
            )
            n = cur.rowcount
            for table in ("thread_checkpoint_blobs", "thread_checkpoint_writes"):
                c.execute(
                    f"DELETE FROM {table} WHERE namespace = %s AND thread_id = ANY(%s)",
                    (namespace, thread_ids),
                )
            return n

    def delete_checkpoint_runs(self, namespace: str, run_ids: list[str]) -> int:
        """Delete the checkpoints (and their writes) whose metadata names one of the runs."""
        with self._db.write("deleting checkpoints of runs") as c:
            doomed = c.execute(
                "SELECT thread_id, checkpoint_ns, checkpoint_id FROM thread_checkpoints "
                "WHERE namespace = %s AND run_id = ANY(%s)",
                (namespace, run_ids),
            ).fetchall()
            _delete(c, namespace, doomed)
            return len(doomed)

    def copy_checkpoint_thread(self, namespace: str, source: str, target: str) -> int:
        """Copy every checkpoint, blob and write of ``source`` to ``target``."""
        with self._db.write("copying a checkpoint thread") as c:
            n = c.execute(
                "INSERT INTO thread_checkpoints(namespace, thread_id, checkpoint_ns, "
                "checkpoint_id, parent_id, type, checkpoint, metadata, versions, run_id, "
                "created_at) SELECT namespace, %s, checkpoint_ns, checkpoint_id, parent_id, type, "
                "checkpoint, metadata, versions, run_id, created_at FROM thread_checkpoints "
                "WHERE namespace = %s AND thread_id = %s ON CONFLICT DO NOTHING",
                (target, namespace, source),
            ).rowcount
            c.execute(
                "INSERT INTO thread_checkpoint_blobs(namespace, thread_id, checkpoint_ns, channel,"
                " version, type, blob) SELECT namespace, %s, checkpoint_ns, channel, version, "
                "type, blob FROM thread_checkpoint_blobs WHERE namespace = %s AND thread_id = %s "
                "ON CONFLICT DO NOTHING",
                (target, namespace, source),
            )
            c.execute(
                "INSERT INTO thread_checkpoint_writes(namespace, thread_id, checkpoint_ns, "
                "checkpoint_id, task_id, idx, task_path, channel, type, blob) "
                "SELECT namespace, %s, checkpoint_ns, checkpoint_id, task_id, idx, task_path, "
                "channel, type, blob FROM thread_checkpoint_writes "
                "WHERE namespace = %s AND thread_id = %s ON CONFLICT DO NOTHING",
                (target, namespace, source),
            )
            return n

    def prune_checkpoints(self, namespace: str, thread_ids: list[str]) -> int:
        """Keep only the newest checkpoint of each (thread, checkpoint namespace)."""
        with self._db.write("pruning checkpoints") as c:
            delta = c.execute(
                "SELECT DISTINCT thread_id FROM thread_checkpoints WHERE namespace = %s "
                "AND thread_id = ANY(%s) AND metadata ?| %s ORDER BY thread_id",
                (namespace, thread_ids, DELTA_KEYS),
            ).fetchall()
            if delta:
                raise ValidationError(
                    "prune keeps only the newest checkpoint and cannot prune threads that use "
                    f"a DeltaChannel: {', '.join(r[0] for r in delta)}",
                    field="thread_ids",
                )
            doomed = c.execute(
                "SELECT thread_id, checkpoint_ns, checkpoint_id FROM thread_checkpoints t "
                "WHERE namespace = %s AND thread_id = ANY(%s) "
                "AND checkpoint_id < (SELECT max(checkpoint_id) FROM thread_checkpoints m "
                "WHERE m.namespace = t.namespace AND m.thread_id = t.thread_id "
                "AND m.checkpoint_ns = t.checkpoint_ns)",
                (namespace, thread_ids),
            ).fetchall()
            _delete(c, namespace, doomed)
            return len(doomed)

    def latest_checkpoints(
        self, namespace: str, thread_id: str, limit: int
    ) -> list[CheckpointSummary]:
        """Return a thread's newest checkpoints, newest first (ids order a thread's)."""
        with self._db.read("listing checkpoints") as c:
            rows = c.execute(
                LATEST_SQL.format(p="%s"),
                (namespace, thread_id, int(limit)),
            ).fetchall()
        return [CheckpointSummary(r[0], r[1], r[2], r[3], from_us_req(int(r[4]))) for r in rows]

    def iter_checkpoint_lines(self, namespace: str | None) -> list[dict[str, Any]]:
        """Every checkpoint row as an export line, read in one snapshot."""
        with self._db.read("exporting checkpoints", snapshot=True) as c:
            return list(
                exported_checkpoints(
                    lambda sql, args: c.execute(sql, args).fetchall(), "%s", namespace
                )
            )

    def import_checkpoint_lines(self, lines: list[dict[str, Any]]) -> int:
        """Insert checked export lines in one transaction (rows present are kept)."""
        if not lines:
            return 0
        with self._db.write("importing checkpoints") as c, c.cursor() as cur:
            return import_checkpoints(lines, cur.executemany, "%s", "::jsonb")


def _delete(c: psycopg.Connection[Any], namespace: str, doomed: list[Any]) -> None:
    """Delete checkpoints and their writes, unlink their children, collect their blobs."""
    if not doomed:
        return
    keys = json.dumps([[t, ns, cid] for t, ns, cid in doomed])
    scoped = (
        "namespace = %s AND (thread_id, checkpoint_ns, {col}) IN "
        "(SELECT k->>0, k->>1, k->>2 FROM jsonb_array_elements(%s::jsonb) k)"
    )
    c.execute(
        "DELETE FROM thread_checkpoints WHERE " + scoped.format(col="checkpoint_id"),
        (namespace, keys),
    )
    c.execute(
        "DELETE FROM thread_checkpoint_writes WHERE " + scoped.format(col="checkpoint_id"),
        (namespace, keys),
    )
    c.execute(
        "UPDATE thread_checkpoints SET parent_id = NULL WHERE " + scoped.format(col="parent_id"),
        (namespace, keys),
    )
    with c.cursor() as cur:
        cur.executemany(_GC_BLOBS, sorted({(namespace, t, ns) for t, ns, _ in doomed}))
