"""Reading records: by id (through the cache tier), by filter in pages, counts, history.

A record's history has no row for its add (the record as inserted is the before-image of
its first change, or the live record): :meth:`Records.history` derives that entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from engramdb.cache import Cache
from engramdb.config import Settings
from engramdb.engine import validation as v
from engramdb.engine.cursors import decode_cursor, encode_cursor
from engramdb.errors import LimitExceededError, NotFoundError, ValidationError
from engramdb.models import HistoryEntry, MemoryRecord, RecordPage
from engramdb.query.filters import Bool, Cmp, Live, Node, ValidAt, parse
from engramdb.stores.base import Store
from engramdb.timeutil import now_us, to_us


class Records:
    """Reads records and their history from one store, by id through the cache tier."""

    def __init__(self, settings: Settings, store: Store, cache: Cache) -> None:
        self.settings = settings
        self.store = store
        self.cache = cache

    def get(self, namespace: str, record_id: str) -> MemoryRecord:
        """Return one record or raise NotFoundError."""
        v.check_namespace(namespace)
        found = self.cache.records(
            namespace,
            [v.check_id(record_id)],
            lambda ids: self.store.get_records(namespace, ids),
        )
        if not found:
            raise NotFoundError(
                f"record {record_id!r} not found in namespace {namespace!r}", id=record_id
            )
        return found[0]

    def get_many(self, namespace: str, ids: Sequence[str]) -> list[MemoryRecord]:
        """Return the records that exist among ``ids``, in the order given."""
        v.check_namespace(namespace)
        if isinstance(ids, str) or not isinstance(ids, Sequence):
            raise ValidationError("ids must be a list of record ids", field="ids")
        if len(ids) > self.settings.max_top_k:
            raise LimitExceededError(
                f"{len(ids)} ids; the limit max_top_k is {self.settings.max_top_k}",
                field="ids",
                limit="max_top_k",
                value=len(ids),
            )
        return self.cache.records(
            namespace,
            [v.check_id(i) for i in ids],
            lambda wanted: self.store.get_records(namespace, wanted),
        )

    def build_filter(
        self,
        filters: dict[str, Any] | None,
        shortcuts: dict[str, Any],
        valid_at: datetime | str | None,
        include_expired: bool,
    ) -> Node | None:
        """Combine a filter object, scope shortcuts, valid_at and the expiry rule into one tree."""
        node = parse(filters, self.settings.max_filter_clauses, self.settings.max_in_values)
        items: list[Node] = [] if node is None else [node]
        for key, value in shortcuts.items():
            if value is None:
                continue
            if key == "tags":
                tags = v.check_tags(value if not isinstance(value, str) else [value], self.settings)
                if tags:  # no tags asked for (an empty list): no tag constraint
                    items.append(Cmp("tags", "tags", "$contains", tuple(tags)))
            elif key == "type":
                items.append(Cmp("str", "type", "$eq", v.check_type(value)))
            else:
                items.append(Cmp("str", key, "$eq", v.check_scope(value, key)))
        if valid_at is not None:
            items.append(ValidAt(to_us(valid_at, "valid_at")))
        if not include_expired:
            items.append(Live(now_us()))
        if not items:
            return None
        return items[0] if len(items) == 1 else Bool("and", tuple(items))

    def list_page(
        self, namespace: str, node: Node | None, limit: int, cursor: str | None, descending: bool
    ) -> RecordPage:
        """Return a keyset page ordered by id (time-ordered ids: oldest first by default)."""
        v.check_namespace(namespace)
        limit = v.check_limit(limit, self.settings, "limit")
        after = None if cursor is None else decode_cursor(cursor, "a")
        if after is not None:
            after = v.check_id(after, "cursor")
        rows = self.store.list_records(namespace, node, limit + 1, after, descending)
        more = len(rows) > limit
        rows = rows[:limit]
        nxt = encode_cursor("a", rows[-1].id) if more and rows else None
        return RecordPage(rows, nxt)

    def count(self, namespace: str, node: Node | None) -> int:
        """Count matching records."""
        v.check_namespace(namespace)
        return self.store.count_records(namespace, node)

    def history(self, namespace: str, record_id: str) -> list[HistoryEntry]:
        """Return the change history of a record (also after it was deleted)."""
        v.check_namespace(namespace)
        record_id = v.check_id(record_id)
        entries = self.store.history(namespace, record_id)
        live: list[MemoryRecord] | None = None
        if not entries or entries[0].op != "add":
            live = self.store.get_records(namespace, [record_id])
            first = entries[0].before if entries else (live[0].to_dict() if live else None)
            if first is not None:
                entries.insert(0, _derived_add(namespace, record_id, first))
        if not entries:
            raise NotFoundError(
                f"no history for record {record_id!r} in namespace {namespace!r}", id=record_id
            )
        self._fill_add_images(namespace, record_id, entries, live)
        return entries

    def _fill_add_images(
        self,
        namespace: str,
        record_id: str,
        entries: list[HistoryEntry],
        live: list[MemoryRecord] | None,
    ) -> None:
        """Derive the after-image of ``add`` entries stored (or derived) without one.

        It is the record as inserted: the before-image of the next change, or, when there
        was none, the live record (``live``: already read, or None to read it here).
        """
        for i, entry in enumerate(entries):
            if entry.op != "add" or entry.after is not None:
                continue
            if i + 1 < len(entries):
                entry.after = entries[i + 1].before
            else:
                if live is None:
                    live = self.store.get_records(namespace, [record_id])
                entry.after = live[0].to_dict() if live else None


def _derived_add(namespace: str, record_id: str, first: dict[str, Any]) -> HistoryEntry:
    """The ``add`` entry of a record whose add left no history row.

    Adds write no history row (the record as inserted is the before-image of its first
    change, or the live record; its time is ``created_at``): that row was a third of the
    write path's random index inserts. Stores written before that keep their ``add`` rows,
    which are returned as stored. The derived entry has ``seq`` 0 (before every stored row)
    and the version of the first image (1 unless the record was imported at a later one).
    """
    return HistoryEntry(
        seq=0,
        record_id=record_id,
        namespace=namespace,
        op="add",
        version=int(first.get("version") or 1),
        before=None,
        after=None,
        at=datetime.fromisoformat(first["created_at"]),
    )
