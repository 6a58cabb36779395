"""The embedded store: one SQLite file in WAL mode, plus a derived in-process vector index.

``SQLiteStore`` composes the package's parts, each with one job, over one
:class:`~engramdb.stores.sqlite.connection.Connections` (the writer, the readers, and the one
write path every part goes through):

* :mod:`.records`: insert with dedup, update, delete, reads by id, page, count and history;
* :mod:`.vector_search` and :mod:`.keyword_search`: search candidates; :mod:`.chunks`: the
  chunk rows both indexes hang on, and locating hits;
* :mod:`.threads`: events, slots and a thread's turns;
* :mod:`.meta`: identity, embedder, write generations;
* :mod:`.erasure`, :mod:`.stats`, :mod:`.doctor`, :mod:`.backup`, :mod:`.reembed`: upkeep;
* :mod:`.transfer`: whole rows out and in;
* :mod:`.checkpoints`: thread checkpoints of agent frameworks (LangGraph's checkpointer).
* :mod:`.keys_table`: the service's keys and admin audit log.
* :mod:`.entities`: entities and relations derived from the texts (the extraction queue).

Everything a write touches (record, chunks with vectors, keyword index rows, history, events)
is one transaction; the vector index is derived and caught up from the tables on the next
read, so writes from other processes are visible to this process's next search.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from engramdb.stores.base import BUILD_MEMORY
from engramdb.stores.idempotency_rows import IdempotencyRow, IdempotencyTable
from engramdb.stores.key_rows import AuditRow, KeyRow
from engramdb.stores.prepared import (
    AliasJoin,
    ArchivedRow,
    ArchiveItem,
    ChunkHit,
    OnError,
    PendingText,
    PreparedEvent,
    PreparedRecord,
    RecordChanges,
    RecordUpdate,
    ThreadTurn,
    WholeHit,
)
from engramdb.stores.sqlite.archive import Archive
from engramdb.stores.sqlite.backup import Backups
from engramdb.stores.sqlite.bulk import SQLiteBulkLoad
from engramdb.stores.sqlite.checkpoints import CheckpointTables
from engramdb.stores.sqlite.chunks import locate, locate_whole
from engramdb.stores.sqlite.connection import Connections
from engramdb.stores.sqlite.doctor import Doctor
from engramdb.stores.sqlite.entities import Entities
from engramdb.stores.sqlite.erasure import Erasure
from engramdb.stores.sqlite.keys_table import KeyTable
from engramdb.stores.sqlite.keyword_search import KeywordSearch
from engramdb.stores.sqlite.meta import StoreMeta
from engramdb.stores.sqlite.records import Records
from engramdb.stores.sqlite.reembed import Reembedding
from engramdb.stores.sqlite.stats import Stats
from engramdb.stores.sqlite.threads import Threads
from engramdb.stores.sqlite.transfer import RowTransfer
from engramdb.stores.sqlite.vector_search import VectorSearch

if TYPE_CHECKING:
    from engramdb.stores.base import Archive as ArchiveRole
    from engramdb.stores.base import (
        BulkLoader,
        Checkpoints,
        EntityStore,
        IdempotencyStore,
        KeyStore,
        Maintenance,
        Store,
        Transfer,
    )


class SQLiteStore:
    """The embedded default store (see module docstring).

    Implements :class:`~engramdb.stores.base.Store`, :class:`~engramdb.stores.base.Maintenance`
    and :class:`~engramdb.stores.base.Transfer` structurally (checked by mypy below).
    """

    backend = "sqlite"

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "FULL",
        busy_timeout_ms: int = 10_000,
        mmap_mb: int = 2048,
        auto_migrate: bool = True,
        ann_min_rows: int = 20_000,
        ann_min_user_rows: int = 5_000,
        ann_connectivity: int = 16,
        ann_ef_search: int = 96,
        ann_ef_add: int = 128,
        namespace_max_records: int = 0,
        keyword_index_min_rows: int = 5_000,
    ) -> None:
        self._db = Connections(
            path,
            synchronous=synchronous,
            busy_timeout_ms=busy_timeout_ms,
            mmap_mb=mmap_mb,
            auto_migrate=auto_migrate,
        )
        self.path = self._db.path
        self._meta = StoreMeta(self._db)
        self._meta.initialise()
        self._records = Records(self._db, namespace_max_records)
        self._vectors = VectorSearch(
            self._db, (ann_min_rows, ann_min_user_rows, ann_connectivity, ann_ef_search, ann_ef_add)
        )
        self._keywords = KeywordSearch(self._db, keyword_index_min_rows)
        self._threads = Threads(self._db)
        self._erasure = Erasure(self._db)
        self._stats = Stats(self._db, self._vectors, self._records, self.backend)
        self._doctor = Doctor(self._db, self._vectors)
        self._backups = Backups(self._db, self._vectors)
        self._transfer = RowTransfer(self._db)
        self._reembedding = Reembedding(self._db, self._vectors)
        self._bulk = SQLiteBulkLoad(self._db, self._transfer)

        self._checkpoints = CheckpointTables(self._db)
        self._keys = KeyTable(self._db)
        self._idempotency = IdempotencyTable(self._db, "?")
        self._entities = Entities(self._db)
        self._archive = Archive(self._db)

    # ------------------------------------------------------------------ identity, health

    def health(self) -> dict[str, Any]:
        """Check that the file answers a read."""
        return self._stats.health()

    def last_write_lsn(self) -> str | None:
        """None: a SQLite file has no replicas, every read sees every committed write."""
        return None

    def embedder_info(self) -> tuple[str, int] | None:
        """Return the (name, dim) recorded in the store, if any."""
        return self._meta.embedder_info()

    def check_embedder(self, name: str, dim: int) -> None:
        """Record the embedder on first use; refuse a different one (invariant 7)."""
        self._meta.check_embedder(name, dim)

    def store_id(self) -> str:
        """Return this store's identity (kept by ``restore``; a ``backup`` copy gets its own)."""
        return self._meta.store_id()

    def generation(self, namespace: str) -> int:
        """Return the namespace's write generation (see ``Store.generation``)."""
        return self._meta.generation(namespace)

    # ------------------------------------------------------------------ records

    def add_records(
        self,
        namespace: str,
        items: list[PreparedRecord],
        on_error: OnError,
        events: list[PreparedEvent] | None = None,
    ) -> list[AddResult]:
        """Insert records (and events) in one transaction, deduplicating in the database."""
        return self._records.add_records(namespace, items, on_error, events)

    def update_record(
        self,
        namespace: str,
        record_id: str,
        changes: RecordChanges,
        expected_version: int | None,
    ) -> MemoryRecord:
        """Apply changes in one transaction, bump the version and write a history row."""
        return self._records.update_record(namespace, record_id, changes, expected_version)

    def delete_records(self, namespace: str, ids: list[str] | None, node: Node | None) -> int:
        """Delete by ids or filter from every index in one transaction, leaving history."""
        return self._records.delete_records(namespace, ids, node)

    def get_records(self, namespace: str, ids: list[str]) -> list[MemoryRecord]:
        """Return the records with these ids in the order asked; missing ones omitted."""
        return self._records.get_records(namespace, ids)

    def list_records(
        self, namespace: str, node: Node | None, limit: int, after: str | None, descending: bool
    ) -> list[MemoryRecord]:
        """Return one keyset page of matching records ordered by id."""
        return self._records.list_records(namespace, node, limit, after, descending)

    def count_records(self, namespace: str, node: Node | None) -> int:
        """Count matching records."""
        return self._records.count_records(namespace, node)

    def history(self, namespace: str, record_id: str) -> list[HistoryEntry]:
        """Return every change of a record, oldest first."""
        return self._records.history(namespace, record_id)

    def user_ids(self, namespace: str, now: int) -> list[str]:
        """Return the distinct user scopes of live records (see ``Store.user_ids``)."""
        return self._records.user_ids(namespace, now)

    def next_expiry(self, namespace: str, after: int) -> int | None:
        """Return the earliest ``expires_at`` after ``after`` (see ``Store.next_expiry``)."""
        return self._records.next_expiry(namespace, after)

    # ------------------------------------------------------------------ search

    def vector_candidates(
        self,
        namespace: str,
        query: np.ndarray,
        user_id: str | None,
        node: Node | None,
        limit: int,
        with_records: int = 0,
    ) -> list[ChunkHit]:
        """Return the best chunks by cosine similarity (exact) that pass the filter."""
        return self._vectors.vector_candidates(namespace, query, user_id, node, limit, with_records)

    def vector_scores(self, chunk_ids: list[int], query: np.ndarray) -> list[float]:
        """Return the cosine similarity of the query to each chunk (NaN when not indexed)."""
        return self._vectors.vector_scores(chunk_ids, query)

    def keyword_candidates(
        self, namespace: str, match: str, node: Node | None, limit: int
    ) -> list[ChunkHit]:
        """Return the best chunks by BM25 (negated so that higher is better)."""
        return self._keywords.keyword_candidates(namespace, match, node, limit)

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
        """Both sides, one after the other: in-process work gains nothing from a thread."""
        vec_hits = self.vector_candidates(namespace, query, user_id, node, limit)
        return vec_hits, self.keyword_candidates(namespace, match, full, limit), {}

    def chunk_rids(self, namespace: str, chunk_ids: list[int]) -> dict[int, int]:
        """Map chunk id -> its record's row id, for the chunks that exist."""
        return self._vectors.chunk_rids(chunk_ids)

    def locate(
        self, namespace: str, chunk_ids: list[int], node: Node | None
    ) -> dict[int, tuple[str, int, int, int]]:
        """Map chunk id -> (record id, version, start, end) for chunks passing the filter."""
        return locate(self._db, namespace, chunk_ids, node)

    def locate_whole(
        self, namespace: str, chunk_ids: list[int], node: Node | None
    ) -> dict[int, WholeHit]:
        """``locate``, with each chunk's record and answer kinds, in one statement."""
        return locate_whole(self._db, namespace, chunk_ids, node)

    def set_index_texts(self, namespace: str, texts: list[tuple[int, str]]) -> None:
        """Rewrite the keyword-index text of chunks (skipping chunks deleted meanwhile)."""
        self._keywords.set_index_texts(namespace, texts)

    # ------------------------------------------------------------------ threads

    def thread_turns(
        self, namespace: str, thread_id: str, start: int, end: int, margin: int
    ) -> list[ThreadTurn]:
        """Return a thread's messages in ``[start, end]`` plus ``margin`` on each side."""
        return self._threads.thread_turns(namespace, thread_id, start, end, margin)

    def append_events(self, namespace: str, events: list[PreparedEvent]) -> list[Event]:
        """Append events in order in one transaction."""
        return self._threads.append_events(namespace, events)

    def list_events(
        self, namespace: str, thread_id: str, since: int | None, limit: int
    ) -> list[Event]:
        """Return a thread's events in append order, optionally from a time on."""
        return self._threads.list_events(namespace, thread_id, since, limit)

    def get_slots(self, namespace: str, thread_id: str) -> Slots:
        """Return the thread's slots (an empty map at version 0 when never set)."""
        return self._threads.get_slots(namespace, thread_id)

    def set_slots(
        self,
        namespace: str,
        thread_id: str,
        values: dict[str, Any],
        expected_version: int | None,
        user_id: str,
    ) -> Slots:
        """Compare-and-set: write values (None removes a slot) and bump the thread's version."""
        return self._threads.set_slots(namespace, thread_id, values, expected_version, user_id)

    # ------------------------------------------------------------------ upkeep

    def forget(
        self,
        namespace: str,
        user_id: str | None,
        thread_id: str | None,
        everything: bool,
        compact: bool = False,
    ) -> dict[str, int]:
        """Erase records, history, events and slots of a user, a thread or a namespace."""
        return self._erasure.forget(namespace, user_id, thread_id, everything, compact)

    def namespaces(self) -> dict[str, int]:
        """Return record counts per namespace (namespaces with only events count 0)."""
        return self._stats.namespaces()

    def stats(self, namespace: str | None = None) -> dict[str, Any]:
        """Return counts (for one namespace, or all) and file sizes."""
        return self._stats.stats(namespace)

    def doctor(self, repair: bool = False) -> dict[str, Any]:
        """Check SQLite integrity and that every derived index agrees with the tables."""
        return self._doctor.doctor(repair)

    def backup(self, path: Path) -> None:
        """Write a consistent online snapshot with SQLite's backup API."""
        self._backups.backup(path)

    def restore(self, path: Path) -> None:
        """Replace the store's content with a backup (other processes must be stopped)."""
        self._backups.restore(path)

    def reembed_begin(self, target: str) -> None:
        """Start (or resume) a re-embedding towards ``target``; a new target starts over."""
        self._reembedding.reembed_begin(target)

    def reembed_pending(self, limit: int) -> list[tuple[int, str]]:
        """Return up to ``limit`` chunks without a new vector yet: (chunk id, chunk text)."""
        return self._reembedding.reembed_pending(limit)

    def reembed_put(self, rows: list[tuple[int, np.ndarray]]) -> None:
        """Store new vectors for chunks (committed, so an interrupted run resumes here)."""
        self._reembedding.reembed_put(rows)

    def reembed_finish(self, name: str, dim: int, embed: Callable[[list[str]], np.ndarray]) -> None:
        """Switch every chunk to its new vector and the store to the new embedder, atomically."""
        self._reembedding.reembed_finish(name, dim, embed)

    # ------------------------------------------------------------------ entities (derived)

    def extraction_pending(
        self, namespace: str | None, user_id: str | None, limit: int
    ) -> list[PendingText]:
        """Return up to ``limit`` queued records (oldest first), of one scope when given; failed
        ones are not pending (``retry_failed_extractions`` queues them again)."""
        return self._entities.extraction_pending(namespace, user_id, limit)

    def extraction_counts(self, namespace: str | None) -> dict[str, int]:
        """Return ``pending``, ``failed``, ``entities``, ``relations``, ``mentions`` of a namespace
        (or of the whole store)."""
        return self._entities.extraction_counts(namespace)

    def write_extractions(
        self, items: list[tuple[PendingText, Extraction]], join: AliasJoin | None = None
    ) -> int:
        """Replace each record's mentions and relations by its extraction and dequeue it, in one
        transaction; a record changed or deleted since it was read is only dequeued.

        With ``join``, each (namespace, user) scope in which the batch found a person has its
        people passed to it and the joins it returns made, in the same transaction: no reader,
        in this process or another, sees the batch's entities before their aliases are joined.
        Returns how many were written."""
        return self._entities.write_extractions(items, join)

    def fail_extraction(self, item: PendingText, error: str) -> None:
        """Park a record whose extraction failed (kept for ``doctor --repair``)."""
        self._entities.fail_extraction(item, error)

    def retry_failed_extractions(self) -> int:
        """Queue every failed extraction again; return how many."""
        return self._entities.retry_failed_extractions()

    def unlink_entity(self, namespace: str, entity_id: int) -> int | None:
        """Separate an alias from its canonical entity, logged; return that entity's id (None: it
        was not joined)."""
        return self._entities.unlink_entity(namespace, entity_id)

    def entity_links(self, namespace: str, entity_id: int) -> list[dict[str, object]]:
        """Return the alias log of an entity and of those joined to it, oldest first."""
        return self._entities.entity_links(namespace, entity_id)

    def list_entities(
        self,
        namespace: str,
        user_id: str | None,
        query: str | None,
        type_: str | None,
        limit: int,
    ) -> list[Entity]:
        """Return canonical entities, most mentioned first; ``query`` matches names and aliases."""
        return self._entities.list_entities(namespace, user_id, query, type_, limit)

    def get_entity(self, namespace: str, entity_id: int, mentions: int) -> Entity | None:
        """Return one canonical entity (an alias id leads to it), up to ``mentions`` mentions."""
        return self._entities.get_entity(namespace, entity_id, mentions)

    def entity_graph(
        self, namespace: str, entity_id: int, depth: int, types: list[str] | None
    ) -> EntityGraph | None:
        """Return the entities and relations within ``depth`` hops of an entity (None: no such
        entity)."""
        return self._entities.entity_graph(namespace, entity_id, depth, types)

    def records_about(self, namespace: str, entity_id: int, limit: int) -> list[str]:
        """Return the ids of the records that mention an entity or its aliases, newest first."""
        return self._entities.records_about(namespace, entity_id, limit)

    def record_entities(self, namespace: str, record_ids: list[str]) -> dict[str, EntityGraph]:
        """Return each record's canonical entities and the relations it states."""
        return self._entities.record_entities(namespace, record_ids)

    def answer_kinds(self, namespace: str, record_ids: list[str]) -> dict[str, int]:
        """Return the answer kinds of those of ``record_ids`` that hold any."""
        return self._entities.answer_kinds(namespace, record_ids)

    # ------------------------------------------------------------------ transfer

    def iter_all(
        self, namespace: str | None, node: Node | None, after: tuple[str, str] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Yield every matching record with its chunk vectors and history, for export."""
        return self._transfer.iter_all(namespace, node, after)

    def iter_digests(self, namespace: str) -> Iterator[tuple[str, int, str]]:
        """Yield ``(id, version, content_hash)`` of a namespace's records in id order."""
        return self._transfer.iter_digests(namespace)

    def iter_orphan_history(self, after_seq: int, limit: int) -> list[tuple[Any, ...]]:
        """Return history rows of records that no longer exist, in ``seq`` order."""
        return self._transfer.iter_orphan_history(after_seq, limit)

    def iter_events_and_slots(self, namespace: str | None) -> Iterator[dict[str, Any]]:
        """Yield events and slot maps as export lines."""
        return self._transfer.iter_events_and_slots(namespace)

    def import_records(self, batch: list[dict[str, Any]]) -> dict[str, int]:
        """Insert exported records verbatim (ids, times, versions, history) in one transaction."""
        return self._transfer.import_records(batch)

    def import_events_and_slots(self, lines: list[dict[str, Any]]) -> tuple[int, int]:
        """Insert exported events (idempotent by id) and slot maps; return their counts."""
        return self._transfer.import_events_and_slots(lines)

    def load_history(
        self, rows: list[tuple[Any, ...]], meta: dict[str, str | None] | None = None
    ) -> int:
        """Insert history rows unless already present (see ``Transfer.load_history``)."""
        return self._transfer.load_history(rows, meta)

    # ------------------------------------------------------------------ bulk loads (migrate)

    def load_records(
        self, batch: list[dict[str, Any]], meta: dict[str, str | None] | None = None
    ) -> dict[str, int]:
        """Insert records and ``meta`` values in one transaction (see ``BulkLoader``)."""
        return self._bulk.load_records(batch, meta)

    def existing_digests(self, namespace: str, ids: list[str]) -> dict[str, tuple[int, str]]:
        """Return ``id -> (version, content_hash)`` of those ids present in the namespace."""
        return self._bulk.existing_digests(namespace, ids)

    def exclusive(self, name: str) -> AbstractContextManager[None]:
        """Hold a file lock named ``name`` next to the store (one run at a time)."""
        return self._bulk.exclusive(name)

    def read_meta(self, key: str) -> str | None:
        """Read one ``meta`` entry."""
        return self._bulk.read_meta(key)

    def write_meta(self, key: str, value: str | None) -> None:
        """Write (or, with None, delete) one ``meta`` entry."""
        self._bulk.write_meta(key, value)

    def read_meta_prefix(self, prefix: str) -> dict[str, str]:
        """Read every ``meta`` entry whose key starts with ``prefix``."""
        return self._bulk.read_meta_prefix(prefix)

    def delete_meta_prefix(self, prefix: str) -> int:
        """Delete every ``meta`` entry whose key starts with ``prefix``; return how many."""
        return self._bulk.delete_meta_prefix(prefix)

    def settle_checkpoints(self) -> None:
        """Nothing to wait for: a killed writer's transaction rolls back with its journal."""

    @property
    def pool_max(self) -> int:
        """One: a SQLite file has one writer, so batches load in order."""
        return 1

    def vector_index_exists(self) -> bool:
        """True: the vector index is a sidecar that catches up by itself."""
        return True

    def drop_vector_index(self) -> None:
        """Nothing to drop (the sidecar follows the chunks table)."""

    def build_vector_index(self, maintenance_work_mem: str = BUILD_MEMORY) -> None:
        """Catch the vector index up with the loaded rows now (saved as the sidecar on
        close), so that the first search after a bulk load does not carry it: over 100k
        new chunks that catch-up outlasted a search's time budget."""
        self._vectors.index()

    # ------------------------------------------------------------------ thread checkpoints

    def put_checkpoint(
        self, namespace: str, row: CheckpointRow, blobs: list[CheckpointBlob]
    ) -> None:
        """Save the blobs (existing versions kept) and the checkpoint (replaced) together."""
        self._checkpoints.put_checkpoint(namespace, row, blobs)

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
        self._checkpoints.put_checkpoint_writes(
            namespace, thread_id, checkpoint_ns, checkpoint_id, writes, replace
        )

    def get_checkpoint(
        self, namespace: str, thread_id: str, checkpoint_ns: str, checkpoint_id: str | None
    ) -> CheckpointRow | None:
        """Return one checkpoint (the thread's newest without an id) with blobs and writes."""
        return self._checkpoints.get_checkpoint(namespace, thread_id, checkpoint_ns, checkpoint_id)

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
        """Return matching checkpoints, newest first, with their blobs and writes."""
        return self._checkpoints.list_checkpoints(
            namespace, thread_id, checkpoint_ns, checkpoint_id, before, metadata, limit
        )

    def delete_checkpoint_threads(self, namespace: str, thread_ids: list[str]) -> int:
        """Delete every checkpoint, blob and write of the threads."""
        return self._checkpoints.delete_checkpoint_threads(namespace, thread_ids)

    def delete_checkpoint_runs(self, namespace: str, run_ids: list[str]) -> int:
        """Delete the checkpoints (and their writes) of the runs."""
        return self._checkpoints.delete_checkpoint_runs(namespace, run_ids)

    def copy_checkpoint_thread(self, namespace: str, source: str, target: str) -> int:
        """Copy every checkpoint, blob and write of ``source`` to ``target``."""
        return self._checkpoints.copy_checkpoint_thread(namespace, source, target)

    def latest_checkpoints(
        self, namespace: str, thread_id: str, limit: int
    ) -> list[CheckpointSummary]:
        """Return a thread's newest checkpoints, newest first."""
        return self._checkpoints.latest_checkpoints(namespace, thread_id, limit)

    def iter_checkpoint_lines(self, namespace: str | None) -> Iterator[dict[str, Any]]:
        """Yield every checkpoint row as an export line (one namespace, or all)."""
        return iter(self._checkpoints.iter_checkpoint_lines(namespace))

    def import_checkpoint_lines(self, lines: list[dict[str, Any]]) -> int:
        """Insert checked checkpoint export lines in one transaction (rows present kept)."""
        return self._checkpoints.import_checkpoint_lines(lines)

    def prune_checkpoints(self, namespace: str, thread_ids: list[str]) -> int:
        """Keep only the newest checkpoint of each (thread, checkpoint namespace)."""
        return self._checkpoints.prune_checkpoints(namespace, thread_ids)

    # ------------------------------------------------------------------ service keys

    def insert_key(self, row: KeyRow, only_if_no_admin: bool = False) -> bool:
        """Write a key (see ``KeyStore.insert_key``)."""
        return self._keys.insert_key(row, only_if_no_admin)

    def get_key(self, key_id: str) -> KeyRow | None:
        """Return the key with this id, or None."""
        return self._keys.get_key(key_id)

    def list_keys(self) -> list[KeyRow]:
        """Return every key, oldest first."""
        return self._keys.list_keys()

    def keys_version(self) -> int | None:
        """The file's ``data_version``: it moves on every commit of any other connection,
        a key's among them (see ``KeyStore.keys_version``)."""
        return self._db.data_version()

    def revoke_key(self, key_id: str, at: int) -> KeyRow | None:
        """Mark a key revoked; return it as it now is (None when unknown)."""
        return self._keys.revoke_key(key_id, at)

    def append_audit(self, row: AuditRow) -> int:
        """Append one admin audit entry; return its sequence number."""
        return self._keys.append_audit(row)

    def list_audit(self, limit: int, before: int | None = None) -> list[AuditRow]:
        """Return audit entries newest first, older than seq ``before``."""
        return self._keys.list_audit(limit, before)

    # ------------------------------------------------------------------ IdempotencyStore

    def claim_idempotency(self, key: str, now: int, lease_until: int) -> IdempotencyRow | None:
        """Claim an idempotency key (see ``IdempotencyStore.claim_idempotency``)."""
        return self._idempotency.claim_idempotency(key, now, lease_until)

    def get_idempotency(self, key: str) -> IdempotencyRow | None:
        """The idempotency key's row, or None."""
        return self._idempotency.get_idempotency(key)

    def finish_idempotency(
        self, key: str, status: int, headers: str, body: bytes, expires_at: int
    ) -> None:
        """Keep the answer of the request that claimed ``key``."""
        self._idempotency.finish_idempotency(key, status, headers, body, expires_at)

    def release_idempotency(self, key: str) -> None:
        """Drop a running claim of ``key``."""
        self._idempotency.release_idempotency(key)

    def purge_idempotency(self, now: int) -> int:
        """Delete the idempotency rows expired at ``now``."""
        return self._idempotency.purge_idempotency(now)

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Persist the vector index sidecar and close this process's connections."""
        self._keywords.stop()
        self._db.close(persist=self._persist)

    def _persist(self) -> None:
        """Save the derived indexes beside the file (the owning process only)."""
        self._vectors.persist()
        self._keywords.persist()

    # ------------------------------------------------------------------ archive (consolidation)

    def archive_records(self, namespace: str, items: list[ArchiveItem]) -> list[str]:
        """Take records out of the live set (see ``Archive.archive_records``)."""
        return self._archive.archive_records(namespace, items)

    def update_records(
        self, namespace: str, updates: list[RecordUpdate]
    ) -> list[MemoryRecord | None]:
        """Apply updates in one transaction (see ``Archive.update_records``)."""
        return self._records.update_records(namespace, updates)

    def archived(self, namespace: str, ids: list[str]) -> list[ArchivedRow]:
        """Return the archive rows of these ids."""
        return self._archive.archived(namespace, ids)

    def list_archived(
        self, namespace: str, user_id: str | None, merged_into: str | None, limit: int
    ) -> list[ArchivedRow]:
        """Return archive rows, newest first."""
        return self._archive.list_archived(namespace, user_id, merged_into, limit)

    def drop_archived(self, namespace: str, ids: list[str]) -> int:
        """Delete archive rows of restored records."""
        return self._archive.drop_archived(namespace, ids)

    def put_archived(self, rows: list[ArchivedRow]) -> int:
        """Insert exported archive rows unless present."""
        return self._archive.put_archived(rows)

    def iter_archived(self, namespace: str | None) -> list[ArchivedRow]:
        """Every archive row of a namespace (or all), for export."""
        return self._archive.iter_archived(namespace)


if TYPE_CHECKING:

    def _roles(
        s: SQLiteStore,
    ) -> tuple[
        Store,
        Maintenance,
        Transfer,
        BulkLoader,
        Checkpoints,
        KeyStore,
        EntityStore,
        ArchiveRole,
        IdempotencyStore,
    ]:
        """SQLiteStore fills every role it claims (a missing method fails mypy here)."""
        return s, s, s, s, s, s, s, s, s
