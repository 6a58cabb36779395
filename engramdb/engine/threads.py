"""A thread's episodic log and working memory: events, slots and the snapshot of both.

Events are append-only; slots are compare-and-set with a version. Reads go through the
cache tier. A snapshot also lists the thread's newest checkpoints when an agent framework's
checkpointer (LangGraph's, ``EngramSaver``) keeps the thread in this store, so one call
shows what an agent said, holds and where its graph stands.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from engramdb.cache import Cache
from engramdb.config import Settings
from engramdb.engine import validation as v
from engramdb.ids import new_id
from engramdb.models import CheckpointSummary, Event, Slots, Snapshot
from engramdb.stores.base import Checkpoints, Store
from engramdb.stores.prepared import PreparedEvent
from engramdb.timeutil import now_us


class Threads:
    """Appends and reads thread events, and reads and writes thread slots."""

    def __init__(self, settings: Settings, store: Store, cache: Cache) -> None:
        self.settings = settings
        self.store = store
        self.cache = cache

    def log_event(
        self,
        namespace: str,
        thread_id: str,
        action: str,
        payload: dict[str, Any] | None,
        user_id: str | None,
        actor: str | None,
    ) -> Event:
        """Append one event to a thread's log."""
        v.check_namespace(namespace)
        thread = v.check_thread(thread_id)
        v.check_action(action)
        data = v.check_metadata(payload, self.settings)
        ev = PreparedEvent(
            new_id(),
            thread,
            v.check_scope(user_id, "user_id") or "",
            v.check_scope(actor, "actor") or "",
            action,
            json.dumps(data, ensure_ascii=False),
            now_us(),
        )
        return self.store.append_events(namespace, [ev])[0]

    def events(
        self, namespace: str, thread_id: str, since: datetime | str | None, limit: int
    ) -> list[Event]:
        """Return a thread's events in order."""
        v.check_namespace(namespace)
        thread = v.check_scope(thread_id, "thread_id") or ""
        limit = v.check_limit(limit, self.settings, "limit")
        since_us = v.check_time(since, "since")
        return self.cache.events(
            namespace,
            [thread, since_us, limit],
            lambda: self.store.list_events(namespace, thread, since_us, limit),
        )

    def set_slots(
        self,
        namespace: str,
        thread_id: str,
        values: dict[str, Any],
        expected_version: int | None,
        user_id: str | None,
    ) -> Slots:
        """Compare-and-set a thread's working-memory slots."""
        v.check_namespace(namespace)
        thread = v.check_thread(thread_id)
        v.check_slot_values(values, self.settings)
        v.check_expected_version(expected_version)
        return self.store.set_slots(
            namespace, thread, values, expected_version, v.check_scope(user_id, "user_id") or ""
        )

    def get_slots(self, namespace: str, thread_id: str) -> Slots:
        """Return a thread's slots."""
        v.check_namespace(namespace)
        thread = v.check_scope(thread_id, "thread_id") or ""
        return self.cache.slots(namespace, thread, lambda: self.store.get_slots(namespace, thread))

    def snapshot(self, namespace: str, thread_id: str, limit: int = 1000) -> Snapshot:
        """Return the thread's events and slots as data and as readable text."""
        events = self.events(namespace, thread_id, None, limit)
        slots = self.get_slots(namespace, thread_id)
        checkpoints: list[CheckpointSummary] = []
        if isinstance(self.store, Checkpoints):
            checkpoints = self.store.latest_checkpoints(
                namespace, v.check_scope(thread_id, "thread_id") or "", SNAPSHOT_CHECKPOINTS
            )
        text = render(namespace, thread_id, events, slots, checkpoints)
        return Snapshot(namespace, thread_id, events, slots, text, checkpoints)


SNAPSHOT_CHECKPOINTS = 10  # the newest checkpoints a snapshot lists


def render(
    namespace: str,
    thread_id: str,
    events: list[Event],
    slots: Slots,
    checkpoints: list[CheckpointSummary] | None = None,
) -> str:
    """A thread as readable text: its slots, its newest checkpoints, then its events in
    order, one per line."""
    lines = [f"Thread {thread_id} (namespace {namespace})"]
    if slots.values:
        lines.append(f"Working memory (version {slots.version}):")
        for name, value in slots.values.items():
            lines.append(f"  {name}: {json.dumps(value, ensure_ascii=False)}")
    if checkpoints:
        lines.append(f"Checkpoints (newest {len(checkpoints)}):")
        for cp in checkpoints:
            when = cp.created_at.isoformat(timespec="seconds")
            where = f" ns={cp.checkpoint_ns}" if cp.checkpoint_ns else ""
            step = cp.metadata.get("step")
            source = cp.metadata.get("source")
            about = " ".join(
                f"{k}={val}" for k, val in (("step", step), ("source", source)) if val is not None
            )
            lines.append(f"  [{when}] {cp.checkpoint_id}{where} {about}".rstrip())
    lines.append(f"Events ({len(events)}):")
    for e in events:
        when = e.timestamp.isoformat(timespec="seconds")
        if e.action == "message":
            lines.append(f"  [{when}] {e.actor}: {e.payload.get('content', '')}")
        else:
            lines.append(
                f"  [{when}] {e.actor or '-'} {e.action} "
                f"{json.dumps(e.payload, ensure_ascii=False)}"
            )
    return "\n".join(lines)
