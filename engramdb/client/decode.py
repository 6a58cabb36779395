"""REST response bodies -> the objects ``Memory`` returns (records, pages, events, slots...).

The wire schemas of the service list the same fields as the dataclasses of
``engramdb.models`` (plus derived ones such as an add result's ``id``, dropped here), so a
remote call returns what the embedded one returns. One function per call, by its name.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from engramdb.errors import ResponseError
from engramdb.models import (
    AddResult,
    ArchiveAction,
    ArchivedRecord,
    CheckpointSummary,
    ConsolidationReport,
    Entity,
    EntityGraph,
    Event,
    HistoryEntry,
    MemoryRecord,
    Mention,
    MergeAction,
    RecordPage,
    Relation,
    ScoreParts,
    SearchHit,
    SearchPage,
    Slots,
    Snapshot,
    SummaryAction,
)

_RECORD_TIMES = ("occurred_at", "created_at", "updated_at", "valid_from", "valid_to", "expires_at")


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    return datetime.fromisoformat(value)


def record(d: dict[str, Any]) -> MemoryRecord:
    """A record from its REST body."""
    fields = dict(d)
    for name in _RECORD_TIMES:
        fields[name] = _time(fields.get(name))
    return MemoryRecord(**fields)


def _results(body: dict[str, Any]) -> list[AddResult]:
    return [
        AddResult(
            index=r["index"],
            outcome=r["outcome"],
            record=record(r["record"]) if r.get("record") else None,
            error=r.get("error"),
        )
        for r in body["results"]
    ]


def _records(body: dict[str, Any]) -> list[MemoryRecord]:
    return [record(r) for r in body["records"]]


def _page(body: dict[str, Any]) -> RecordPage:
    return RecordPage(records=_records(body), next_cursor=body.get("next_cursor"))


def _history(body: dict[str, Any]) -> list[HistoryEntry]:
    return [HistoryEntry(**{**e, "at": _time(e["at"])}) for e in body["entries"]]


def entity(e: dict[str, Any]) -> Entity:
    """An entity from its REST body (``mentions`` only when the call gives them)."""
    mentions = e.get("mentions")
    return Entity(
        **{
            **e,
            "mentions": None if mentions is None else [Mention(**m) for m in mentions],
        }
    )


def graph(g: dict[str, Any]) -> EntityGraph:
    """Entities and the relations between them, from their REST body."""
    return EntityGraph(
        entities=[entity(e) for e in g["entities"]],
        relations=[Relation(**r) for r in g["relations"]],
    )


def _hit(h: dict[str, Any]) -> SearchHit:
    entities = h.get("entities")
    return SearchHit(
        record=record(h["record"]),
        score=h["score"],
        parts=ScoreParts(**h["parts"]),
        chunk=h["chunk"],
        entities=None if entities is None else graph(entities),
    )


def _search(body: dict[str, Any]) -> SearchPage:
    return SearchPage(hits=[_hit(h) for h in body["hits"]], next_cursor=body.get("next_cursor"))


def event(e: dict[str, Any]) -> Event:
    """An event from its REST body."""
    return Event(**{**e, "timestamp": _time(e["timestamp"])})


def slots(s: dict[str, Any]) -> Slots:
    """A thread's slots from their REST body."""
    return Slots(**{**s, "updated_at": _time(s.get("updated_at"))})


def _snapshot(body: dict[str, Any]) -> Snapshot:
    return Snapshot(
        namespace=body["namespace"],
        thread_id=body["thread_id"],
        events=[event(e) for e in body["events"]],
        slots=slots(body["slots"]),
        text=body["text"],
        checkpoints=[
            CheckpointSummary(**{**c, "created_at": _time(c["created_at"])})
            for c in body.get("checkpoints", [])
        ],
    )


def _health(body: dict[str, Any]) -> dict[str, Any]:
    # the library's shape: one entry per component, then the overall status
    return {**body["components"], "status": body["status"]}


def _report(b: dict[str, Any]) -> ConsolidationReport:
    merges = [MergeAction(**{**m, "occurred_at": _time(m.get("occurred_at"))}) for m in b["merges"]]
    return ConsolidationReport(
        namespace=b["namespace"],
        dry_run=b["dry_run"],
        scanned=b["scanned"],
        merges=merges,
        expired=[ArchiveAction(**a) for a in b["expired"]],
        archived=[ArchiveAction(**a) for a in b["archived"]],
        summaries=[SummaryAction(**x) for x in b["summaries"]],
        skipped=list(b["skipped"]),
        seconds=b["seconds"],
    )


def _archived(b: dict[str, Any]) -> list[ArchivedRecord]:
    return [
        ArchivedRecord(
            record=record(a["record"]),
            reason=a["reason"],
            archived_at=datetime.fromisoformat(a["archived_at"]),
            merged_into=a.get("merged_into"),
        )
        for a in b["archived"]
    ]


DECODERS: dict[str, Callable[[Any], Any]] = {
    "add": _results,
    "add_messages": _results,
    "get": record,
    "update": record,
    "get_many": _records,
    "list": _page,
    "count": lambda b: b["count"],
    "delete": lambda b: None,
    "delete_all": lambda b: b["deleted"],
    "history": _history,
    "search": _search,
    "entities": lambda b: [entity(e) for e in b["entities"]],
    "entity": entity,
    "relations": graph,
    "records_about": _records,
    "unlink_entity": entity,
    "entity_history": lambda b: [dict(e) for e in b["entries"]],
    "consolidate": _report,
    "unmerge": _records,
    "restore_archived": record,
    "archived": _archived,
    "summarize_text": lambda b: b["summary"],
    "log_event": event,
    "events": lambda b: [event(e) for e in b["events"]],
    "snapshot": _snapshot,
    "set_slots": slots,
    "get_slots": slots,
    "forget": lambda b: b["erased"],
    "namespaces": lambda b: b["namespaces"],
    "stats": dict,
    "health": _health,
    "doctor": lambda b: b["report"],
    "backup": lambda b: None,
    "restore": lambda b: None,
    "export": lambda b: b,  # the record count the transport read from the file
    "import_": lambda b: b["imported"],
    "reembed": lambda b: b["reembedded"],
}


def decode(op: str, body: Any) -> Any:
    """Return what ``Memory.<op>`` returns, read from the service's response body.

    Raises:
        ResponseError: the body is not the shape the service documents for ``op``.
    """
    try:
        return DECODERS[op](body)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ResponseError(
            f"the service's answer to {op} is not the documented shape ({type(exc).__name__})",
            op=op,
        ) from exc
