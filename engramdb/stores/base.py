"""What the engine needs of a store, and the prepared rows it hands over.

The engine does everything that needs no I/O (validation, chunking, embedding, filter
parsing); a store turns prepared rows into one transaction and answers candidate queries.
Every method takes the namespace first: scoping happens inside the store's statements.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from engramdb.engine.filters import Node
from engramdb.engine.timeutil import from_us, from_us_req
from engramdb.errors import ConflictError, NotFoundError, QuotaExceededError
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
    """A candidate from one retriever: chunk, record row, and the retriever's raw score.

    ``located`` is what :meth:`Store.locate` would return for the chunk (record id,
    version, span start, span end), when the retriever already read it in the same
    statement and already applied the search's filter (a store over the network saves the
    locate round trip that way); None leaves the chunk to ``locate``. ``record`` builds the
    chunk's whole record as read in that statement (asked for with ``with_records``; built
    only for the records that land on the page), sparing the engine ``get_records``.
    """

    chunk_id: int
    rid: int
    score: float
    located: tuple[str, int, int, int] | None = None
    record: Callable[[], MemoryRecord] | None = None


@dataclass(slots=True)
class ThreadTurn:
    """A stored message of a thread, as contextual keyword indexing needs it."""

    record_id: str
    text: str
    occurred_at: int
    chunks: list[tuple[int, int, int]]  # (chunk id, start, end), in order


OnError = Literal["abort", "skip"]

# The per-namespace write generation (migration 0002): ``{p}`` is the driver's placeholder.
# A namespace's generation is its own row plus the store-wide row ``''`` (bumped by imports,
# re-embedding, repairs and restore), so it rises with every write that can change a read.
GENERATION_SQL = (
    "SELECT COALESCE(SUM(generation), 0) FROM namespace_generations WHERE namespace IN ({p}, '')"
)
BUMP_GENERATION_SQL = (
    "INSERT INTO namespace_generations(namespace, generation) VALUES ({p}, 1) "
    "ON CONFLICT (namespace) DO UPDATE SET generation = namespace_generations.generation + 1"
)
# After a restore: the store-wide row jumps past every generation seen before it.
RESTORE_GENERATION_SQL = (
    "INSERT INTO namespace_generations(namespace, generation) VALUES ('', {p}) "
    "ON CONFLICT (namespace) DO UPDATE SET generation = excluded.generation"
)
NEXT_EXPIRY_SQL = "SELECT MIN(expires_at) FROM records WHERE namespace = {p} AND expires_at > {p}"
MAX_GENERATION_SQL = (
    "SELECT COALESCE(MAX(generation), 0) + COALESCE((SELECT generation FROM "
    "namespace_generations WHERE namespace = ''), 0) FROM namespace_generations"
)


class Store(Protocol):
    """The storage backend protocol: what the engine and the facades call on a store.

    Implemented by :class:`engramdb.stores.sqlite.SQLiteStore` and
    :class:`engramdb.stores.postgres.PostgresStore`; the contract suite (``tests/contract``)
    runs against both. Every method that touches records takes the namespace first and
    scopes its statements by it. Times are epoch microseconds.
    """

    def check_embedder(self, name: str, dim: int) -> None:
        """Record the embedder on first use; raise EmbedderMismatchError on a different one."""
        ...

    def embedder_info(self) -> tuple[str, int] | None:
        """Return the (name, dim) recorded in the store, if any."""
        ...

    def add_records(
        self,
        namespace: str,
        items: list[PreparedRecord],
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
        self,
        namespace: str,
        query: np.ndarray,
        user_id: str | None,
        node: Node | None,
        limit: int,
        with_records: bool = False,
    ) -> list[ChunkHit]:
        """Return the best chunks by cosine similarity, restricted to the filter.

        ``with_records`` invites the store to attach each hit's record (``ChunkHit.record``)
        when that saves a round trip; a store with local reads may ignore it.
        """
        ...

    def vector_scores(self, chunk_ids: list[int], query: np.ndarray) -> list[float]:
        """Return the cosine similarity of the query to each chunk (NaN when it is gone)."""
        ...

    def keyword_candidates(
        self, namespace: str, match: str, node: Node | None, limit: int
    ) -> list[ChunkHit]:
        """Return the best chunks by keyword relevance (higher is better).

        ``match`` is :func:`engramdb.engine.keyword.match_expression` output: quoted words
        joined by ``OR``; a store translates it to its own query syntax. ``node`` is the
        whole filter, the user scope included.
        """
        ...

    def locate(
        self, namespace: str, chunk_ids: list[int], node: Node | None
    ) -> dict[int, tuple[str, int, int, int]]:
        """Map chunk id -> (record id, record version, span start, span end), filter applied.

        The light half of hydration: search ranks and fuses on ids, then reads only the
        records of the page it returns.
        """
        ...

    def thread_turns(
        self, namespace: str, thread_id: str, start: int, end: int, margin: int
    ) -> list[ThreadTurn]:
        """Return a thread's ``message`` records around a time range, in thread order.

        Every message with ``start <= occurred_at <= end``, plus the ``margin`` messages just
        before ``start`` and the ``margin`` just after ``end``; ordered by (occurred_at,
        insertion order).
        """
        ...

    def set_index_texts(self, namespace: str, texts: list[tuple[int, str]]) -> None:
        """Replace the keyword-index text of chunks ``(chunk id, text)`` in one transaction.

        Chunks that no longer exist (deleted meanwhile) are skipped.
        """
        ...

    def generation(self, namespace: str) -> int:
        """Return the namespace's write generation (it rises in every write transaction).

        Owned by the store so that it moves with the data: the cache tier
        (:mod:`engramdb.cache`) reads it before a store read and never serves an entry
        tagged with an older one, even for writes made while the cache was unreachable.
        """
        ...

    def next_expiry(self, namespace: str, after: int) -> int | None:
        """Return the earliest ``expires_at`` later than ``after`` in the namespace, if any.

        Until then a search that hides expired records keeps its answer (absent writes).
        """
        ...

    def store_id(self) -> str:
        """Return the store's identity (a cache shared by several stores keys by it)."""
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
        self,
        namespace: str,
        user_id: str | None,
        thread_id: str | None,
        everything: bool,
        compact: bool = False,
    ) -> dict[str, int]:
        """Erase a subject's records, history, events and slots for good; ``compact`` then
        rewrites the storage (key ``bytes_freed`` in the result)."""
        ...

    def namespaces(self) -> dict[str, int]:
        """Return record counts per namespace."""
        ...

    def stats(self, namespace: str | None = None) -> dict[str, Any]:
        """Return sizes and counts (of one namespace, or of the whole store)."""
        ...

    def doctor(self, repair: bool = False) -> dict[str, Any]:
        """Check integrity and that derived indexes agree with the tables."""
        ...

    def backup(self, path: Path) -> None:
        """Write a consistent online copy."""
        ...

    def restore(self, path: Path) -> None:
        """Replace the store's content by a backup."""
        ...

    def iter_all(
        self, namespace: str | None, node: Node | None, after: tuple[str, str] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Yield records for export: ``{"record", "chunks", "history"}``.

        Ordered by (namespace, id); ``after`` starts past that (namespace, id), which is how
        an interrupted ``migrate`` resumes. ``chunks`` are ``(start, end, float32 vector
        bytes, index text)`` tuples; ``history`` rows are ``(op, version, before JSON,
        after JSON, at)``.
        """
        ...

    def iter_digests(self, namespace: str) -> Iterator[tuple[str, int, str]]:
        """Yield ``(id, version, content_hash)`` of a namespace's records in id order.

        What ``migrate`` compares and checksums on both sides (ids order bytewise in both
        stores: SQLite's BINARY collation, PostgreSQL's "C").
        """
        ...

    def load_history(
        self, rows: list[tuple[Any, ...]], meta: dict[str, str | None] | None = None
    ) -> int:
        """Insert history rows (``iter_orphan_history``'s shape, seq ignored) in one transaction.

        A row already present (same namespace, record, op, version and time) is skipped, so
        loading the same rows twice leaves one of each; returns how many were new. ``meta``
        values are written in the same transaction (a checkpoint).
        """
        ...

    def iter_orphan_history(self, after_seq: int, limit: int) -> list[tuple[Any, ...]]:
        """Return history rows of records that no longer exist (deleted), in ``seq`` order.

        Rows are ``(seq, namespace, record_id, user_id, thread_id, op, version, before JSON,
        after JSON, at)`` with ``seq > after_seq``; ``iter_all`` carries the history of the
        records that exist, this the rest, so ``migrate`` loses none.
        """
        ...

    def iter_events_and_slots(self, namespace: str | None) -> Iterator[dict[str, Any]]:
        """Yield events and slot maps as export lines (``kind`` event or slots)."""
        ...

    def import_records(self, batch: list[dict[str, Any]]) -> dict[str, int]:
        """Insert exported records verbatim in one transaction; count the outcomes."""
        ...

    def import_events_and_slots(self, lines: list[dict[str, Any]]) -> tuple[int, int]:
        """Insert exported events (idempotent by id) and slot maps; return their counts."""
        ...

    def reembed_begin(self, target: str) -> None:
        """Start (or resume) a re-embedding towards ``target``; a new target starts over."""
        ...

    def reembed_pending(self, limit: int) -> list[tuple[int, str]]:
        """Return up to ``limit`` chunks without a new vector yet: (chunk id, chunk text)."""
        ...

    def reembed_put(self, rows: list[tuple[int, np.ndarray]]) -> None:
        """Store new vectors for chunks (committed, so an interrupted run resumes)."""
        ...

    def reembed_finish(self, name: str, dim: int, embed: Callable[[list[str]], np.ndarray]) -> None:
        """Switch every chunk to its new vector and the store to the new embedder, atomically."""
        ...

    def close(self) -> None:
        """Release connections and persist derived indexes."""
        ...


# The columns both stores select for a record, in this order (``r`` the records table), as
# ``{meta}``: SQLite's ``metadata`` text, PostgreSQL's ``metadata_raw`` (the JSON as given).
RECORD_SELECT = (
    "r.rid, r.id, r.namespace, r.user_id, r.agent_id, r.thread_id, r.type, r.text, "
    "r.content_hash, r.{meta}, r.tags, r.source, r.importance, r.occurred_at, r.created_at, "
    "r.updated_at, r.valid_from, r.valid_to, r.expires_at, r.version, r.event_id"
)
NCOLS = 21


def row_to_record(row: Sequence[Any], offset: int = 0) -> MemoryRecord:
    """Build a MemoryRecord from a row of :data:`RECORD_SELECT` starting at ``offset``.

    Metadata arrives as JSON text; tags as JSON text (SQLite) or already decoded from
    ``jsonb`` (PostgreSQL). Empty ones skip the parser (most records have neither).
    """
    (
        _,
        rid,
        ns,
        user,
        agent,
        thread,
        typ,
        text,
        chash,
        meta,
        tags,
        source,
        imp,
        occ,
        cre,
        upd,
        vf,
        vt,
        exp,
        ver,
        ev,
    ) = row[offset : offset + NCOLS]
    return MemoryRecord(
        id=rid,
        namespace=ns,
        text=text,
        type=typ,
        user_id=user or None,
        agent_id=agent or None,
        thread_id=thread or None,
        metadata={} if meta == "{}" else json.loads(meta),
        tags=tags if isinstance(tags, list) else [] if tags == "[]" else json.loads(tags),
        source=source or None,
        importance=imp,
        occurred_at=from_us(occ),
        created_at=from_us(cre),
        updated_at=from_us(upd),
        valid_from=from_us(vf),
        valid_to=from_us(vt),
        expires_at=from_us(exp),
        version=ver,
        content_hash=chash,
        event_id=ev,
    )


def inserted_record(ns: str, it: PreparedRecord, now: datetime) -> MemoryRecord:
    """The MemoryRecord of a freshly inserted prepared row (version 1); both stores use it."""
    return MemoryRecord(
        id=it.id,
        namespace=ns,
        text=it.text,
        type=it.type,
        user_id=it.user_id or None,
        agent_id=it.agent_id or None,
        thread_id=it.thread_id or None,
        metadata=json.loads(it.metadata_json) if it.metadata_json != "{}" else {},
        tags=json.loads(it.tags_json) if it.tags_json != "[]" else [],
        source=it.source or None,
        importance=it.importance,
        occurred_at=from_us(it.occurred_at),
        created_at=now,
        updated_at=now,
        valid_from=from_us(it.valid_from),
        valid_to=from_us(it.valid_to),
        expires_at=from_us(it.expires_at),
        version=1,
        content_hash=it.content_hash,
        event_id=it.event_id,
    )


def check_quota(namespace: str, limit: int, before: int, results: list[AddResult]) -> None:
    """Raise when the records a write added take the namespace past its quota.

    Called inside the write's transaction after its inserts (so duplicates, which add
    nothing, never count); raising rolls the whole write back.

    Raises:
        QuotaExceededError: ``before`` plus the written records exceed ``limit`` (> 0).
    """
    adding = sum(1 for r in results if r.outcome == "written")
    if limit and before + adding > limit:
        raise QuotaExceededError(
            f"namespace {namespace!r} holds {before} records; adding {adding} would pass its "
            f"quota namespace_max_records={limit}; nothing was written",
            namespace=namespace,
            limit=limit,
            records=before,
            adding=adding,
        )


def existing_id_outcome(existing: MemoryRecord, it: PreparedRecord, index: int) -> AddResult:
    """The outcome of an add whose caller-given id is already stored (both stores).

    The same text makes the add idempotent (``unchanged``, the stored record): retrying an
    add after an unknown commit outcome is safe. Other text under that id is a conflict.

    Raises:
        ConflictError: the id exists with a different text.
    """
    if existing.content_hash == it.content_hash:
        return AddResult(index, "unchanged", existing)
    raise ConflictError(f"record {it.id!r} already exists with a different text", id=it.id)


_RECORD_FIELDS = tuple(MemoryRecord.__dataclass_fields__)


def record_image(record: MemoryRecord) -> str:
    """The record as history JSON: the same output as ``to_dict`` without its deep copy."""
    out: dict[str, Any] = {}
    for name in _RECORD_FIELDS:
        value = getattr(record, name)
        out[name] = value.isoformat() if isinstance(value, datetime) else value
    return json.dumps(out, ensure_ascii=False)


def change_row(
    namespace: str, before: MemoryRecord, after: MemoryRecord | None, at: int
) -> tuple[Any, ...]:
    """The history row of an update (``after`` given) or a delete (``after`` None) in the
    column order of ``transfer_rows.HISTORY_COLUMNS``; a delete's version is the one the
    record would have had next."""
    return (
        namespace,
        before.id,
        before.user_id or "",
        before.thread_id or "",
        "update" if after else "delete",
        after.version if after else before.version + 1,
        record_image(before),
        record_image(after) if after else None,
        at,
    )


# A record's history, oldest first (``{p}``: the driver's placeholder); rows for
# :func:`history_entry`.
HISTORY_SQL = (
    "SELECT seq, record_id, namespace, op, version, before, after, at FROM history "
    "WHERE namespace = {p} AND record_id = {p} ORDER BY seq"
)


def history_entry(row: Sequence[Any]) -> HistoryEntry:
    """One row of :data:`HISTORY_SQL` as a HistoryEntry (images parsed)."""
    seq, record_id, namespace, op, version, before, after, at = row
    return HistoryEntry(
        seq=seq,
        record_id=record_id,
        namespace=namespace,
        op=op,
        version=version,
        before=json.loads(before) if before else None,
        after=json.loads(after) if after else None,
        at=from_us_req(at),
    )


def check_slot_version(thread_id: str, current: int, expected: int | None) -> None:
    """Raise ConflictError when a compare-and-set of slots expected another version."""
    if expected is not None and expected != current:
        raise ConflictError(
            f"slots of thread {thread_id!r} are at version {current}, not the expected {expected}",
            thread_id=thread_id,
            version=current,
            expected_version=expected,
        )


def write_slot_values(
    execute: Callable[[str, tuple[Any, ...]], Any],
    ph: str,
    namespace: str,
    thread_id: str,
    values: dict[str, Any],
) -> None:
    """Write a thread's slot changes in the open transaction: a value is upserted, None
    removes the slot (``ph``: the driver's placeholder)."""
    for name, value in values.items():
        if value is None:
            execute(
                f"DELETE FROM slots WHERE namespace = {ph} AND thread_id = {ph} AND name = {ph}",
                (namespace, thread_id, name),
            )
        else:
            execute(
                f"INSERT INTO slots(namespace, thread_id, name, value) "
                f"VALUES ({ph},{ph},{ph},{ph}) "
                "ON CONFLICT (namespace, thread_id, name) DO UPDATE SET value = excluded.value",
                (namespace, thread_id, name, json.dumps(value, ensure_ascii=False)),
            )


def checked_for_update(
    row_record: MemoryRecord | None, namespace: str, record_id: str, expected_version: int | None
) -> MemoryRecord:
    """The record an update starts from, after the checks both stores make.

    Raises:
        NotFoundError: no such record in the namespace.
        ConflictError: ``expected_version`` is given and the record is at another one.
    """
    if row_record is None:
        raise NotFoundError(
            f"record {record_id!r} not found in namespace {namespace!r}", id=record_id
        )
    if expected_version is not None and row_record.version != expected_version:
        raise ConflictError(
            f"record {record_id!r} is at version {row_record.version}, "
            f"not the expected {expected_version}",
            id=record_id,
            version=row_record.version,
            expected_version=expected_version,
        )
    return row_record


UPDATABLE_COLUMNS = (
    "text",
    "content_hash",
    "type",
    "importance",
    "valid_from",
    "valid_to",
    "expires_at",
)


def scalar_set_clauses(changes: RecordChanges, ph: str) -> tuple[list[str], list[Any]]:
    """The ``SET`` clauses (with the driver's placeholder ``ph``) of an update's plain
    columns: a given value is set, a cleared column becomes NULL."""
    sets: list[str] = []
    params: list[Any] = []
    for col in UPDATABLE_COLUMNS:
        value = getattr(changes, col)
        if value is not None:
            sets.append(f"{col} = {ph}")
            params.append(value)
        elif col in changes.clear:
            sets.append(f"{col} = NULL")
    return sets, params


# The record a deduplicated add met: the dedup index's key (``{p}``: the driver's placeholder).
DEDUP_LOOKUP_SQL = (
    "SELECT {cols} FROM records r WHERE namespace = {p} AND user_id = {p} AND "
    "agent_id = {p} AND thread_id = {p} AND type = {p} AND content_hash = {p}"
)


def dedup_key(ns: str, it: PreparedRecord) -> tuple[str, ...]:
    """The arguments of :data:`DEDUP_LOOKUP_SQL` for one prepared record."""
    return (ns, it.user_id, it.agent_id, it.thread_id, it.type, it.content_hash)


def record_params(ns: str, it: PreparedRecord, now: int) -> tuple[Any, ...]:
    """A new record's column values in the stores' insert order (created = updated = now)."""
    return (
        it.id,
        ns,
        it.user_id,
        it.agent_id,
        it.thread_id,
        it.type,
        it.text,
        it.content_hash,
        it.metadata_json,
        it.tags_json,
        it.source,
        it.importance,
        it.occurred_at,
        now,
        now,
        it.valid_from,
        it.valid_to,
        it.expires_at,
        it.event_id,
    )
