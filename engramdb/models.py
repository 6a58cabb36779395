"""The data model: records, search hits, events, slots and history entries.

These are plain dataclasses (cheap to build in bulk on the write path); the REST layer has
its own wire schemas. Times are timezone-aware UTC datetimes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

Outcome = Literal["written", "deduplicated", "rejected", "unchanged"]


@dataclass(slots=True)
class MemoryRecord:
    """One remembered text with its scope, metadata and lifecycle times."""

    id: str
    namespace: str
    text: str
    type: str = "semantic"
    user_id: str | None = None
    agent_id: str | None = None
    thread_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    source: str | None = None
    importance: float | None = None
    occurred_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    expires_at: datetime | None = None
    version: int = 1
    content_hash: str = ""
    event_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (datetimes as ISO 8601 strings)."""
        out: dict[str, Any] = _jsonable(asdict(self))
        return out


# The fields an ``add`` item may carry: what a caller writes, never what the store derives
# (namespace, created/updated times, version, content hash, event id). One list for the
# engine's item check and for copying a record into another store.
WRITABLE_RECORD_FIELDS = (
    "id",
    "text",
    "user_id",
    "agent_id",
    "thread_id",
    "type",
    "metadata",
    "tags",
    "source",
    "importance",
    "occurred_at",
    "expires_at",
    "valid_from",
    "valid_to",
)


@dataclass(slots=True)
class AddResult:
    """The outcome of one item of an ``add`` call.

    ``outcome`` is ``written`` (new record), ``deduplicated`` (the same text already existed in
    the same scope; ``record`` is the existing one), ``unchanged`` (an idempotent re-add of the
    same id and text) or ``rejected`` (``error`` says why; nothing was stored for this item).
    """

    index: int
    outcome: Outcome
    record: MemoryRecord | None = None
    error: str | None = None

    @property
    def deduplicated(self) -> bool:
        """True when the text already existed and the existing record was returned."""
        return self.outcome in ("deduplicated", "unchanged")

    @property
    def id(self) -> str | None:
        """The id of the stored (or existing) record, None when rejected."""
        return self.record.id if self.record else None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "index": self.index,
            "outcome": self.outcome,
            "deduplicated": self.deduplicated,
            "record": self.record.to_dict() if self.record else None,
            "error": self.error,
        }


@dataclass(slots=True)
class ScoreParts:
    """Why a hit scored what it did: each signal and the fused score."""

    vector: float | None = None
    keyword: float | None = None
    fused: float = 0.0
    vector_rank: int | None = None
    keyword_rank: int | None = None


