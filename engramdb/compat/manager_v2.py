"""MemoryManager v2 style: ``create_production_memory_manager`` / ``create_dev_memory_manager``
and the manager's ``awrite``, ``aretrieve``, ``alog_audit``, ``aset_rmt``,
``asnapshot_thread``, ``aconsolidate`` and ``health_check``, over :class:`AsyncMemory`.

The factories return the manager ready to use; it may also be awaited
(``mm = await create_production_memory_manager(...)``), as some of the teams' code does.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

from engramdb._async_memory import AsyncMemory
from engramdb.compat._urls import url_from_env
from engramdb.compat.models import (
    AuditEvent,
    MemoryRecord,
    RetrievedMemory,
    ThreadSnapshot,
    WriteResult,
)
from engramdb.errors import EngramError, ValidationError
from engramdb.models import Event

DEV_FILE = "engram-dev.db"
# Keys of an audit event kept beside its payload in the event log.
AUDIT_KEYS = ("event_id", "source")


class MemoryManagerV2:
    """The v2 manager's verbs over one :class:`AsyncMemory` (one namespace)."""

    def __init__(self, memory: AsyncMemory) -> None:
        self.memory = memory

    def __await__(self) -> Generator[Any, None, MemoryManagerV2]:
        """``await factory(...)`` gives the manager itself."""
        if False:  # pragma: no cover - makes this a generator
            yield
        return self

    async def awrite(self, records: MemoryRecord | Sequence[MemoryRecord]) -> list[WriteResult]:
        """Store records; one result per record, in order (a bad one does not stop the rest)."""
        batch = [records] if isinstance(records, MemoryRecord) else list(records)
        for i, record in enumerate(batch):
            if not isinstance(record, MemoryRecord):
                raise ValidationError(
                    f"awrite: item {i} is a {type(record).__name__}, not a compat MemoryRecord",
                    field="records",
                )
        if not batch:
            return []
        items = [_item(r) for r in batch]
        results = await self.memory.add(items, on_error="skip")
        return [
            WriteResult(
                index=r.index,
                id=r.record.id if r.record else None,
                ok=r.outcome != "rejected",
                status=r.outcome,
                error=r.error,
            )
            for r in results
        ]

    async def aretrieve(
        self,
        query: str,
        user_id: str | None = None,
        topk: int = 5,
        *,
        type: str | None = None,
        tags: Sequence[str] | None = None,
    ) -> list[RetrievedMemory]:
        """The ``topk`` records most relevant to ``query`` (each with ``.text``, ``.score``)."""
        page = await self.memory.search(
            query, user_id=user_id, top_k=topk, type=type, tags=list(tags) if tags else None
        )
        return [
            RetrievedMemory(
                id=h.record.id,
                text=h.record.text,
                user_id=h.record.user_id,
                type=h.record.type,
                source=h.record.source,
                tags=h.record.tags,
                metadata=h.record.metadata,
                thread_id=h.record.thread_id,
                agent_id=h.record.agent_id,
                importance=h.record.importance,
                created_at=h.record.created_at,
                score=h.score,
            )
            for h in page.hits
        ]

    async def alog_audit(self, event: AuditEvent) -> str:
        """Append ``event`` to its thread's event log; return its ``event_id``."""
        if not isinstance(event, AuditEvent):
            raise ValidationError("alog_audit takes a compat AuditEvent", field="event")
        await self.memory.log_event(
            event.thread_id,
            event.action,
            {"event_id": event.event_id, "source": event.source, "payload": event.payload},
            user_id=event.user_id,
            actor=event.source,
        )
        return event.event_id

    async def aset_rmt(self, thread_id: str, slots: dict[str, Any]) -> dict[str, Any]:
        """Write the thread's working-memory slots (None removes one); return them all."""
        if not isinstance(slots, dict):
            raise ValidationError("aset_rmt: slots must be a dict", field="slots")
        return dict((await self.memory.set_slots(thread_id, slots)).values)

    async def asnapshot_thread(self, thread_id: str) -> ThreadSnapshot:
        """A readable account of the thread: its events (as audit events) and slots."""
        snap = await self.memory.snapshot(thread_id)
        return ThreadSnapshot(
            thread_id=thread_id,
            events=[_audit(e) for e in snap.events],
            slots=dict(snap.slots.values),
            slots_version=snap.slots.version,
            text=snap.text,
        )

    async def aconsolidate(
        self,
        *,
        user_id: str | None = None,
        thread_id: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Run engramdb's consolidation (merge near-duplicates, expire, archive by
        retention, summarize long threads; see ``Memory.consolidate``) and report it the
        way the manager did: ``records`` left, ``consolidated`` (records merged away,
        expired or archived, and summaries written), ``changed``, and the full ``report``."""
        report = await self.memory.consolidate(
            user_id=user_id, thread_id=thread_id, dry_run=dry_run
        )
        stats = await self.memory.stats()
        records = await self.memory.count(include_expired=True)
        done = (
            sum(len(m.merged_ids) for m in report.merges)
            + len(report.expired)
            + len(report.archived)
            + len(report.summaries)
        )
        return {
            "namespace": self.memory.namespace,
            "records": records,
            "consolidated": done,
            "changed": done > 0 and not dry_run,
            "store": stats.get("store", {}),
            "report": report.to_dict(),
        }

    async def health_check(self) -> dict[str, bool]:
        """Each component (``store``, ``embedder``, ``cache``) → healthy, so
        ``all(h.values())`` works; a cache that is not configured counts as healthy."""
        try:
            health = await self.memory.health()
        except EngramError:
            return {"store": False, "embedder": False}
        return {
            name: isinstance(part, dict) and part.get("status") in ("ok", "disabled")
            for name, part in health.items()
            if name != "status"
        }

    async def aclose(self) -> None:
        """Close the store."""
        await self.memory.aclose()

    close = aclose


def _item(record: MemoryRecord) -> dict[str, Any]:
    item: dict[str, Any] = {
        "text": record.text,
        "type": record.type.lower(),
        "tags": record.tags,
        "metadata": record.metadata,
    }
    for name in ("id", "user_id", "source", "thread_id", "agent_id", "importance"):
        value = getattr(record, name)
        if value is not None:
            item[name] = value
    if record.created_at is not None:
        item["occurred_at"] = record.created_at
    return item


def _audit(event: Event) -> AuditEvent:
    payload = event.payload
    wrapped = isinstance(payload, dict) and set(payload) == {"event_id", "source", "payload"}
    return AuditEvent(
        event_id=str(payload["event_id"]) if wrapped else event.id,
        thread_id=event.thread_id,
        action=event.action,
        user_id=event.user_id,
        source=payload["source"] if wrapped else event.actor,
        payload=payload["payload"] if wrapped else payload,
        timestamp=event.timestamp,
    )


def create_production_memory_manager(
    namespace: str | None = None, *, embedder: str | None = None
) -> MemoryManagerV2:
    """The manager over the store named by ``ENGRAM_URL``, else ``POSTGRES_DSN`` /
    ``DATABASE_URL`` (``postgresql+asyncpg://`` and ``postgresql+psycopg://`` accepted).

    Raises:
        ValidationError: none of the variables is set.
    """
    return MemoryManagerV2(AsyncMemory(url_from_env(), namespace=namespace, embedder=embedder))


def create_dev_memory_manager(
    namespace: str | None = None, *, path: str | Path | None = None, embedder: str | None = None
) -> MemoryManagerV2:
    """The manager over an embedded SQLite file: ``path``, else ``engram-dev.db`` in the
    working directory."""
    file = Path(path or DEV_FILE)
    return MemoryManagerV2(AsyncMemory(f"sqlite:///{file}", namespace=namespace, embedder=embedder))
