"""Export lines to table rows and back: the part of import and export both stores share.

An export line (``engine.transfer``) names its fields; each store writes them with its own
driver, placeholders and store-only columns (SQLite's dedup key, PostgreSQL's JSONB casts).
What a line's values are, in which order, and what an id that is already present means,
is decided here once, so an export from one backend imports into the other unchanged.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

from engramdb.errors import ValidationError
from engramdb.models import MemoryRecord
from engramdb.timeutil import now_us

# An exported record's columns, in the order of :func:`record_values` (a store may
# append its own after them).
RECORD_COLUMNS = (
    "id",
    "namespace",
    "user_id",
    "agent_id",
    "thread_id",
    "type",
    "text",
    "content_hash",
    "metadata",
    "tags",
    "source",
    "importance",
    "occurred_at",
    "created_at",
    "updated_at",
    "valid_from",
    "valid_to",
    "expires_at",
    "version",
    "event_id",
)
HISTORY_COLUMNS = (
    "namespace",
    "record_id",
    "user_id",
    "thread_id",
    "op",
    "version",
    "before",
    "after",
    "at",
)
EVENT_COLUMNS = ("id", "namespace", "thread_id", "user_id", "actor", "action", "payload", "ts")
SLOT_VERSION_COLUMNS = ("namespace", "thread_id", "user_id", "version", "updated_at")
SLOT_COLUMNS = ("namespace", "thread_id", "name", "value")


def insert_sql(
    table: str,
    columns: Sequence[str],
    ph: str,
    conflict: str = "",
    casts: dict[str, str] | None = None,
) -> str:
    """``INSERT INTO table(columns) VALUES (ph, …)``, with an optional conflict clause and
    ``casts`` (column → SQL type) for the values that need one (``%s::jsonb``)."""
    casts = casts or {}
    values = ",".join(f"{ph}::{casts[col]}" if col in casts else ph for col in columns)
    tail = f" {conflict}" if conflict else ""
    return f"INSERT INTO {table}({', '.join(columns)}) VALUES ({values}){tail}"


_RECORD_VALUES = operator.itemgetter(*RECORD_COLUMNS)
_TIME_SLOTS = tuple(
    RECORD_COLUMNS.index(col) for col in ("occurred_at", "created_at", "updated_at")
)


def record_values(r: dict[str, Any]) -> tuple[Any, ...]:
    """An exported record's values in :data:`RECORD_COLUMNS` order (times kept as given;
    a missing one, from an older or hand-written file, becomes now)."""
    values: tuple[Any, ...] = _RECORD_VALUES(r)
    if all(values[i] for i in _TIME_SLOTS):
        return values
    now = now_us()
    out = list(values)
    for i in _TIME_SLOTS:
        out[i] = out[i] or now
    return tuple(out)


def image_text(value: Any) -> str | None:
    """A history image as stored: JSON text kept verbatim, a parsed value dumped, None kept."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def history_rows(r: dict[str, Any]) -> list[tuple[Any, ...]]:
    """An exported record's history in :data:`HISTORY_COLUMNS` order (images as JSON text)."""
    return [
        (
            r["namespace"],
            r["id"],
            r["user_id"],
            r["thread_id"],
            h["op"],
            h["version"],
            image_text(h["before"]),
            image_text(h["after"]),
            h["at"],
        )
        for h in r["history"]
    ]


Present = Literal["unchanged", "conflicts"]


def present_outcome(old: MemoryRecord | None, r: dict[str, Any]) -> Present:
    """What an imported record whose insert hit a unique index counts as: the same id with
    the same text and version is unchanged; anything else (another version, another text,
    or another id holding the same text in the same scope) is a conflict, left as it is."""
    same = old is not None and old.content_hash == r["content_hash"] and old.version == r["version"]
    return "unchanged" if same else "conflicts"


def import_events_and_slots(
    lines: list[dict[str, Any]],
    execute: Callable[[str, Sequence[Any]], Any],
    executemany: Callable[[str, list[tuple[Any, ...]]], Any],
    ph: str,
) -> tuple[int, int]:
    """Insert exported event and slot lines through a store's open transaction; return how
    many events and slot maps were new.

    Both are idempotent: an event id already present, or a thread whose slots already
    exist, is skipped. ``execute`` returns a cursor with ``rowcount``; ``ph`` is the
    driver's placeholder.
    """
    event_sql = insert_sql("events", EVENT_COLUMNS, ph, "ON CONFLICT DO NOTHING")
    version_sql = insert_sql("slot_versions", SLOT_VERSION_COLUMNS, ph, "ON CONFLICT DO NOTHING")
    slot_sql = insert_sql("slots", SLOT_COLUMNS, ph)
    events = slots = 0
    for obj in lines:
        try:
            if obj["kind"] == "event":
                values: tuple[Any, ...] = tuple(
                    json.dumps(obj[col]) if col == "payload" else obj[col] for col in EVENT_COLUMNS
                )
                events += execute(event_sql, values).rowcount
                continue
            ns, thread = obj["namespace"], obj["thread_id"]
            values = (ns, thread, obj.get("user_id") or "", obj["version"], obj["updated_at"])
            if execute(version_sql, values).rowcount:
                slots += 1
                executemany(
                    slot_sql,
                    [(ns, thread, k, json.dumps(val)) for k, val in obj["values"].items()],
                )
        except KeyError as exc:
            raise ValidationError(f"malformed {obj.get('kind')} line: no field {exc}") from exc
        except (TypeError, AttributeError) as exc:
            raise ValidationError(f"malformed {obj.get('kind')} line: {exc}") from exc
    return events, slots


def exported_events_and_slots(
    fetch: Callable[[str, list[Any]], Sequence[Sequence[Any]]], ph: str, namespace: str | None
) -> Iterator[dict[str, Any]]:
    """Read a namespace's (or every) events and slots through ``fetch`` (SQL and arguments
    to rows, inside the store's read snapshot) and return them as export lines."""
    where, args = (f"WHERE namespace = {ph}", [namespace]) if namespace else ("", [])
    events = fetch(f"SELECT {', '.join(EVENT_COLUMNS)} FROM events {where} ORDER BY seq", args)
    versions = fetch(
        f"SELECT {', '.join(SLOT_VERSION_COLUMNS)} FROM slot_versions {where} "
        "ORDER BY namespace, thread_id",
        args,
    )
    slot_rows = fetch(f"SELECT {', '.join(SLOT_COLUMNS)} FROM slots {where}", args)
    return event_and_slot_lines(events, versions, slot_rows)


def event_and_slot_lines(
    events: Sequence[Sequence[Any]],
    versions: Sequence[Sequence[Any]],
    slot_rows: Sequence[Sequence[Any]],
) -> Iterator[dict[str, Any]]:
    """Turn exported event, slot-version and slot rows into export lines (both stores).

    Rows: events in :data:`EVENT_COLUMNS` order (payload as JSON text), versions in
    :data:`SLOT_VERSION_COLUMNS` order, slots in :data:`SLOT_COLUMNS` order (value as JSON
    text).
    """
    for row in events:
        line = {"kind": "event", **dict(zip(EVENT_COLUMNS, row, strict=True))}
        line["payload"] = json.loads(line["payload"])
        yield line
    values: dict[tuple[str, str], dict[str, Any]] = {}
    for ns, thread, name, value in slot_rows:
        values.setdefault((ns, thread), {})[name] = json.loads(value)
    for row in versions:
        slots = {"kind": "slots", **dict(zip(SLOT_VERSION_COLUMNS, row, strict=True))}
        slots["values"] = values.get((slots["namespace"], slots["thread_id"]), {})
        yield slots