@dataclass(slots=True)
class SearchHit:
    """A record found by search, its score, the score's parts and the matching chunk."""

    record: MemoryRecord
    score: float
    parts: ScoreParts
    chunk: str
    #: With ``search(..., include_entities=True)``: the record's entities and relations.
    entities: EntityGraph | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (``entities`` only when they were asked for)."""
        out = {
            "record": self.record.to_dict(),
            "score": self.score,
            "parts": asdict(self.parts),
            "chunk": self.chunk,
        }
        if self.entities is not None:
            out["entities"] = self.entities.to_dict()
        return out


@dataclass(slots=True)
class SearchPage:
    """One page of search hits and the cursor of the next page (None at the end)."""

    hits: list[SearchHit]
    next_cursor: str | None = None

    def __iter__(self) -> Any:
        return iter(self.hits)

    def __len__(self) -> int:
        return len(self.hits)

    def __getitem__(self, i: int) -> SearchHit:
        return self.hits[i]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {"hits": [h.to_dict() for h in self.hits], "next_cursor": self.next_cursor}


@dataclass(slots=True)
class RecordPage:
    """One page of ``list`` results and the keyset cursor of the next page."""

    records: list[MemoryRecord]
    next_cursor: str | None = None

    def __iter__(self) -> Any:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> MemoryRecord:
        return self.records[i]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {"records": [r.to_dict() for r in self.records], "next_cursor": self.next_cursor}


@dataclass(slots=True)
class Event:
    """One append-only episodic event (a conversation message is an event too)."""

    id: str
    namespace: str
    thread_id: str
    action: str
    payload: dict[str, Any]
    user_id: str | None
    actor: str | None
    timestamp: datetime
    seq: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        out: dict[str, Any] = _jsonable(asdict(self))
        return out


@dataclass(slots=True)
class Slots:
    """The working memory of one thread: named values and a version for compare-and-set."""

    namespace: str
    thread_id: str
    values: dict[str, Any]
    version: int
    updated_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        out: dict[str, Any] = _jsonable(asdict(self))
        return out


@dataclass(slots=True)
class HistoryEntry:
    """One change to a record: add, update, delete or import, with before/after images."""

    seq: int
    record_id: str
    namespace: str
    op: str
    version: int
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    at: datetime

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        out: dict[str, Any] = _jsonable(asdict(self))
        return out


@dataclass(slots=True)
class CheckpointSummary:
    """One saved checkpoint of a thread as a snapshot lists it: where it is in the thread
    and the framework's metadata (LangGraph's ``source``, ``step``...); its serialised state
    stays with the checkpointer."""

    checkpoint_ns: str
    checkpoint_id: str
    parent_id: str | None
    metadata: dict[str, Any]
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        out: dict[str, Any] = _jsonable(asdict(self))
        return out


@dataclass(slots=True)
class Snapshot:
    """A readable, ordered account of a thread: its events, its slots and, when an agent
    framework's checkpointer keeps the thread here, its newest checkpoints (newest first)."""

    namespace: str
    thread_id: str
    events: list[Event]
    slots: Slots
    text: str
    checkpoints: list[CheckpointSummary] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "namespace": self.namespace,
            "thread_id": self.thread_id,
            "events": [e.to_dict() for e in self.events],
            "slots": self.slots.to_dict(),
            "text": self.text,
            "checkpoints": [c.to_dict() for c in self.checkpoints],
        }


# ---------------------------------------------------------------------- entities (derived)


@dataclass(slots=True)
class Mention:
    """Where an entity is named: the record, the span of the text, the sentence around it."""

    record_id: str
    text: str
    start: int
    end: int
    sentence: str
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


@dataclass(slots=True)
class Entity:
    """A canonical entity of one namespace and user scope (derived from the records).

    ``name`` is the form first written ("John"); ``aliases`` the other names joined to it
    ("Mr. Smith", "Bob"); ``mentions`` is filled by ``entity(id)`` only.
    """

    id: int
    namespace: str
    user_id: str | None
    name: str
    type: str
    aliases: list[str] = field(default_factory=list)
    mention_count: int = 0
    mentions: list[Mention] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        out = {
            "id": self.id,
            "namespace": self.namespace,
            "user_id": self.user_id,
            "name": self.name,
            "type": self.type,
            "aliases": list(self.aliases),
            "mention_count": self.mention_count,
        }
        if self.mentions is not None:
            out["mentions"] = [m.to_dict() for m in self.mentions]
        return out


@dataclass(slots=True)
class Relation:
    """A typed edge between two canonical entities, with the records that state it."""

    id: int
    source_id: int
    target_id: int
    type: str
    confidence: float
    record_ids: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


@dataclass(slots=True)
class EntityGraph:
    """A subgraph: entities and the relations between them."""

    entities: list[Entity] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "entities": [e.to_dict() for e in self.entities],
            "relations": [r.to_dict() for r in self.relations],
        }


@dataclass(slots=True)
class FoundEntity:
    """One entity mention found in a text by the extractor (before canonicalisation)."""

    name: str
    norm: str
    type: str
    start: int
    end: int
    sentence: str
    confidence: float


@dataclass(slots=True)
class FoundRelation:
    """One relation found in a text: indexes into the same extraction's ``entities``."""

    source: int
    target: int
    type: str
    sentence: str
    confidence: float


