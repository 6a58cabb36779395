"""Threads: their event logs, their working-memory slots, and their turns in order."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from engramdb.models import Event, Slots
from engramdb.stores.prepared import TURN_TYPE_SQL, PreparedEvent, ThreadTurn
from engramdb.stores.rows import check_slot_version, write_slot_values
from engramdb.stores.sqlite.connection import Connections
from engramdb.timeutil import from_us, from_us_req, now_us


def insert_events(
    c: sqlite3.Connection, namespace: str, events: list[PreparedEvent]
) -> list[Event]:
    """Append events on ``c`` (inside the caller's write transaction), in order."""
    out = []
    for e in events:
        cur = c.execute(
            "INSERT INTO events(id, namespace, thread_id, user_id, actor, action, payload, ts)"
            " VALUES (?,?,?,?,?,?,?,?)",
            (e.id, namespace, e.thread_id, e.user_id, e.actor, e.action, e.payload_json, e.ts),
        )
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
                cur.lastrowid or 0,
            )
        )
    return out


def _slots(c: sqlite3.Connection, namespace: str, thread_id: str) -> Slots:
    ver = c.execute(
        "SELECT version, updated_at FROM slot_versions WHERE namespace = ? AND thread_id = ?",
        (namespace, thread_id),
    ).fetchone()
    rows = c.execute(
        "SELECT name, value FROM slots WHERE namespace = ? AND thread_id = ? ORDER BY name",
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
    """A thread's events, slots and message turns."""

    def __init__(self, db: Connections) -> None:
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
            "FROM events WHERE namespace = ? AND thread_id = ?"
        )
        args: list[Any] = [namespace, thread_id]
        if since is not None:
            sql += " AND ts >= ?"
            args.append(since)
        sql += " ORDER BY seq LIMIT ?"
        args.append(limit)
        with self._db.read("reading events") as c:
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
                r[8],
            )
            for r in rows
        ]

    def get_slots(self, namespace: str, thread_id: str) -> Slots:
        """Return the thread's slots (an empty map at version 0 when never set)."""
        with self._db.read("reading slots") as c:
            return _slots(c, namespace, thread_id)

    def set_slots(
        self,
        namespace: str,
        thread_id: str,
        values: dict[str, Any],
        expected_version: int | None,
        user_id: str,
    ) -> Slots:
        """Compare-and-set: write values (None removes a slot) and bump the thread's version."""
        with self._db.write("setting slots", [namespace]) as c:
            row = c.execute(
                "SELECT version FROM slot_versions WHERE namespace = ? AND thread_id = ?",
                (namespace, thread_id),
            ).fetchone()
            current = row[0] if row else 0
            check_slot_version(thread_id, current, expected_version)
            write_slot_values(c.execute, "?", namespace, thread_id, values)
            c.execute(
                "INSERT INTO slot_versions(namespace, thread_id, user_id, version, updated_at) "
                "VALUES (?,?,?,1,?) ON CONFLICT(namespace, thread_id) DO UPDATE SET "
                "version = version + 1, updated_at = excluded.updated_at",
                (namespace, thread_id, user_id, now_us()),
            )
            return _slots(c, namespace, thread_id)

    def thread_turns(
        self, namespace: str, thread_id: str, start: int, end: int, margin: int
    ) -> list[ThreadTurn]:
        """Return a thread's turns in ``[start, end]`` plus ``margin`` on each side."""
        scope = f"namespace = ? AND thread_id = ? AND {TURN_TYPE_SQL}"
        with self._db.read("reading a thread") as c:
            rids = [
                r[0]
                for r in c.execute(
                    f"SELECT rid FROM records WHERE {scope} AND occurred_at < ? "
                    "ORDER BY occurred_at DESC, rid DESC LIMIT ?",
                    (namespace, thread_id, start, margin),
                )
            ]
            rids += [
                r[0]
                for r in c.execute(
                    f"SELECT rid FROM records WHERE {scope} AND occurred_at BETWEEN ? AND ?",
                    (namespace, thread_id, start, end),
                )
            ]
            rids += [
                r[0]
                for r in c.execute(
                    f"SELECT rid FROM records WHERE {scope} AND occurred_at > ? "
                    "ORDER BY occurred_at, rid LIMIT ?",
                    (namespace, thread_id, end, margin),
                )
            ]
            rows = c.execute(
                "SELECT r.id, r.text, r.occurred_at, c.id, c.start, c.end FROM records r "
                "JOIN chunks c ON c.rid = r.rid WHERE r.rid IN (SELECT value FROM json_each(?)) "
                "ORDER BY r.occurred_at, r.rid, c.ord",
                (json.dumps(rids),),
            ).fetchall()
        turns: list[ThreadTurn] = []
        for record_id, text, occurred, cid, a, b in rows:
            if not turns or turns[-1].record_id != record_id:
                turns.append(ThreadTurn(record_id, text, occurred, []))
            turns[-1].chunks.append((cid, a, b))
        return turns
