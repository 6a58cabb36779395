"""What the engine needs of a store, split by role.

The engine does everything that needs no I/O (validation, chunking, embedding, filter
parsing); a store turns prepared rows (:mod:`engramdb.stores.prepared`) into one transaction
and answers candidate queries. Every method takes the namespace first: scoping happens
inside the store's statements.

Roles, so that a backend (or a test double) implements what it supports and a caller asks
for a capability by type (``isinstance(store, Maintenance)``):

* :class:`Store`: records, search candidates, threads, slots, history, erasure, health;
* :class:`Maintenance`: stats, doctor, backup, restore, re-embedding;
* :class:`Transfer`: export and import of whole rows (``export``/``import``, ``migrate``'s source);
* :class:`BulkLoader`: ``migrate``'s target (COPY-speed loads, a batch log, index rebuilds);
* :class:`Checkpoints`: the thread checkpoints of agent frameworks (LangGraph's checkpointer);
* :class:`KeyStore`: the service's keys (hashed) and its admin audit log.
* :class:`EntityStore`: entities, relations and mentions derived from the texts.
* :class:`Archive`: records consolidation took out of the live set (merged, archived).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from engramdb.models import (
    AddResult,
    CheckpointBlob,
    CheckpointRow,
    CheckpointSummary,
    CheckpointWrite,
    Entity,
    EntityGraph,
    Event,
    Extraction,
    HistoryEntry,
    MemoryRecord,
    Slots,
)
from engramdb.query.filters import Node
from engramdb.stores.idempotency_rows import IdempotencyRow
from engramdb.stores.key_rows import AuditRow, KeyRow
from engramdb.stores.prepared import (
    AliasJoin,
    ArchivedRow,
    ArchiveItem,
    ChunkHit,
    OnError,
    PendingText,
    PreparedChunk,
    PreparedEvent,
    PreparedRecord,
    RecordChanges,
    RecordUpdate,
    ThreadTurn,
    WholeHit,
)

# maintenance_work_mem of a vector index build after a bulk load (PostgreSQL; SQLite ignores it)
BUILD_MEMORY = "512MB"

__all__ = [
    "Archive",
    "ArchiveItem",
    "ArchivedRow",
    "AuditRow",
    "BulkLoader",
    "Checkpoints",
    "ChunkHit",
    "EntityStore",
    "KeyRow",
    "KeyStore",
    "Maintenance",
    "OnError",
    "PreparedChunk",
    "PreparedEvent",
    "PreparedRecord",
    "RecordChanges",
    "RecordUpdate",
    "Store",
    "ThreadTurn",
    "Transfer",
]


@runtime_checkable
class Store(Protocol):
    """The core of every backend: what the engine calls for records, search and threads.

    Implemented by :class:`engramdb.stores.sqlite.SQLiteStore` and
    :class:`engramdb.stores.postgres.PostgresStore`; the contract suite (``tests/contract``)
    runs against both. Every method that touches records takes the namespace first and
    scopes its statements by it. Times are epoch microseconds.
    """

    #: The backend's name as reported by ``health`` and ``stats``: ``sqlite`` or ``postgresql``.
    backend: str

    def health(self) -> dict[str, Any]:
        """Check that the store answers: ``{"status": "ok"|"error", "backend", ...}``.

        Never raises for an unreachable store: the failure is reported in the result
        (``message``), with whatever the backend knows of its state (PostgreSQL: ``breaker``).
        """
        ...

    def last_write_lsn(self) -> str | None:
        """The position of this process's last committed write, for read-your-writes.

        PostgreSQL returns its WAL insert position (a read replica serves a read only once it
        has replayed that far); a store with no replicas returns None.
        """
        ...

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
        with_records: int = 0,
    ) -> list[ChunkHit]:
        """Return the best chunks by cosine similarity, restricted to the filter.

        ``with_records`` invites the store to attach the records (``ChunkHit.record``) of
        at least the best ``with_records`` hits, the ones a page is likely to show, when
        that saves a read; a store may attach more, or none. The engine reads the records
        of the page that came without one.
        """
        ...

    def vector_scores(self, chunk_ids: list[int], query: np.ndarray) -> list[float]:
        """Return the cosine similarity of the query to each chunk (NaN when it is gone)."""
        ...

    def hybrid_candidates(
        self,
        namespace: str,
        query: np.ndarray,
        match: str,
        user_id: str | None,
        node: Node | None,
        full: Node | None,
        limit: int,
    ) -> tuple[list[ChunkHit], list[ChunkHit], dict[int, float]]:
        """Both sides of a hybrid search: :meth:`vector_candidates` (``user_id``, ``node``)
        and :meth:`keyword_candidates` (``full``: the filter with the user scope), each of
        ``limit``, and the vector scores (:meth:`vector_scores`) of any keyword hits the
        store scored while at it, by chunk id. A store whose sides wait on a server may
        run them at once. The vector hits are a pool for fusion, at least twice the
        page: a store may search the pool's tail less exactly than
        :meth:`vector_candidates` would (PostgreSQL re-scores fewer sign bits), never the
        page's worth at its head.
        """
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

    def chunk_rids(self, namespace: str, chunk_ids: list[int]) -> dict[int, int]:
        """Map chunk id -> its record's row id, for those of the chunks that exist.

        A store may also leave out chunks of other namespaces. Cheaper than :meth:`locate`
        (no record is read): search fuses its candidates on these and locates only those
        that can reach the page.
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

    def locate_whole(
        self, namespace: str, chunk_ids: list[int], node: Node | None
    ) -> dict[int, WholeHit] | None:
        """:meth:`locate`, with each located chunk's whole record and answer kinds, in one
        read; None from a store without such a read (the engine then reads as it goes).

        Why: after fusion a hybrid search locates the candidates that can reach the page,
        reads their answer kinds, then the page's records. Over the network those are three
        round trips on the search's path, where reading the few candidates within reach
        whole is one; in process, three statements where one does. The records are built
        only for the page (``WholeHit.record``), so the rows read beyond it cost little.
        """
        ...

    def thread_turns(
        self, namespace: str, thread_id: str, start: int, end: int, margin: int
    ) -> list[ThreadTurn]:
        """Return a thread's turns around a time range, in thread order.

        Turns are the thread's records but derived statements (``prepared.is_turn``).
        Every turn with ``start <= occurred_at <= end``, plus the ``margin`` turns just
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

    def user_ids(self, namespace: str, now: int) -> list[str]:
        """Return the distinct non-empty ``user_id``s of the namespace's records live at
        ``now`` (epoch microseconds), by a loose scan of the ``(namespace, user_id)`` index:
        one probe per scope, so its cost follows the number of scopes, not of records."""
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

    def close(self) -> None:
        """Release connections and persist derived indexes."""
        ...


@runtime_checkable
class Maintenance(Protocol):
    """Whole-store upkeep: sizes, integrity checks and repair, backups, re-embedding."""

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


@runtime_checkable
class Transfer(Protocol):
    """Whole rows out and in, ids and history kept: ``export``/``import`` and ``migrate``."""

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

    def load_history(
        self, rows: list[tuple[Any, ...]], meta: dict[str, str | None] | None = None
    ) -> int:
        """Insert history rows (``iter_orphan_history``'s shape, seq ignored) in one transaction.

        A row already present (same namespace, record, op, version and time) is skipped, so
        loading the same rows twice leaves one of each; returns how many were new. ``meta``
        values are written in the same transaction (a checkpoint).
        """
        ...


@runtime_checkable
class BulkLoader(Protocol):
    """A ``migrate`` target: COPY-speed loads under a batch log, and vector-index rebuilds."""

    def load_records(
        self, batch: list[dict[str, Any]], meta: dict[str, str | None] | None = None
    ) -> dict[str, int]:
        """Insert records at bulk speed, ``meta`` in the same transaction; count outcomes."""
        ...

    def existing_digests(self, namespace: str, ids: list[str]) -> dict[str, tuple[int, str]]:
        """Return ``id -> (version, content_hash)`` of those ids present in the namespace."""
        ...

    def exclusive(self, name: str) -> AbstractContextManager[None]:
        """Hold a store-wide lock named ``name`` (one run per source at a time)."""
        ...

    def read_meta(self, key: str) -> str | None:
        """Read one ``meta`` entry."""
        ...

    def write_meta(self, key: str, value: str | None) -> None:
        """Write (or, with None, delete) one ``meta`` entry."""
        ...

    def read_meta_prefix(self, prefix: str) -> dict[str, str]:
        """Read every ``meta`` entry whose key starts with ``prefix``."""
        ...

    def delete_meta_prefix(self, prefix: str) -> int:
        """Delete every ``meta`` entry whose key starts with ``prefix``; return how many."""
        ...

    def settle_checkpoints(self) -> None:
        """Wait until every write carrying a checkpoint has committed or rolled back."""
        ...

    @property
    def pool_max(self) -> int:
        """How many connections the store may hold (loaders are capped by it)."""
        ...

    def vector_index_exists(self) -> bool:
        """True when the approximate vector index exists."""
        ...

    def drop_vector_index(self) -> None:
        """Drop the approximate vector index (rebuilt once after a bulk load)."""
        ...

    def build_vector_index(self, maintenance_work_mem: str = BUILD_MEMORY) -> None:
        """Build the approximate vector index, then refresh the planner's statistics."""
        ...


@runtime_checkable
class Checkpoints(Protocol):
    """Thread checkpoints, channel blobs and pending writes of an agent framework.

    The bytes are the framework serializer's and stay opaque; the store scopes every
    statement by namespace, writes each call in one transaction (rolled back on any error),
    and garbage-collects the blobs no remaining checkpoint reads when it deletes
    checkpoints. ``checkpoint_id``s order a thread's checkpoints (newest is greatest).
    """

    def put_checkpoint(
        self, namespace: str, row: CheckpointRow, blobs: list[CheckpointBlob]
    ) -> None:
        """Save the blobs (existing versions kept) and the checkpoint (replaced) together."""
        ...

    def put_checkpoint_writes(
        self,
        namespace: str,
        thread_id: str,
        checkpoint_ns: str,
        checkpoint_id: str,
        writes: list[CheckpointWrite],
        replace: bool,
    ) -> None:
        """Save a task's pending writes; ``replace`` overwrites a write of the same index."""
        ...

    def get_checkpoint(
        self, namespace: str, thread_id: str, checkpoint_ns: str, checkpoint_id: str | None
    ) -> CheckpointRow | None:
        """Return one checkpoint (the thread's newest without an id) with blobs and writes."""
        ...

    def list_checkpoints(
        self,
        namespace: str,
        thread_id: str | None,
        checkpoint_ns: str | None,
        checkpoint_id: str | None,
        before: str | None,
        metadata: dict[str, Any] | None,
        limit: int | None,
    ) -> list[CheckpointRow]:
        """Return matching checkpoints, newest first, with their blobs and writes.

        ``metadata``: every top-level key must equal the given JSON value.
        """
        ...

    def delete_checkpoint_threads(self, namespace: str, thread_ids: list[str]) -> int:
        """Delete every checkpoint, blob and write of the threads; return the checkpoints."""
        ...

    def delete_checkpoint_runs(self, namespace: str, run_ids: list[str]) -> int:
        """Delete the checkpoints (and their writes) whose metadata names one of the runs."""
        ...

    def copy_checkpoint_thread(self, namespace: str, source: str, target: str) -> int:
        """Copy every checkpoint, blob and write of ``source`` to ``target``."""
        ...

    def latest_checkpoints(
        self, namespace: str, thread_id: str, limit: int
    ) -> list[CheckpointSummary]:
        """Return a thread's newest checkpoints (every checkpoint namespace), newest first."""
        ...

    def iter_checkpoint_lines(self, namespace: str | None) -> Iterator[dict[str, Any]]:
        """Yield every checkpoint, blob and write row as an export line (of one namespace
        or all; :mod:`engramdb.stores.checkpoint_rows`)."""
        ...

    def import_checkpoint_lines(self, lines: list[dict[str, Any]]) -> int:
        """Insert checked export lines in one transaction, keeping rows already present;
        return how many rows were offered."""
        ...

    def prune_checkpoints(self, namespace: str, thread_ids: list[str]) -> int:
        """Keep only the newest checkpoint of each (thread, checkpoint namespace).

        Raises:
            ValidationError: a thread uses LangGraph's DeltaChannel, whose state needs the
                checkpoints between the newest and its last snapshot.
        """
        ...


@runtime_checkable
class KeyStore(Protocol):
    """The service's keys and its admin audit log (tables of migration 0012).

    A store keeps rows and never sees a secret: :mod:`engramdb.ops.keys` makes, hashes and
    checks keys. Every read is on the primary (never a replica), so a revocation is seen by
    the next request of every process. ``restore`` keeps both tables as they are.
    """

    def insert_key(self, row: KeyRow, only_if_no_admin: bool = False) -> bool:
        """Write a new key; with ``only_if_no_admin``, only when no admin key is in force.

        The check and the insert are one transaction (concurrent first starts of several
        processes make one admin key). Returns whether the row was written.
        """
        ...

    def get_key(self, key_id: str) -> KeyRow | None:
        """Return the key with this id (revoked ones included), or None."""
        ...

    def list_keys(self) -> list[KeyRow]:
        """Return every key, revoked ones included, oldest first."""
        ...

    def keys_version(self) -> int | None:
        """A number that changes whenever a key may have changed, read without waiting on
        anything (an event loop calls it), or None when there is none.

        Two equal values mean no key changed in between, in any process: a key checked
        after the first may be trusted until the value moves. None means "unknown": read the
        key. A store may move it for any write; it must move it for every key change.
        """
        ...

    def revoke_key(self, key_id: str, at: int) -> KeyRow | None:
        """Mark a key revoked at ``at`` (a revoked key stays revoked at its first time).

        Returns the key as it now is, or None when there is no such key.
        """
        ...

    def append_audit(self, row: AuditRow) -> int:
        """Append one audit entry; return its sequence number."""
        ...

    def list_audit(self, limit: int, before: int | None = None) -> list[AuditRow]:
        """Return up to ``limit`` audit entries, newest first, older than seq ``before``."""
        ...


@runtime_checkable
class IdempotencyStore(Protocol):
    """The service's idempotency keys (table of migration 0017), shared by its processes.

    See :mod:`engramdb.stores.idempotency_rows`: a key is claimed by one caller (an insert
    that takes over only an expired row), then holds the answer to replay until it
    expires. Times are epoch microseconds. Reads are on the primary.
    """

    def claim_idempotency(self, key: str, now: int, lease_until: int) -> IdempotencyRow | None:
        """Claim ``key`` until ``lease_until``: None when the caller now owns it, else the
        key's row (a claim still running, or a kept answer)."""
        ...

    def get_idempotency(self, key: str) -> IdempotencyRow | None:
        """The key's row, or None (released, purged or never claimed)."""
        ...

    def finish_idempotency(
        self, key: str, status: int, headers: str, body: bytes, expires_at: int
    ) -> None:
        """Keep the answer of the request that claimed ``key`` until ``expires_at``."""
        ...

    def release_idempotency(self, key: str) -> None:
        """Drop a running claim (its request failed: a retry must run again)."""
        ...

    def purge_idempotency(self, now: int) -> int:
        """Delete the rows expired at ``now``; return how many."""
        ...


@runtime_checkable
class EntityStore(Protocol):
    """Entities, relations and mentions: derived from record texts, kept per namespace and
    user scope (migration 0014).

    A record is queued for extraction in the transaction that writes it (and again when its
    text changes); deleting it removes its mentions and every entity or relation left
    without evidence, in the same transaction. The engine drains the queue
    (:mod:`engramdb.engine.entities`).
    """

    def extraction_pending(
        self, namespace: str | None, user_id: str | None, limit: int
    ) -> list[PendingText]:
        """Return up to ``limit`` queued records (oldest first), of one scope when given; failed
        ones are not pending (``retry_failed_extractions`` queues them again)."""
        ...

    def extraction_counts(self, namespace: str | None) -> dict[str, int]:
        """Return ``pending``, ``failed``, ``entities``, ``relations``, ``mentions`` of a namespace
        (or of the whole store)."""
        ...

    def write_extractions(
        self, items: list[tuple[PendingText, Extraction]], join: AliasJoin | None = None
    ) -> int:
        """Replace each record's mentions and relations by its extraction and dequeue it, in one
        transaction; a record changed or deleted since it was read is only dequeued.

        With ``join``, each (namespace, user) scope in which the batch found a person has its
        people passed to it and the joins it returns made, in the same transaction: no reader,
        in this process or another, sees the batch's entities before their aliases are joined.
        Returns how many were written."""
        ...

    def fail_extraction(self, item: PendingText, error: str) -> None:
        """Park a record whose extraction failed (kept for ``doctor --repair``)."""
        ...

    def retry_failed_extractions(self) -> int:
        """Queue every failed extraction again; return how many."""
        ...

    def unlink_entity(self, namespace: str, entity_id: int) -> int | None:
        """Separate an alias from its canonical entity, logged; return that entity's id (None: it
        was not joined)."""
        ...

    def entity_links(self, namespace: str, entity_id: int) -> list[dict[str, object]]:
        """Return the alias log of an entity and of those joined to it, oldest first."""
        ...

    def list_entities(
        self,
        namespace: str,
        user_id: str | None,
        query: str | None,
        type_: str | None,
        limit: int,
    ) -> list[Entity]:
        """Return canonical entities, most mentioned first; ``query`` matches names and aliases."""
        ...

    def get_entity(self, namespace: str, entity_id: int, mentions: int) -> Entity | None:
        """Return one canonical entity (an alias id leads to it), up to ``mentions`` mentions."""
        ...

    def entity_graph(
        self, namespace: str, entity_id: int, depth: int, types: list[str] | None
    ) -> EntityGraph | None:
        """Return the entities and relations within ``depth`` hops of an entity (None: no such
        entity)."""
        ...

    def records_about(self, namespace: str, entity_id: int, limit: int) -> list[str]:
        """Return the ids of the records that mention an entity or its aliases, newest first."""
        ...

    def record_entities(self, namespace: str, record_ids: list[str]) -> dict[str, EntityGraph]:
        """Return each record's canonical entities and the relations it states."""
        ...

    def answer_kinds(self, namespace: str, record_ids: list[str]) -> dict[str, int]:
        """Return the answer kinds (:mod:`engramdb.extract.answer_types` flags) of those of
        ``record_ids`` that hold any; records not extracted yet are left out."""
        ...


@runtime_checkable
class Archive(Protocol):
    """Records out of the live set: merged into a near-duplicate or archived by retention.

    An archived record is gone from ``records`` (so from search, list, count and every
    index) and kept whole (its export image with chunk vectors) in ``archived_records``,
    readable by id, exported, and restorable by importing the image back.
    """

    def archive_records(self, namespace: str, items: list[ArchiveItem]) -> list[str]:
        """In one transaction, for each item whose record is still at its version: write
        its history entry, keep its archive row (when it has a reason), delete it from
        every index. Return the ids taken (the others changed or vanished meanwhile)."""
        ...

    def update_records(
        self, namespace: str, updates: list[RecordUpdate]
    ) -> list[MemoryRecord | None]:
        """In one transaction, apply each update whose record is still at its expected
        version, as ``Store.update_record`` would (version bump, history entry). Return, in
        order, each record after its update, or None where it was left alone (changed or
        gone meanwhile, or its new text would duplicate another record of its scope)."""
        ...

    def archived(self, namespace: str, ids: list[str]) -> list[ArchivedRow]:
        """Return the archive rows of these ids (missing ones omitted)."""
        ...

    def list_archived(
        self, namespace: str, user_id: str | None, merged_into: str | None, limit: int
    ) -> list[ArchivedRow]:
        """Return archive rows, newest first, optionally of one user or one merge survivor."""
        ...

    def drop_archived(self, namespace: str, ids: list[str]) -> int:
        """Delete archive rows (their records were restored); return how many."""
        ...

    def put_archived(self, rows: list[ArchivedRow]) -> int:
        """Insert archive rows unless present (import); return how many were new."""
        ...

    def iter_archived(self, namespace: str | None) -> list[ArchivedRow]:
        """Every archive row of a namespace (or of every one), for export."""
        ...
