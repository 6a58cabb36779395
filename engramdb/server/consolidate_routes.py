"""REST routes of consolidation (the library's ``consolidate`` and its undo verbs).

::

    POST /v1/namespaces/{ns}/consolidate                      consolidate (a write)
    POST /v1/namespaces/{ns}/records/{id}/unmerge             unmerge
    POST /v1/namespaces/{ns}/records/{id}/restore-archived    restore_archived
    GET  /v1/namespaces/{ns}/archived                         archived
    POST /v1/namespaces/{ns}/summarize                        summarize_text (writes nothing)

``consolidate`` changes records, so a read-only key gets 403 (even for ``dry_run``: one
route, one rule).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter
from pydantic import Field

from engramdb.server import schemas as s
from engramdb.server.routes import ERROR_RESPONSES, ROUTES_BY_VERB, Mem

CONSOLIDATE_ROUTES_BY_VERB: dict[str, tuple[str, str]] = {
    "consolidate": ("POST", "/v1/namespaces/{ns}/consolidate"),
    "unmerge": ("POST", "/v1/namespaces/{ns}/records/{record_id}/unmerge"),
    "restore_archived": ("POST", "/v1/namespaces/{ns}/records/{record_id}/restore-archived"),
    "archived": ("GET", "/v1/namespaces/{ns}/archived"),
    "summarize_text": ("POST", "/v1/namespaces/{ns}/summarize"),
}
ROUTES_BY_VERB.update(CONSOLIDATE_ROUTES_BY_VERB)

consolidation = APIRouter(
    prefix="/v1/namespaces/{ns}", tags=["consolidation"], responses=ERROR_RESPONSES
)


class ConsolidateRequest(s._Request):
    """One consolidation pass over the namespace, or one user's or thread's part of it."""

    user_id: s.ScopeStr | None = None
    thread_id: s.ScopeStr | None = None
    dry_run: bool = Field(False, description="Report the plan and change nothing.")


class SummarizeRequest(s._Request):
    """A text to summarize with the store's summarizer."""

    text: str
    max_sentences: int | None = Field(None, ge=1, le=50)


class MergeOut(s._Response):
    """Near-duplicates folded into ``survivor_id``."""

    survivor_id: str
    merged_ids: list[str]
    similarity: float
    text: str
    tags: list[str]
    occurred_at: datetime | None
    user_id: str | None
    thread_id: str | None


class ArchiveOut(s._Response):
    """A record expired (deleted) or archived by retention."""

    record_id: str
    reason: Literal["expired", "retention"]
    score: float | None


class SummaryOut(s._Response):
    """A thread summary written or refreshed."""

    thread_id: str
    user_id: str | None
    summary_id: str | None
    turns: int
    text: str
    status: Literal["created", "refreshed"]


class ConsolidationOut(s._Response):
    """What a consolidation did, or would do (``dry_run``)."""

    namespace: str
    dry_run: bool
    scanned: int
    merges: list[MergeOut]
    expired: list[ArchiveOut]
    archived: list[ArchiveOut]
    summaries: list[SummaryOut]
    skipped: list[str]
    seconds: float


class ArchivedOut(s._Response):
    """A record out of the live set: ``merged`` (into ``merged_into``) or ``retention``."""

    record: s.RecordOut
    reason: str
    archived_at: datetime
    merged_into: str | None


class ArchivedListOut(s._Response):
    """Archived records, newest first."""

    archived: list[ArchivedOut]


class SummaryTextOut(s._Response):
    """A summary of a caller's text."""

    summary: str


@consolidation.post("/consolidate", response_model=ConsolidationOut)
async def consolidate(body: ConsolidateRequest, mem: Mem) -> ConsolidationOut:
    """Merge near-duplicates, expire, archive by retention, summarize long threads."""
    report = await mem.consolidate(
        user_id=body.user_id, thread_id=body.thread_id, dry_run=body.dry_run
    )
    return ConsolidationOut.of(report)


@consolidation.post("/records/{record_id}/unmerge", response_model=s.RecordsOut)
async def unmerge(record_id: s.RecordIdPath, mem: Mem) -> s.RecordsOut:
    """Undo the merge a record took part in: the survivor, then the records brought back."""
    found = await mem.unmerge(record_id)
    return s.RecordsOut(records=[s.RecordOut.of(r) for r in found])


@consolidation.post("/records/{record_id}/restore-archived", response_model=s.RecordOut)
async def restore_archived(record_id: s.RecordIdPath, mem: Mem) -> s.RecordOut:
    """Bring an archived record back to search, list and count."""
    return s.RecordOut.of(await mem.restore_archived(record_id))


@consolidation.get("/archived", response_model=ArchivedListOut)
async def archived(mem: Mem, user_id: str | None = None, limit: int = 100) -> ArchivedListOut:
    """Records consolidation took out of the live set, newest first."""
    found = await mem.archived(user_id=user_id, limit=limit)
    return ArchivedListOut(archived=[ArchivedOut.of(a) for a in found])


@consolidation.post("/summarize", response_model=SummaryTextOut)
async def summarize(body: SummarizeRequest, mem: Mem) -> SummaryTextOut:
    """Summarize a text (extractive unless the service has an LLM summarizer)."""
    return SummaryTextOut(
        summary=await mem.summarize_text(body.text, max_sentences=body.max_sentences)
    )
