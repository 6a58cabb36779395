"""Threads on PostgreSQL: their episodic events, working-memory slots, and message turns.

Events are an append-only log per (namespace, thread), ordered by ``seq``. Slots are a map
per thread with one version row; a compare-and-set locks that row, so concurrent writers of
one thread serialise and a stale version always conflicts. The turns of a thread and the
keyword-index texts built from them serve the engine's context indexing.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg

from engramdb.models import Event, Slots
from engramdb.stores.postgres.connection import Database
from engramdb.stores.prepared import TURN_TYPE_SQL, PreparedEvent, ThreadTurn
from engramdb.stores.rows import check_slot_version, write_slot_values
from engramdb.timeutil import from_us, from_us_req, now_us


def insert_events(
    c: psycopg.Connection[Any], namespace: str, events: list[PreparedEvent]
) -> list[Event]:
    """Append ``events`` in order in the transaction of ``c``; return them with their seq."""
    out = []
    for e in events:
        row = c.execute(
            "INSERT INTO events(id, namespace, thread_id, user_id, actor, action, payload, ts)"
            " VALUES (%s,%s,%s,%s,%s,%s,%s,%s) RETURNING seq",
            (e.id, namespace, e.thread_id, e.user_id, e.actor, e.action, e.payload_json, e.ts),
        ).fetchone()
        out.append(
            Event(
                e.id,
                namespace,
                e.thread_id,
                e.action,
                json.loads(e.payload_json),
                e.user_id or None,
                e.actor or None,
                from_us_req(e.ts),
                int(row[0]) if row else 0,
            )
        )
    return out


def _slots(c: psycopg.Connection[Any], namespace: str, thread_id: str) -> Slots:
    ver = c.execute(
        "SELECT version, updated_at FROM slot_versions WHERE namespace = %s AND thread_id = %s",
        (namespace, thread_id),
    ).fetchone()
    rows = c.execute(
        "SELECT name, value FROM slots WHERE namespace = %s AND thread_id = %s ORDER BY name",
        (namespace, thread_id),
    ).fetchall()
    return Slots(
        namespace,
        thread_id,
        {n: json.loads(v) for n, v in rows},
        ver[0] if ver else 0,
        from_us(ver[1]) if ver else None,
    )


class Threads:
    """Events, slots and thread turns of one store."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def append_events(self, namespace: str, events: list[PreparedEvent]) -> list[Event]:
        """Append events in order in one transaction."""
        with self._db.write("appending events", [namespace]) as c:
            return insert_events(c, namespace, events)

    def list_events(
        self, namespace: str, thread_id: str, since: int | None, limit: int
    ) -> list[Event]:
        """Return a thread's events in append order, optionally from a time on."""
        sql = (
            "SELECT id, namespace, thread_id, action, payload, user_id, actor, ts, seq "
            "FROM events WHERE namespace = %s AND thread_id = %s"
        )
        args: list[Any] = [namespace, thread_id]
        if since is not None:
            sql += " AND ts >= %s"
            args.append(since)
        sql += " ORDER BY seq LIMIT %s"
        args.append(limit)
        with self._db.read("reading events", route=True) as c:
            rows = c.execute(sql, args).fetchall()
        return [
            Event(
                r[0],
                r[1],
                r[2],
                r[3],
                json.loads(r[4]),
                r[5] or None,
                r[6] or None,
                from_us_req(r[7]),
                int(r[8]),
            )
            for r in rows
        ]

    def get_slots(self, namespace: str, thread_id: str) -> Slots:
        """Return the thread's slots (an empty map at version 0 when never set)."""
        with self._db.read("reading slots", snapshot=True, route=True) as c:
            return _slots(c, namespace, thread_id)

    def set_slots(
        self,
        namespace: str,
        thread_id: str,
        values: dict[str, Any],
        expected_version: int | None,
        user_id: str,
    ) -> Slots:
        """Compare-and-set: write values (None removes a slot) and bump the thread's version.

        The thread's version row is created if missing and then locked (``FOR UPDATE``), so
        concurrent writers of one thread serialise and a stale version always conflicts.

        Raises:
            ConflictError: the thread's slots are at another version than ``expected_version``.
        """
        with self._db.write("setting slots", [namespace]) as c:
            c.execute(
                "INSERT INTO slot_versions(namespace, thread_id, user_id, version, updated_at) "
                "VALUES (%s,%s,%s,0,%s) ON CONFLICT DO NOTHING",
                (namespace, thread_id, user_id, now_us()),
            )
            row = c.execute(
                "SELECT version FROM slot_versions WHERE namespace = %s AND thread_id = %s "
                "FOR UPDATE",
                (namespace, thread_id),
            ).fetchone()
            current = int(row[0]) if row else 0
            check_slot_version(thread_id, current, expected_version)
            write_slot_values(c.execute, "%s", namespace, thread_id, values)
            c.execute(
                "UPDATE slot_versions SET version = version + 1, updated_at = %s "
                "WHERE namespace = %s AND thread_id = %s",
                (now_us(), namespace, thread_id),
            )
            return _slots(c, namespace, thread_id)

    def thread_turns(
        self, namespace: str, thread_id: str, start: int, end: int, margin: int
    ) -> list[ThreadTurn]:
        """Return a thread's turns in ``[start, end]`` plus ``margin`` on each side."""
        scope = f"namespace = %s AND thread_id = %s AND {TURN_TYPE_SQL}"
        with self._db.read("reading a thread", snapshot=True, route=True) as c:
            rids = [
                r[0]
                for r in c.execute(
                    f"SELECT rid FROM records WHERE {scope} AND occurred_at < %s "
                    "ORDER BY occurred_at DESC, rid DESC LIMIT %s",
                    (namespace, thread_id, start, margin),
                ).fetchall()
            ]
            rids += [
                r[0]
                for r in c.execute(
                    f"SELECT rid FROM records WHERE {scope} AND occurred_at BETWEEN %s AND %s",
                    (namespace, thread_id, start, end),
                ).fetchall()
            ]
            rids += [
                r[0]
                for r in c.execute(
                    f"SELECT rid FROM records WHERE {scope} AND occurred_at > %s "
                    "ORDER BY occurred_at, rid LIMIT %s",
                    (namespace, thread_id, end, margin),
                ).fetchall()
            ]
            rows = c.execute(
                "SELECT r.id, r.text, r.occurred_at, c.id, c.start_pos, c.end_pos FROM records r "
                "JOIN chunks c ON c.rid = r.rid WHERE r.rid = ANY(%s) "
                "ORDER BY r.occurred_at, r.rid, c.ord",
                (rids,),
            ).fetchall()
        turns: list[ThreadTurn] = []
        for record_id, text, occurred, cid, a, b in rows:
            if not turns or turns[-1].record_id != record_id:
                turns.append(ThreadTurn(record_id, text, int(occurred), []))
            turns[-1].chunks.append((int(cid), int(a), int(b)))
        return turns

    def set_index_texts(self, namespace: str, texts: list[tuple[int, str]]) -> None:
        """Rewrite the keyword-index text of chunks (skipping chunks deleted meanwhile)."""
        if not texts:
            return
        with self._db.write("re-indexing a thread", [namespace]) as c, c.cursor() as cur:
            cur.executemany(
                "UPDATE chunks SET body = %s, fts = to_tsvector('engram', %s) "
                "WHERE id = %s AND namespace = %s",
                [(body, body, cid, namespace) for cid, body in texts],
            )