@dataclass(slots=True)
class Extraction:
    """What the extractor found in one record's text."""

    entities: list[FoundEntity] = field(default_factory=list)
    relations: list[FoundRelation] = field(default_factory=list)
    #: The kinds of answer the text holds (flags of :mod:`engramdb.extract.answer_types`).
    answer_kinds: int = 0


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


@dataclass(slots=True)
class CheckpointBlob:
    """One channel value of an agent framework's checkpoint, as its serializer wrote it.

    Kept per (thread, checkpoint namespace, channel, version), so a channel that did not
    change between two checkpoints is stored once. ``blob`` is None for an empty channel.
    """

    channel: str
    version: str
    type: str
    blob: bytes | None


@dataclass(slots=True)
class CheckpointWrite:
    """One pending write of a task, attached to a checkpoint (opaque serialised bytes)."""

    task_id: str
    task_path: str
    idx: int
    channel: str
    type: str
    blob: bytes


@dataclass(slots=True)
class CheckpointRow:
    """One saved checkpoint of a thread of an agent framework (LangGraph's checkpointer).

    engramdb keeps it opaque: ``checkpoint`` is the framework serializer's bytes of the
    checkpoint without its channel values (those are ``blobs``, looked up by ``versions``);
    ``metadata`` is JSON and filterable by top-level equality. ``blobs`` and ``writes`` are
    filled on reads.
    """

    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    parent_id: str | None
    type: str
    checkpoint: bytes
    metadata: dict[str, Any]
    versions: dict[str, str]
    blobs: list[CheckpointBlob] = field(default_factory=list)
    writes: list[CheckpointWrite] = field(default_factory=list)


@dataclass(slots=True)
class MergeAction:
    """Near-duplicates folded into one record: ``survivor_id`` keeps the richest text, the
    union of tags and metadata and the earliest ``occurred_at``; ``merged_ids`` are archived
    (readable by id, undone by ``unmerge``). ``similarity`` is the lowest cosine to the
    survivor."""

    survivor_id: str
    merged_ids: list[str]
    similarity: float
    text: str
    tags: list[str] = field(default_factory=list)
    occurred_at: datetime | None = None
    user_id: str | None = None
    thread_id: str | None = None


@dataclass(slots=True)
class ArchiveAction:
    """A record leaving the live set: ``expired`` (past ``expires_at``: deleted, history
    kept) or ``retention`` (importance decayed below the floor: archived, restorable);
    ``score`` is the retention score of an archived one."""

    record_id: str
    reason: Literal["expired", "retention"]
    score: float | None = None


@dataclass(slots=True)
class SummaryAction:
    """A thread summary written (``created`` or ``refreshed``) as a ``summary`` record over
    ``turns`` message records; ``summary_id`` is None in a dry run of a new one."""

    thread_id: str
    user_id: str | None
    summary_id: str | None
    turns: int
    text: str
    status: Literal["created", "refreshed"]


@dataclass(slots=True)
class ConsolidationReport:
    """What one ``consolidate`` call did, or (``dry_run``) would do, in one namespace.

    ``scanned`` counts the live records looked at; ``skipped`` lists ids changed by another
    writer between planning and applying (left as they were).
    """

    namespace: str
    dry_run: bool
    scanned: int = 0
    merges: list[MergeAction] = field(default_factory=list)
    expired: list[ArchiveAction] = field(default_factory=list)
    archived: list[ArchiveAction] = field(default_factory=list)
    summaries: list[SummaryAction] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (datetimes as ISO 8601 strings)."""
        out: dict[str, Any] = _jsonable(asdict(self))
        return out


@dataclass(slots=True)
class ArchivedRecord:
    """A record out of the live set (merged away or archived by retention), as it was.

    ``reason`` is ``merged`` (``merged_into`` names the survivor) or ``retention``.
    """

    record: MemoryRecord
    reason: str
    archived_at: datetime
    merged_into: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (datetimes as ISO 8601 strings)."""
        out: dict[str, Any] = _jsonable(asdict(self))
        return out
