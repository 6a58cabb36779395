"""The PostgreSQL store: the same protocols as the SQLite store, on PostgreSQL + pgvector.

Everything a write touches (record, chunks with their vector and tsvector, history, events)
is one transaction on one pooled connection, rolled back on any exception. Deduplication is
the same unique index as in SQLite with ``INSERT … ON CONFLICT DO NOTHING RETURNING``, so
concurrent adds from several processes or machines dedupe in the database. Every statement
is scoped by ``namespace``, and every index but the HNSW one leads with it.

:class:`PostgresStore` is a composition: one :class:`~engramdb.stores.postgres.connection.Database`
(pools, transactions, faults, the replica) shared by parts with one job each (records,
search, threads, admin, backup, transfer, bulk loads, checkpoints, keys...; each module's
job is listed in docs/architecture.md), and every public method hands its call to one (the
search methods from :class:`~engramdb.stores.postgres.search_calls.SearchCalls`, a mixin).

The retry of :func:`~engramdb.stores.postgres.faults.retried` sits here, on the public
methods whose call is one transaction or a read (a multi-transaction or streaming call is
never retried whole); the parts below run inside it.
"""

from __future__ import annotations

import functools
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
from engramdb.stores.postgres.admin import Admin
from engramdb.stores.postgres.archive import Archive
from engramdb.stores.postgres.backup import Backup
from engramdb.stores.postgres.bulk import BulkLoad
from engramdb.stores.postgres.checkpoints import CheckpointTables
from engramdb.stores.postgres.connection import Database
from engramdb.stores.postgres.entities import Entities
from engramdb.stores.postgres.faults import retried
from engramdb.stores.postgres.keys_table import KeyTable
from engramdb.stores.postgres.meta import Meta
from engramdb.stores.postgres.records import Records
from engramdb.stores.postgres.reembed import Reembed
from engramdb.stores.postgres.search import (
    EXACT_USER_MAX_ROWS,
    KEYWORD_INDEX_MIN_ROWS,
    ScopeSizes,
    Search,
)
from engramdb.stores.postgres.search_calls import SearchCalls
from engramdb.stores.postgres.threads import Threads
from engramdb.stores.postgres.transfer import Transfer
from engramdb.stores.postgres.vectors import VectorIndexes
from engramdb.stores.prepared import (
    AliasJoin,
    ArchivedRow,
    ArchiveItem,
    OnError,
    PendingText,
    PreparedEvent,
    PreparedRecord,
    RecordChanges,
    RecordUpdate,
    ThreadTurn,
)

if TYPE_CHECKING:
    from engramdb.stores import base

__all__ = ["PostgresStore"]


