"""JSON encodings of the cached values (never pickle: a cache must not execute its data).

Each decoder rebuilds exactly the object the store returned: datetimes travel as ISO 8601
strings with their UTC offset and microseconds, floats as ``repr`` (exact in JSON), and
metadata, payloads and slot values are JSON already.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from engramdb.models import Event, MemoryRecord, ScoreParts, SearchHit, SearchPage, Slots

_RECORD_TIMES = ("occurred_at", "created_at", "updated_at", "valid_from", "valid_to", "expires_at")


def _time(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def record_out(record: MemoryRecord) -> dict[str, Any]:
    """Encode a record."""
    return record.to_dict()


def record_in(data: dict[str, Any]) -> MemoryRecord:
    """Decode a record."""
    fields = dict(data)
    for name in _RECORD_TIMES:
        fields[name] = _time(fields.get(name))
    return MemoryRecord(**fields)


def slots_out(slots: Slots) -> dict[str, Any]:
    """Encode a thread's slots."""
    return slots.to_dict()


def slots_in(data: dict[str, Any]) -> Slots:
    """Decode a thread's slots."""
    return Slots(**{**data, "updated_at": _time(data.get("updated_at"))})


def events_out(events: list[Event]) -> list[dict[str, Any]]:
    """Encode a list of events."""
    return [e.to_dict() for e in events]


def events_in(data: list[dict[str, Any]]) -> list[Event]:
    """Decode a list of events."""
    return [Event(**{**e, "timestamp": datetime.fromisoformat(e["timestamp"])}) for e in data]


def page_out(page: SearchPage) -> dict[str, Any]:
    """Encode a page of search hits."""
    return {
        "hits": [
            {
                "record": record_out(h.record),
                "score": h.score,
                "parts": asdict(h.parts),
                "chunk": h.chunk,
            }
            for h in page.hits
        ],
        "next_cursor": page.next_cursor,
    }


def page_in(data: dict[str, Any]) -> SearchPage:
    """Decode a page of search hits."""
    hits = [
        SearchHit(record_in(h["record"]), h["score"], ScoreParts(**h["parts"]), h["chunk"])
        for h in data["hits"]
    ]
    return SearchPage(hits, data["next_cursor"])
