"""What the engine needs of a store, and the prepared rows it hands over.

The engine does everything that needs no I/O (validation, chunking, embedding, filter
parsing); a store turns prepared rows into one transaction and answers candidate queries.
Every method takes the namespace first: scoping happens inside the store's statements.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from engramdb.engine.filters import Node
from engramdb.models import AddResult, Event, HistoryEntry, MemoryRecord, Slots


@dataclass(slots=True)
class PreparedChunk:
    """One indexed piece of a record: its span in the text, its vector, its keyword text."""

    start: int
    end: int
    vector: np.ndarray
    index_text: str


@dataclass(slots=True)
class PreparedRecord:
    """A validated record ready to insert (times in epoch microseconds)."""

    id: str
    caller_id: bool
    text: str
    content_hash: str
    type: str
    user_id: str
    agent_id: str
    thread_id: str
    metadata_json: str
    tags_json: str
    source: str
    importance: float | None
    occurred_at: int
    valid_from: int | None
    valid_to: int | None
    expires_at: int | None
    chunks: list[PreparedChunk] = field(default_factory=list)
    event_id: str | None = None


@dataclass(slots=True)
class PreparedEvent:
    """A validated event ready to append."""

    id: str
    thread_id: str
    user_id: str
    actor: str
    action: str
    payload_json: str
    ts: int


@dataclass(slots=True)
class RecordChanges:
    """An update: only the fields that are not None change; tags change atomically in SQL."""

    text: str | None = None
    content_hash: str | None = None
    chunks: list[PreparedChunk] | None = None
    metadata_json: str | None = None
    add_tags: list[str] | None = None
    remove_tags: list[str] | None = None
    importance: float | None = None
    type: str | None = None
    valid_from: int | None = None
    valid_to: int | None = None
    expires_at: int | None = None
    clear: frozenset[str] = frozenset()


@dataclass(slots=True)
class ChunkHit:
    """A candidate from one retriever: chunk, record row, and the retriever's raw score."""

    chunk_id: int
    rid: int
    score: float


OnError = Literal["abort", "skip"]


class Store(Protocol):
    """The storage backend protocol (SQLite today; PostgreSQL joins by implementing it)."""

    def check_embedder(self, name: str, dim: int) -> None:
        """Record the embedder on first use; raise EmbedderMismatchError on a different one."""
        ...

    def embedder_info(self) -> tuple[str, int] | None:
        """Return the (name, dim) recorded in the store, if any."""
        ...

    def add_records(
        self,
        namespace: str,
        items: list[PreparedRecord | Exception],
        on_error: OnError,
        events: list[PreparedEvent] | None = None,
    ) -> list[AddResult]:
        """Insert records (and events) in one transaction, deduplicating in the database."""
        ...

    def get_records(self, namespace: str, ids: list[str]) -> list[MemoryRecord]:
        """Return the records with these ids (missing ones omitted), in the order asked."""
        ...

    def list_records(
        self, namespace: str, node: Node | None, limit: int, after: str | None, descending: bool
    ) -> list[MemoryRecord]:
        """Return one keyset page of records matching the filter, ordered by id."""
        ...

    def count_records(self, namespace: str, node: Node | None) -> int:
        """Count records matching the filter."""
        ...

    def update_record(
        self, namespace: str, record_id: str, changes: RecordChanges, expected_version: int | None
    ) -> MemoryRecord:
        """Apply changes in one transaction, bump the version, write history."""
        ...

    def delete_records(self, namespace: str, ids: list[str] | None, node: Node | None) -> int:
        """Delete by ids or by filter from every index, leaving history; return the count."""
        ...

    def history(self, namespace: str, record_id: str) -> list[HistoryEntry]:
        """Return every change of a record, oldest first."""
        ...

    def vector_candidates(
        self, namespace: str, query: np.ndarray, user_id: str | None, node: Node | None, limit: int
    ) -> list[ChunkHit]:
        """Return the best chunks by cosine similarity, restricted to the filter."""
        ...

    def keyword_candidates(
        self, namespace: str, match: str, node: Node | None, limit: int
    ) -> list[ChunkHit]:
        """Return the best chunks by keyword relevance (higher is better)."""
        ...

    def hydrate(
        self, namespace: str, chunk_ids: list[int], node: Node | None
    ) -> dict[int, tuple[MemoryRecord, int, int]]:
        """Map chunk id -> (record, span start, span end) for chunks passing the filter."""
        ...

    def append_events(self, namespace: str, events: list[PreparedEvent]) -> list[Event]:
        """Append events to their threads in order."""
        ...

    def list_events(
        self, namespace: str, thread_id: str, since: int | None, limit: int
    ) -> list[Event]:
        """Return a thread's events in order."""
        ...

    def get_slots(self, namespace: str, thread_id: str) -> Slots:
        """Return a thread's working-memory slots."""
        ...

    def set_slots(
        self,
        namespace: str,
        thread_id: str,
        values: dict[str, Any],
        expected_version: int | None,
        user_id: str,
    ) -> Slots:
        """Compare-and-set slots (a value of None removes the slot)."""
        ...

    def forget(
        self, namespace: str, user_id: str | None, thread_id: str | None, everything: bool
    ) -> dict[str, int]:
        """Erase a subject's records, history, events and slots for good."""
        ...

    def namespaces(self) -> dict[str, int]:
        """Return record counts per namespace."""
        ...

    def stats(self) -> dict[str, Any]:
        """Return sizes and counts."""
        ...

    def doctor(self, repair: bool) -> dict[str, Any]:
        """Check integrity and that derived indexes agree with the tables."""
        ...

    def backup(self, path: Path) -> None:
        """Write a consistent online copy."""
        ...

    def restore(self, path: Path) -> None:
        """Replace the store's content by a backup."""
        ...

    def iter_all(self, namespace: str, node: Node | None) -> Iterator[dict[str, Any]]:
        """Yield records (with vectors and history) for export."""
        ...

    def close(self) -> None:
        """Release connections and persist derived indexes."""
        ...