class PostgresStore(SearchCalls):
    """The PostgreSQL store (see module docstring).

    Example::

        store = PostgresStore("postgresql://app@db/engram", pool_max=20)
    """

    backend = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        auto_migrate: bool = True,
        pool_min: int = 1,
        pool_max: int = 10,
        pool_timeout_s: float = 30.0,
        ann_min_rows: int = 20_000,
        ann_min_user_rows: int = EXACT_USER_MAX_ROWS,
        namespace_max_records: int = 0,
        hnsw_m: int = 16,
        hnsw_ef_construction: int = 100,
        hnsw_ef_search: int = 96,
        retry_s: float = 10.0,
        connect_timeout_s: float = 5.0,
        io_timeout_s: float = 30.0,
        read_url: str | None = None,
        read_max_lag_s: float = 30.0,
        keyword_index_min_rows: int = KEYWORD_INDEX_MIN_ROWS,
    ) -> None:
        self.url = url
        self._db = Database(
            url,
            pool_min=pool_min,
            pool_max=pool_max,
            pool_timeout_s=pool_timeout_s,
            hnsw_ef_search=hnsw_ef_search,
            retry_s=retry_s,
            connect_timeout_s=connect_timeout_s,
            io_timeout_s=io_timeout_s,
            read_url=read_url,
            read_max_lag_s=read_max_lag_s,
        )
        # What ``retried`` reads from the store it wraps.
        self.retry_policy = self._db.retry_policy
        self.breaker = self._db.breaker
        indexes = VectorIndexes(hnsw_m, hnsw_ef_construction)
        scopes = ScopeSizes()
        self._meta = Meta(self._db, indexes)
        self._records = Records(self._db, namespace_max_records)
        self._search = Search(
            self._db, scopes, ann_min_rows, ann_min_user_rows, keyword_index_min_rows
        )
        self._threads = Threads(self._db)
        self._admin = Admin(self._db, indexes)
        self._backup = Backup(self._db, indexes, restored=scopes.clear)
        self._transfer = Transfer(self._db)
        self._bulk = BulkLoad(self._db, indexes)
        self._reembed = Reembed(self._db, indexes)
        self._checkpoints = CheckpointTables(self._db)
        self._keys = KeyTable(self._db)
        self._idempotency = IdempotencyTable(self._db, "%s")
        self._entities = Entities(self._db)
        self._archive = Archive(self._db)
        self._db.open(auto_migrate, initialise=self._meta.init)

    # ------------------------------------------------------------------ Store: the store itself

    def health(self) -> dict[str, Any]:
        """Check that the server answers; report the circuit breaker's state either way."""
        return self._db.health(self.backend, functools.partial(self.count_records, "default", None))

    def last_write_lsn(self) -> str | None:
        """The WAL position of this store's last committed write (None without a replica)."""
        return self._db.last_write_lsn()

    @retried
    def embedder_info(self) -> tuple[str, int] | None:
        """Return the (name, dim) recorded in the store, if any."""
        return self._meta.embedder_info()

    @retried
    def check_embedder(self, name: str, dim: int) -> None:
        """Record the embedder on first use; refuse a different one (EmbedderMismatchError)."""
        self._meta.check_embedder(name, dim)

    @retried
    def store_id(self) -> str:
        """Return this store's identity (kept by ``restore``)."""
        return self._meta.store_id()

    def close(self) -> None:
        """Close this process's pools (an inherited one is abandoned, never closed)."""
        self._search.close()
        self._db.close()

    # ------------------------------------------------------------------ EntityStore: derived

    @retried
    def extraction_pending(
        self, namespace: str | None, user_id: str | None, limit: int
    ) -> list[PendingText]:
        """Return up to ``limit`` queued records (oldest first), of one scope when given; failed
        ones are not pending (``retry_failed_extractions`` queues them again)."""
        return self._entities.extraction_pending(namespace, user_id, limit)

    @retried
    def extraction_counts(self, namespace: str | None) -> dict[str, int]:
        """Return ``pending``, ``failed``, ``entities``, ``relations``, ``mentions`` of a namespace
        (or of the whole store)."""
        return self._entities.extraction_counts(namespace)

    @retried
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

    @retried
    def fail_extraction(self, item: PendingText, error: str) -> None:
        """Park a record whose extraction failed (kept for ``doctor --repair``)."""
        self._entities.fail_extraction(item, error)

    @retried
    def retry_failed_extractions(self) -> int:
        """Queue every failed extraction again; return how many."""
        return self._entities.retry_failed_extractions()

    @retried
    def unlink_entity(self, namespace: str, entity_id: int) -> int | None:
        """Separate an alias from its canonical entity, logged; return that entity's id (None: it
        was not joined)."""
        return self._entities.unlink_entity(namespace, entity_id)

    @retried
    def entity_links(self, namespace: str, entity_id: int) -> list[dict[str, object]]:
        """Return the alias log of an entity and of those joined to it, oldest first."""
        return self._entities.entity_links(namespace, entity_id)

    @retried
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

    @retried
    def get_entity(self, namespace: str, entity_id: int, mentions: int) -> Entity | None:
        """Return one canonical entity (an alias id leads to it), up to ``mentions`` mentions."""
        return self._entities.get_entity(namespace, entity_id, mentions)

    @retried
    def entity_graph(
        self, namespace: str, entity_id: int, depth: int, types: list[str] | None
    ) -> EntityGraph | None:
        """Return the entities and relations within ``depth`` hops of an entity (None: no such
        entity)."""
        return self._entities.entity_graph(namespace, entity_id, depth, types)

    @retried
    def records_about(self, namespace: str, entity_id: int, limit: int) -> list[str]:
        """Return the ids of the records that mention an entity or its aliases, newest first."""
        return self._entities.records_about(namespace, entity_id, limit)

    @retried
    def record_entities(self, namespace: str, record_ids: list[str]) -> dict[str, EntityGraph]:
        """Return each record's canonical entities and the relations it states."""
        return self._entities.record_entities(namespace, record_ids)

    @retried
    def answer_kinds(self, namespace: str, record_ids: list[str]) -> dict[str, int]:
        """Return the answer kinds of those of ``record_ids`` that hold any."""
        return self._entities.answer_kinds(namespace, record_ids)

    # ------------------------------------------------------------------ Store: records

    @retried
    def add_records(
        self,
        namespace: str,
        items: list[PreparedRecord],
        on_error: OnError,
        events: list[PreparedEvent] | None = None,
    ) -> list[AddResult]:
        """Insert records (and events) in one transaction, deduplicating in the database.

        Raises:
            CommitUnknownError: the connection was lost after COMMIT was sent; its
                ``details["ids"]`` are the batch's ids, safe to add again (idempotent add).
        """
        results = self._records.add_records(namespace, items, on_error, events)
        self._search.prune_keyword_feed()  # writers keep the feed short too
        return results

    @retried
    def update_record(
        self,
        namespace: str,
        record_id: str,
        changes: RecordChanges,
        expected_version: int | None,
    ) -> MemoryRecord:
        """Apply changes in one transaction, bump the version and write a history row."""
        return self._records.update_record(namespace, record_id, changes, expected_version)

    @retried
    def delete_records(self, namespace: str, ids: list[str] | None, node: Node | None) -> int:
        """Delete by ids or filter from every index in one transaction, leaving history."""
        return self._records.delete_records(namespace, ids, node)

    @retried
    def get_records(self, namespace: str, ids: list[str]) -> list[MemoryRecord]:
        """Return the records with these ids in the order asked; missing ones omitted."""
        return self._records.get_records(namespace, ids)

    @retried
    def list_records(
        self, namespace: str, node: Node | None, limit: int, after: str | None, descending: bool
    ) -> list[MemoryRecord]:
        """Return one keyset page of matching records ordered by id."""
        return self._records.list_records(namespace, node, limit, after, descending)

    @retried
    def count_records(self, namespace: str, node: Node | None) -> int:
        """Count matching records."""
        return self._records.count_records(namespace, node)

    @retried
    def history(self, namespace: str, record_id: str) -> list[HistoryEntry]:
        """Return every change of a record, oldest first."""
        return self._records.history(namespace, record_id)

    @retried
    def generation(self, namespace: str) -> int:
        """Return the namespace's write generation (see ``Store.generation``)."""
        return self._records.generation(namespace)

    @retried
    def user_ids(self, namespace: str, now: int) -> list[str]:
        """Return the distinct user scopes of live records (see ``Store.user_ids``)."""
        return self._records.user_ids(namespace, now)

    @retried
    def next_expiry(self, namespace: str, after: int) -> int | None:
        """Return the earliest ``expires_at`` after ``after`` (see ``Store.next_expiry``)."""
        return self._records.next_expiry(namespace, after)

    # ------------------------------------------------------------------ Store: threads

    @retried
    def thread_turns(
        self, namespace: str, thread_id: str, start: int, end: int, margin: int
    ) -> list[ThreadTurn]:
        """Return a thread's messages in ``[start, end]`` plus ``margin`` on each side."""
        return self._threads.thread_turns(namespace, thread_id, start, end, margin)

    @retried
    def set_index_texts(self, namespace: str, texts: list[tuple[int, str]]) -> None:
        """Rewrite the keyword-index text of chunks (skipping chunks deleted meanwhile)."""
        self._threads.set_index_texts(namespace, texts)

    @retried
    def append_events(self, namespace: str, events: list[PreparedEvent]) -> list[Event]:
        """Append events in order in one transaction."""
        return self._threads.append_events(namespace, events)

    @retried
    def list_events(
        self, namespace: str, thread_id: str, since: int | None, limit: int
    ) -> list[Event]:
        """Return a thread's events in append order, optionally from a time on."""
        return self._threads.list_events(namespace, thread_id, since, limit)

    @retried
    def get_slots(self, namespace: str, thread_id: str) -> Slots:
        """Return the thread's slots (an empty map at version 0 when never set)."""
        return self._threads.get_slots(namespace, thread_id)

    @retried
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

    # ------------------------------------------------------------------ Store + Maintenance

    def forget(
        self,
        namespace: str,
        user_id: str | None,
        thread_id: str | None,
        everything: bool,
        compact: bool = False,
    ) -> dict[str, int]:
        """Erase records, history, events and slots of a user, a thread or a namespace."""
        return self._admin.forget(namespace, user_id, thread_id, everything, compact)

    @retried
    def namespaces(self) -> dict[str, int]:
        """Return record counts per namespace (namespaces with only events count 0)."""
        return self._admin.namespaces()

    @retried
    def stats(self, namespace: str | None = None) -> dict[str, Any]:
        """Return counts (for one namespace, or all), the database size, and the state of
        this process's keyword index."""
        return self._admin.stats(namespace) | self._search.keyword_stats()

    def build_keyword_index(self, timeout_s: float) -> bool:
        """Start building this process's keyword index (when the store is large enough)
        and wait up to ``timeout_s`` for it; whether searches now rank through it."""
        return self._search.build_keyword_index(timeout_s)

    def doctor(self, repair: bool = False) -> dict[str, Any]:
        """Check that every derived index agrees with the tables (``repair``: rebuild them)."""
        return self._admin.doctor(repair)

    def backup(self, path: Path) -> None:
        """Write a consistent online snapshot: every table ``COPY``-ed from one snapshot."""
        self._backup.backup(path)

    def restore(self, path: Path) -> None:
        """Replace the store's whole content with a backup, in one transaction."""
        self._backup.restore(path)

    def reembed_begin(self, target: str) -> None:
        """Start (or resume) a re-embedding towards ``target``; a new target starts over."""
        self._reembed.begin(target)

    @retried
    def reembed_pending(self, limit: int) -> list[tuple[int, str]]:
        """Return up to ``limit`` chunks without a new vector yet: (chunk id, chunk text)."""
        return self._reembed.pending(limit)

    def reembed_put(self, rows: list[tuple[int, np.ndarray]]) -> None:
        """Store new vectors for chunks (committed, so an interrupted run resumes here)."""
        self._reembed.put(rows)

    def reembed_finish(self, name: str, dim: int, embed: Callable[[list[str]], np.ndarray]) -> None:
        """Switch every chunk to its new vector and the store to the new embedder, atomically."""
        self._reembed.finish(name, dim, embed)

    # ------------------------------------------------------------------ Transfer

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
        """Copy history rows and ``meta`` values in one transaction; return how many were new."""
        return self._bulk.load_history(rows, meta)

    # ------------------------------------------------------------------ BulkLoader

    def load_records(
        self, batch: list[dict[str, Any]], meta: dict[str, str | None] | None = None
    ) -> dict[str, int]:
        """Bulk-insert exported records through COPY, and ``meta`` values, in one transaction."""
        return self._bulk.load_records(batch, meta)

    @retried
    def existing_digests(self, namespace: str, ids: list[str]) -> dict[str, tuple[int, str]]:
        """Map each of ``ids`` already stored in ``namespace`` to its (version, content hash)."""
        return self._bulk.existing_digests(namespace, ids)

    def exclusive(self, name: str) -> AbstractContextManager[None]:
        """Hold a session advisory lock named ``name`` (per schema) for the ``with`` body."""
        return self._bulk.exclusive(name)

    @retried
    def settle_checkpoints(self) -> None:
        """Wait until every write carrying a resume checkpoint has committed or rolled back."""
        self._bulk.settle_checkpoints()

    @retried
    def read_meta(self, key: str) -> str | None:
        """Return one ``meta`` value (None when unset)."""
        return self._meta.read(key)

    @retried
    def write_meta(self, key: str, value: str | None) -> None:
        """Set (or, with None, remove) one ``meta`` value."""
        self._meta.write(key, value)

    @retried
    def read_meta_prefix(self, prefix: str) -> dict[str, str]:
        """Every ``meta`` value whose key starts with ``prefix`` (a migration's batch log)."""
        return self._meta.read_prefix(prefix)

    @retried
    def delete_meta_prefix(self, prefix: str) -> int:
        """Remove every ``meta`` value whose key starts with ``prefix``; return how many."""
        return self._meta.delete_prefix(prefix)

    @property
    def pool_max(self) -> int:
        """The most pooled connections this store opens (concurrent loaders stay within)."""
        return self._db.pool_max

    def vector_index_exists(self) -> bool:
        """Whether the HNSW index on ``chunks.embedding`` exists."""
        return self._bulk.vector_index_exists()

    def drop_vector_index(self) -> None:
        """Drop the vector indexes before a bulk load into an empty store (rebuilt after)."""
        self._bulk.drop_vector_index()

    def build_vector_index(self, maintenance_work_mem: str = BUILD_MEMORY) -> None:
        """(Re)build the vector indexes in one pass over the loaded rows, then ANALYZE."""
        self._bulk.build_vector_index(maintenance_work_mem)

    # ------------------------------------------------------------------ thread checkpoints

    @retried
    def put_checkpoint(
        self, namespace: str, row: CheckpointRow, blobs: list[CheckpointBlob]
    ) -> None:
        """Save the blobs (existing versions kept) and the checkpoint (replaced) together."""
        self._checkpoints.put_checkpoint(namespace, row, blobs)

    @retried
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

    @retried
    def get_checkpoint(
        self, namespace: str, thread_id: str, checkpoint_ns: str, checkpoint_id: str | None
    ) -> CheckpointRow | None:
        """Return one checkpoint (the thread's newest without an id) in one round trip."""
        return self._checkpoints.get_checkpoint(namespace, thread_id, checkpoint_ns, checkpoint_id)

    @retried
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

    @retried
    def delete_checkpoint_threads(self, namespace: str, thread_ids: list[str]) -> int:
        """Delete every checkpoint, blob and write of the threads."""
        return self._checkpoints.delete_checkpoint_threads(namespace, thread_ids)

    @retried
    def delete_checkpoint_runs(self, namespace: str, run_ids: list[str]) -> int:
        """Delete the checkpoints (and their writes) of the runs."""
        return self._checkpoints.delete_checkpoint_runs(namespace, run_ids)

    @retried
    def copy_checkpoint_thread(self, namespace: str, source: str, target: str) -> int:
        """Copy every checkpoint, blob and write of ``source`` to ``target``."""
        return self._checkpoints.copy_checkpoint_thread(namespace, source, target)

    @retried
    def latest_checkpoints(
        self, namespace: str, thread_id: str, limit: int
    ) -> list[CheckpointSummary]:
        """Return a thread's newest checkpoints, newest first."""
        return self._checkpoints.latest_checkpoints(namespace, thread_id, limit)

    @retried
    def iter_checkpoint_lines(self, namespace: str | None) -> Iterator[dict[str, Any]]:
        """Yield every checkpoint row as an export line (one namespace, or all)."""
        return iter(self._checkpoints.iter_checkpoint_lines(namespace))

    @retried
    def import_checkpoint_lines(self, lines: list[dict[str, Any]]) -> int:
        """Insert checked checkpoint export lines in one transaction (rows present kept)."""
        return self._checkpoints.import_checkpoint_lines(lines)

    @retried
    def prune_checkpoints(self, namespace: str, thread_ids: list[str]) -> int:
        """Keep only the newest checkpoint of each (thread, checkpoint namespace)."""
        return self._checkpoints.prune_checkpoints(namespace, thread_ids)

    # ------------------------------------------------------------------ KeyStore

    @retried
    def insert_key(self, row: KeyRow, only_if_no_admin: bool = False) -> bool:
        """Write a key (see ``KeyStore.insert_key``)."""
        return self._keys.insert_key(row, only_if_no_admin)

    @retried
    def get_key(self, key_id: str) -> KeyRow | None:
        """Return the key with this id, or None (read on the primary)."""
        return self._keys.get_key(key_id)

    @retried
    def list_keys(self) -> list[KeyRow]:
        """Return every key, oldest first."""
        return self._keys.list_keys()

    def keys_version(self) -> int | None:
        """None: no check cheaper than reading the key is known here, so nothing is cached
        (see ``KeyStore.keys_version``)."""
        return None

    @retried
    def revoke_key(self, key_id: str, at: int) -> KeyRow | None:
        """Mark a key revoked; return it as it now is (None when unknown)."""
        return self._keys.revoke_key(key_id, at)

    @retried
    def append_audit(self, row: AuditRow) -> int:
        """Append one admin audit entry; return its sequence number."""
        return self._keys.append_audit(row)

    @retried
    def list_audit(self, limit: int, before: int | None = None) -> list[AuditRow]:
        """Return audit entries newest first, older than seq ``before``."""
        return self._keys.list_audit(limit, before)

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

    # ------------------------------------------------------------------ IdempotencyStore

    @retried
    def claim_idempotency(self, key: str, now: int, lease_until: int) -> IdempotencyRow | None:
        """Claim an idempotency key (see ``IdempotencyStore.claim_idempotency``)."""
        return self._idempotency.claim_idempotency(key, now, lease_until)

    @retried
    def get_idempotency(self, key: str) -> IdempotencyRow | None:
        """The idempotency key's row, or None."""
        return self._idempotency.get_idempotency(key)

    @retried
    def finish_idempotency(
        self, key: str, status: int, headers: str, body: bytes, expires_at: int
    ) -> None:
        """Keep the answer of the request that claimed ``key``."""
        self._idempotency.finish_idempotency(key, status, headers, body, expires_at)

    @retried
    def release_idempotency(self, key: str) -> None:
        """Drop a running claim of ``key``."""
        self._idempotency.release_idempotency(key)

    @retried
    def purge_idempotency(self, now: int) -> int:
        """Delete the idempotency rows expired at ``now``."""
        return self._idempotency.purge_idempotency(now)


if TYPE_CHECKING:

    def _roles(
        s: PostgresStore,
    ) -> tuple[
        base.Store,
        base.Maintenance,
        base.Transfer,
        base.BulkLoader,
        base.Checkpoints,
        base.KeyStore,
        base.EntityStore,
        base.Archive,
        base.IdempotencyStore,
    ]:
        """mypy proves here that the store fills every role structurally."""
        return s, s, s, s, s, s, s, s, s
