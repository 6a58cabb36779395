"""Wire schemas of the REST service, separate from the storage dataclasses in ``models``.

Every request model forbids unknown fields (``extra="forbid"``), so a request that tries to
set a server-owned field (``version``, ``created_at``, ``updated_at``, ``content_hash``,
``embedding``, ``namespace``) is refused with 422 instead of being silently ignored. Response
models list exactly what a client may see; nothing else leaves the server.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Self

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, model_validator

from engramdb.server.entity_schemas import EntityGraphOut

Filter = dict[str, Any]

# Patterns and bounds declared in the OpenAPI document; they mirror the library's checks
# (engramdb.engine.validation), which stay the authority: a field the schema lets through
# is still checked there. ECMA/Rust ``$`` is the end of the text (no trailing newline).
NAMESPACE_RE = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"
ID_RE = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$"
SCOPE_RE = r"^[^\x00-\x1f\x7f]{1,256}$"
TYPE_RE = r"^[a-z][a-z0-9_\-]{0,63}$"
TAG_RE = r"^[^\x00-\x1f\x7f]{1,128}$"
INT64_MAX = 2**63 - 1
MAX_OFFSET = 100_000

NamespaceStr = Annotated[str, Field(pattern=NAMESPACE_RE, max_length=128)]
IdStr = Annotated[str, Field(pattern=ID_RE, max_length=128)]
ScopeStr = Annotated[str, Field(pattern=SCOPE_RE, min_length=1, max_length=256)]
TypeStr = Annotated[str, Field(pattern=TYPE_RE, max_length=64)]
TagStr = Annotated[str, Field(pattern=TAG_RE, min_length=1, max_length=128)]
TextStr = Annotated[str, Field(min_length=1)]
Importance = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Version = Annotated[int, Field(ge=0, le=INT64_MAX)]
# Path parameters of the routes.
NamespacePath = Annotated[str, Path(pattern=NAMESPACE_RE, max_length=128)]
RecordIdPath = Annotated[str, Path(pattern=ID_RE, max_length=128)]
ThreadIdPath = Annotated[str, Path(pattern=SCOPE_RE, min_length=1, max_length=256)]


class _Request(BaseModel):
    """Base of every request body: unknown (or server-owned) fields are an error."""

    model_config = ConfigDict(extra="forbid")


class _Response(BaseModel):
    """Base of every response body.

    A body built from a library object (a record, a hit, an event...) reads its fields by
    name, nested ones too (``from_attributes``): each body lists its fields once, in the
    model, instead of again in a copy list per class that had to be kept in step.
    """

    model_config = ConfigDict(extra="forbid", from_attributes=True)

    @classmethod
    def of(cls, obj: object) -> Self:
        """Build from the library object of the same shape."""
        return cls.model_validate(obj)


# ---------------------------------------------------------------------------- requests


class _RecordDefaults(_Request):
    """Fields a caller may give for a record (per item, or as defaults for a batch)."""

    user_id: ScopeStr | None = None
    agent_id: ScopeStr | None = None
    thread_id: ScopeStr | None = None
    type: TypeStr | None = None
    metadata: dict[str, Any] | None = None
    tags: list[TagStr] | None = None
    source: ScopeStr | None = None
    importance: Importance | None = None
    occurred_at: datetime | None = None
    expires_at: datetime | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None


class RecordIn(_RecordDefaults):
    """One item of a batch add; ``id`` (optional) makes the add idempotent."""

    text: TextStr
    id: IdStr | None = None


class AddRequest(_RecordDefaults):
    """Add one record (``text``) or a batch (``items``); the other fields are defaults.

    ``on_error="abort"`` stores nothing when any item is bad; ``"skip"`` stores the good
    items and reports the others as ``rejected``.
    """

    text: TextStr | None = None
    id: IdStr | None = None
    items: list[RecordIn | TextStr] | None = Field(None, min_length=1)
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
    user_id: ScopeStr | None = None
    agent_id: ScopeStr | None = None
    thread_id: ScopeStr | None = None
    type: TypeStr | None = None
    tags: list[TagStr] | None = None

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

    ids: list[IdStr]


class UpdateRequest(_Request):
    """Change a record. ``expected_version`` makes it a compare-and-set (409 when stale)."""

    text: TextStr | None = None
    metadata: dict[str, Any] | None = None
    add_tags: list[TagStr] | None = None
    remove_tags: list[TagStr] | None = None
    importance: Importance | None = None
    type: TypeStr | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    expires_at: datetime | None = None
    clear: list[str] | None = None
    expected_version: Version | None = None


class SearchRequest(_Shortcuts):
    """Find the records most relevant to ``query``."""

    query: TextStr
    top_k: int = Field(10, ge=1, description="Hits per page (at most max_top_k; past it 413)")
    mode: Literal["hybrid", "vector", "keyword"] = "hybrid"
    threshold: float | None = Field(None, allow_inf_nan=False)
    offset: int = Field(0, ge=0, le=MAX_OFFSET)
    cursor: str | None = Field(None, max_length=4096)
    valid_at: datetime | None = None
    include_expired: bool = False
    include_entities: bool = False


class MessageIn(_Request):
    """One conversation turn."""

    role: ScopeStr
    content: TextStr
    occurred_at: datetime | None = None
    metadata: dict[str, Any] | None = None
    name: ScopeStr | None = None


class AddMessagesRequest(_Request):
    """Append conversation turns to a thread (and remember them as records)."""

    messages: list[MessageIn] = Field(min_length=1)
    user_id: ScopeStr | None = None
    agent_id: ScopeStr | None = None
    remember: bool = True


class LogEventRequest(_Request):
    """Append one event to a thread's log."""

    action: ScopeStr
    payload: dict[str, Any] | None = None
    user_id: ScopeStr | None = None
    actor: ScopeStr | None = None


class SetSlotsRequest(_Request):
    """Write working-memory slots (a null value removes a slot); compare-and-set."""

    values: dict[str, Any]
    expected_version: Version | None = None
    user_id: ScopeStr | None = None


class ForgetRequest(_Request):
    """Erase a user's, a thread's, or (``namespace=true``) the whole namespace's data."""

    user_id: ScopeStr | None = None
    thread_id: ScopeStr | None = None
    namespace: bool = False
    compact: bool = Field(
        False, description="Also rewrite the storage without the freed space (see forget)."
    )


class DoctorRequest(_Request):
    """Check integrity; ``repair`` rebuilds derived indexes."""

    repair: bool = False


class ExportRequest(_Request):
    """Export one namespace (or all) as versioned JSONL."""

    namespace: NamespaceStr | None = Field(
        None, description="Namespace to export; default: the server's"
    )
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


class AddResultOut(_Response):
    """The outcome of one item of an add."""

    index: int
    outcome: Literal["written", "deduplicated", "rejected", "unchanged"]
    deduplicated: bool
    id: str | None
    record: RecordOut | None
    error: str | None


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
    entities: EntityGraphOut | None = None


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


class CheckpointOut(_Response):
    """One saved checkpoint of a thread (an agent framework's), without its state."""

    checkpoint_ns: str
    checkpoint_id: str
    parent_id: str | None
    metadata: dict[str, Any]
    created_at: datetime


class SnapshotOut(_Response):
    """A readable, ordered account of a thread (and its newest checkpoints, newest first)."""

    namespace: str
    thread_id: str
    events: list[EventOut]
    slots: SlotsOut
    text: str
    checkpoints: list[CheckpointOut] = []


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
    entities: dict[str, Any] | None = None


class LivenessOut(_Response):
    """The process is up and serving."""

    status: str
    pid: int = Field(description="Process id of the worker that answered")


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
