"""Wire schemas of the REST service, separate from the storage dataclasses in ``models``.

Every request model forbids unknown fields (``extra="forbid"``), so a request that tries to
set a server-owned field (``version``, ``created_at``, ``updated_at``, ``content_hash``,
``embedding``, ``namespace``) is refused with 422 instead of being silently ignored. Response
models list exactly what a client may see; nothing else leaves the server.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engramdb.models import AddResult, Event, HistoryEntry, MemoryRecord, SearchHit, Slots

Filter = dict[str, Any]


class _Request(BaseModel):
    """Base of every request body: unknown (or server-owned) fields are an error."""

    model_config = ConfigDict(extra="forbid")


class _Response(BaseModel):
    """Base of every response body."""

    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------------------- requests


class _RecordDefaults(_Request):
    """Fields a caller may give for a record (per item, or as defaults for a batch)."""

    user_id: str | None = None
    agent_id: str | None = None
    thread_id: str | None = None
    type: str | None = None
    metadata: dict[str, Any] | None = None
    tags: list[str] | None = None
    source: str | None = None
    importance: float | None = None
    occurred_at: datetime | None = None
    expires_at: datetime | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None


class RecordIn(_RecordDefaults):
    """One item of a batch add; ``id`` (optional) makes the add idempotent."""

    text: str
    id: str | None = None


class AddRequest(_RecordDefaults):
    """Add one record (``text``) or a batch (``items``); the other fields are defaults.

    ``on_error="abort"`` stores nothing when any item is bad; ``"skip"`` stores the good
    items and reports the others as ``rejected``.
    """

    text: str | None = None
    id: str | None = None
    items: list[RecordIn | str] | None = Field(None, min_length=1)
    on_error: Literal["abort", "skip"] = "abort"

    @model_validator(mode="after")
    def _one_of_text_or_items(self) -> AddRequest:
        if (self.text is None) == (self.items is None):
            raise ValueError("give exactly one of 'text' (one record) or 'items' (a batch)")
        if self.id is not None and self.items is not None:
            raise ValueError("'id' applies to a single text; put ids in the items")
        return self

    def library_items(self) -> str | list[str | dict[str, Any]]:
        """Return the ``text`` argument of ``Memory.add`` (a string or a list of items)."""
        if self.items is None:
            assert self.text is not None
            return self.text
        return [
            i if isinstance(i, str) else i.model_dump(exclude_none=True, exclude_unset=True)
            for i in self.items
        ]

    def library_defaults(self) -> dict[str, Any]:
        """Return the keyword defaults for ``Memory.add``."""
        return self.model_dump(include=set(_RecordDefaults.model_fields))


class _Shortcuts(_Request):
    """Scope shortcuts ANDed with ``filter`` (the same as the library's keyword arguments)."""

    filter: Filter | None = Field(None, description="Filter object (see the filter language)")
    user_id: str | None = None
    agent_id: str | None = None
    thread_id: str | None = None
    type: str | None = None
    tags: list[str] | None = None

    def shortcuts(self) -> dict[str, Any]:
        """Return the shortcut keyword arguments."""
        return {
            "user_id": self.user_id,
            "agent_id": self.agent_id,
            "thread_id": self.thread_id,
            "type": self.type,
            "tags": self.tags,
        }


class CountRequest(_Shortcuts):
    """Count records matching a filter."""

    valid_at: datetime | None = None
    include_expired: bool = False


class DeleteAllRequest(_Shortcuts):
    """Delete every record matching a filter; with no filter at all, ``all`` must be true."""

    all: bool = False


class GetManyRequest(_Request):
    """Fetch several records by id."""

    ids: list[str]


class UpdateRequest(_Request):
    """Change a record. ``expected_version`` makes it a compare-and-set (409 when stale)."""

    text: str | None = None
    metadata: dict[str, Any] | None = None
    add_tags: list[str] | None = None
    remove_tags: list[str] | None = None
    importance: float | None = None
    type: str | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    expires_at: datetime | None = None
    clear: list[str] | None = None
    expected_version: int | None = None


class SearchRequest(_Shortcuts):
    """Find the records most relevant to ``query``."""

    query: str
    top_k: int = 10
    mode: Literal["hybrid", "vector", "keyword"] = "hybrid"
    threshold: float | None = None
    offset: int = 0
    cursor: str | None = None
    valid_at: datetime | None = None
    include_expired: bool = False


class MessageIn(_Request):
    """One conversation turn."""

    role: str
    content: str
    occurred_at: datetime | None = None
    metadata: dict[str, Any] | None = None
    name: str | None = None


class AddMessagesRequest(_Request):
    """Append conversation turns to a thread (and remember them as records)."""

    messages: list[MessageIn] = Field(min_length=1)
    user_id: str | None = None
    agent_id: str | None = None
    remember: bool = True


class LogEventRequest(_Request):
    """Append one event to a thread's log."""

    action: str
    payload: dict[str, Any] | None = None
    user_id: str | None = None
    actor: str | None = None


class SetSlotsRequest(_Request):
    """Write working-memory slots (a null value removes a slot); compare-and-set."""

    values: dict[str, Any]
    expected_version: int | None = None
    user_id: str | None = None


class ForgetRequest(_Request):
    """Erase a user's, a thread's, or (``namespace=true``) the whole namespace's data."""

    user_id: str | None = None
    thread_id: str | None = None
    namespace: bool = False


class DoctorRequest(_Request):
    """Check integrity; ``repair`` rebuilds derived indexes."""

    repair: bool = False


class ExportRequest(_Request):
    """Export one namespace (or all) as versioned JSONL."""

    namespace: str | None = Field(None, description="Namespace to export; default: the server's")
    filter: Filter | None = None
    all_namespaces: bool = False
    vectors: bool = True


class ReembedRequest(_Request):
    """Re-embed every chunk with another embedder, then switch to it."""

    embedder: Literal["minilm", "hash"]
    batch: int = Field(256, ge=1, le=10_000)


# ---------------------------------------------------------------------------- responses


class ErrorOut(_Response):
    """The body of every error response."""

    error: str = Field(description="Machine-readable code, e.g. not_found, validation_error")
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class RecordOut(_Response):
    """A stored record as clients see it."""

    id: str
    namespace: str
    text: str
    type: str
    user_id: str | None
    agent_id: str | None
    thread_id: str | None
    metadata: dict[str, Any]
    tags: list[str]
    source: str | None
    importance: float | None
    occurred_at: datetime | None
    created_at: datetime | None
    updated_at: datetime | None
    valid_from: datetime | None
    valid_to: datetime | None
    expires_at: datetime | None
    version: int
    content_hash: str
    event_id: str | None

    @classmethod
    def of(cls, r: MemoryRecord) -> RecordOut:
        """Build from a storage record."""
        return cls(
            id=r.id,
            namespace=r.namespace,
            text=r.text,
            type=r.type,
            user_id=r.user_id,
            agent_id=r.agent_id,
            thread_id=r.thread_id,
            metadata=r.metadata,
            tags=r.tags,
            source=r.source,
            importance=r.importance,
            occurred_at=r.occurred_at,
            created_at=r.created_at,
            updated_at=r.updated_at,
            valid_from=r.valid_from,
            valid_to=r.valid_to,
            expires_at=r.expires_at,
            version=r.version,
            content_hash=r.content_hash,
            event_id=r.event_id,
        )


class AddResultOut(_Response):
    """The outcome of one item of an add."""

    index: int
    outcome: Literal["written", "deduplicated", "rejected", "unchanged"]
    deduplicated: bool
    id: str | None
    record: RecordOut | None
    error: str | None

    @classmethod
    def of(cls, r: AddResult) -> AddResultOut:
        """Build from a library result."""
        return cls(
            index=r.index,
            outcome=r.outcome,
            deduplicated=r.deduplicated,
            id=r.id,
            record=RecordOut.of(r.record) if r.record else None,
            error=r.error,
        )


class AddResultsOut(_Response):
    """The outcomes of an add, one per item, in input order."""

    results: list[AddResultOut]


class RecordsOut(_Response):
    """A list of records."""

    records: list[RecordOut]


class RecordPageOut(_Response):
    """One page of records; pass ``next_cursor`` as ``cursor`` for the next one."""

    records: list[RecordOut]
    next_cursor: str | None


class CountOut(_Response):
    """A record count."""

    count: int


class DeletedOut(_Response):
    """How many records were deleted."""

    deleted: int


class HistoryEntryOut(_Response):
    """One change of a record."""

    seq: int
    record_id: str
    namespace: str
    op: str
    version: int
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    at: datetime

    @classmethod
    def of(cls, h: HistoryEntry) -> HistoryEntryOut:
        """Build from a library history entry."""
        return cls(
            seq=h.seq,
            record_id=h.record_id,
            namespace=h.namespace,
            op=h.op,
            version=h.version,
            before=h.before,
            after=h.after,
            at=h.at,
        )


class HistoryOut(_Response):
    """Every change of a record, oldest first."""

    entries: list[HistoryEntryOut]


class ScorePartsOut(_Response):
    """Why a hit scored what it did."""

    vector: float | None
    keyword: float | None
    fused: float
    vector_rank: int | None
    keyword_rank: int | None


class SearchHitOut(_Response):
    """One search hit."""

    record: RecordOut
    score: float
    parts: ScorePartsOut
    chunk: str

    @classmethod
    def of(cls, h: SearchHit) -> SearchHitOut:
        """Build from a library hit."""
        p = h.parts
        return cls(
            record=RecordOut.of(h.record),
            score=h.score,
            parts=ScorePartsOut(
                vector=p.vector,
                keyword=p.keyword,
                fused=p.fused,
                vector_rank=p.vector_rank,
                keyword_rank=p.keyword_rank,
            ),
            chunk=h.chunk,
        )


class SearchPageOut(_Response):
    """One page of search hits."""

    hits: list[SearchHitOut]
    next_cursor: str | None


class EventOut(_Response):
    """One episodic event."""

    id: str
    namespace: str
    thread_id: str
    action: str
    payload: dict[str, Any]
    user_id: str | None
    actor: str | None
    timestamp: datetime
    seq: int

    @classmethod
    def of(cls, e: Event) -> EventOut:
        """Build from a library event."""
        return cls(
            id=e.id,
            namespace=e.namespace,
            thread_id=e.thread_id,
            action=e.action,
            payload=e.payload,
            user_id=e.user_id,
            actor=e.actor,
            timestamp=e.timestamp,
            seq=e.seq,
        )


class EventsOut(_Response):
    """A thread's events in append order."""

    events: list[EventOut]


class SlotsOut(_Response):
    """A thread's working memory and its version."""

    namespace: str
    thread_id: str
    values: dict[str, Any]
    version: int
    updated_at: datetime | None

    @classmethod
    def of(cls, s: Slots) -> SlotsOut:
        """Build from library slots."""
        return cls(
            namespace=s.namespace,
            thread_id=s.thread_id,
            values=s.values,
            version=s.version,
            updated_at=s.updated_at,
        )


class SnapshotOut(_Response):
    """A readable, ordered account of a thread."""

    namespace: str
    thread_id: str
    events: list[EventOut]
    slots: SlotsOut
    text: str


class ForgetOut(_Response):
    """What ``forget`` erased, by kind."""

    erased: dict[str, int]


class NamespacesOut(_Response):
    """Every namespace with its record count."""

    namespaces: dict[str, int]


class StatsOut(_Response):
    """Counts and sizes for a namespace and for the whole store."""

    namespace: str
    namespace_stats: dict[str, Any]
    store: dict[str, Any]
    embedder: dict[str, Any]
    cache: dict[str, Any] | None = None


class HealthOut(_Response):
    """Health of each component; ``status`` is ``ok`` or ``degraded``."""

    status: str
    components: dict[str, Any]
    pid: int = Field(description="Process id of the worker that answered")


class DoctorOut(_Response):
    """The doctor's report."""

    report: dict[str, Any]


class ImportOut(_Response):
    """What an import did, by kind."""

    imported: dict[str, int]


class ReembedOut(_Response):
    """How many chunks were re-embedded, and the embedder now in use."""

    reembedded: int
    embedder: dict[str, Any]
