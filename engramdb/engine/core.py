"""The engine: one implementation behind ``Memory``, ``AsyncMemory``, REST and the CLI.

``Engine`` is the one object the facades call. It owns a store, the cache tier over it and
an embedder, and hands each call to the part whose job it is:

* :mod:`~engramdb.engine.write` adds, changes and deletes records (validate -> chunk ->
  embed -> one store transaction), with :mod:`~engramdb.engine.prepare` and
  :mod:`~engramdb.engine.context_index`;
* :mod:`~engramdb.engine.records` reads records, pages, counts and history;
* :mod:`~engramdb.engine.search` retrieves (vector + BM25 candidates -> fuse -> page);
* :mod:`~engramdb.engine.threads` keeps thread events and slots;
* :mod:`~engramdb.engine.admin` makes the whole-store calls (stats, doctor, backup,
  export, import, re-embedding, health, erasure);
* :mod:`~engramdb.engine.checkpoints` keeps agent frameworks' thread checkpoints.
* :mod:`~engramdb.engine.entities` extracts entities and relations off the write path and
  answers the entity reads (each first catching up its scope).
* :mod:`~engramdb.engine.consolidation` merges near-duplicates, expires, archives by
  retention and summarizes long threads (:mod:`~engramdb.engine.summaries`).

The parts share one :class:`~engramdb.engine.encoder.Encoder`, so a re-embedding switches
the embedder for all of them at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from engramdb.cache import Cache, open_cache
from engramdb.config import Settings
from engramdb.deadline import read_budget
from engramdb.embedders.base import Embedder, resolve_embedder
from engramdb.engine.admin import Admin
from engramdb.engine.checkpoints import ThreadCheckpoints
from engramdb.engine.consolidation import Consolidator
from engramdb.engine.encoder import Encoder
from engramdb.engine.entities import EntityIndex
from engramdb.engine.facts import check_spec as check_facts
from engramdb.engine.records import Records
from engramdb.engine.search import Mode, Searcher
from engramdb.engine.summaries import ThreadSummaries
from engramdb.engine.threads import Threads
from engramdb.engine.write import Writer
from engramdb.errors import NotFoundError, ValidationError
from engramdb.extract.facts import FactExtractor
from engramdb.models import (
    AddResult,
    ArchivedRecord,
    ConsolidationReport,
    Entity,
    EntityGraph,
    Event,
    HistoryEntry,
    MemoryRecord,
    RecordPage,
    SearchPage,
    Slots,
    Snapshot,
)
from engramdb.query.filters import Node
from engramdb.stores import open_store
from engramdb.stores.base import Checkpoints, Maintenance, Store, Transfer
from engramdb.timeutil import now_us


class Engine:
    """Validation, chunking, embedding, retrieval and fusion over one store."""

    def __init__(
        self,
        settings: Settings,
        embedder: Embedder,
        store: Store,
        facts: str | FactExtractor | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self._encoder = Encoder(settings, embedder)
        store.check_embedder(embedder.name, embedder.dim)
        url = settings.cache_url.get_secret_value() if settings.cache_url else None
        # The one place the optional Redis tier is wired: Memory, AsyncMemory, REST and the
        # CLI all read through it (records by id, slots, thread events, repeated searches).
        self.cache: Cache = open_cache(
            url,
            store,
            prefix=settings.cache_prefix,
            ttl_s=settings.cache_ttl_s,
            search_ttl_s=settings.cache_search_ttl_s,
            timeout_ms=settings.cache_timeout_ms,
        )
        self._records = Records(settings, store, self.cache)
        self._writer = Writer(settings, store, self.cache, self._encoder, self._records, facts)
        self._searcher = Searcher(settings, store, self.cache, self._encoder)
        self._threads = Threads(settings, store, self.cache)
        self._admin = Admin(settings, store, self.cache, self._encoder)
        self._entities = EntityIndex(settings, store)
        self._writer.on_written = self._entities.written
        self.summaries = ThreadSummaries(settings, self._encoder, self.add, self.update)
        self._consolidator = Consolidator(
            settings, store, self.cache, self._encoder, self._records, self.summaries
        )

    @classmethod
    def open(
        cls,
        settings: Settings,
        embedder: str | Embedder | None,
        facts: str | FactExtractor | None = None,
    ) -> Engine:
        """Resolve the embedder, open the store at ``settings.url`` and build the engine.

        ``facts``: the fact extractor of ``add_messages`` (a name or a FactExtractor
        object; None: ``settings.facts``), checked before the store opens.

        A store opened here is closed again when the engine cannot be built over it (its
        data was made with another embedder, the cache URL is invalid), so a failed open
        leaves nothing behind.
        """
        emb = resolve_embedder(embedder, settings)
        check_facts(facts)  # a bad value fails before the store opens
        store = open_store(settings.url, settings)
        try:
            return cls(settings, emb, store, facts)
        except BaseException:
            store.close()
            raise

    def close(self) -> None:
        """Stop extraction, release the cache's connections, then persist derived indexes and
        close the store."""
        self._entities.close()
        self.cache.close()
        self.store.close()

    def checkpoints(self, namespace: str) -> ThreadCheckpoints:
        """The thread-checkpoint tables of ``namespace`` (LangGraph's checkpointer).

        Raises:
            StoreError: the store keeps no checkpoints.
        """
        if not isinstance(self.store, Checkpoints):
            from engramdb.errors import StoreError

            raise StoreError(f"the {self.store.backend} store keeps no thread checkpoints")
        return ThreadCheckpoints(self.store, namespace)

    # ------------------------------------------------------------------ the embedder

    @property
    def embedder(self) -> Embedder:
        """The embedder in use (``reembed`` switches it)."""
        return self._encoder.embedder

    @embedder.setter
    def embedder(self, embedder: Embedder) -> None:
        self._encoder.embedder = embedder

    @property
    def max_chunk_tokens(self) -> int:
        """The chunk size: the setting, or the embedder's window."""
        return self._encoder.max_chunk_tokens

    def count_tokens(self, text: str) -> int:
        """Measure text with the embedder's tokenizer (see :meth:`Encoder.count_tokens`)."""
        return self._encoder.count_tokens(text)

    def embed(self, texts: Sequence[str], *, query: bool = False) -> np.ndarray:
        """Embed texts in batches, checking the embedder's output (see :class:`Encoder`)."""
        return self._encoder.embed(texts, query=query)

    # ------------------------------------------------------------------ records

    def add(
        self,
        namespace: str,
        items: str | dict[str, Any] | Sequence[str | dict[str, Any]],
        defaults: dict[str, Any],
        on_error: Literal["abort", "skip"] = "abort",
    ) -> list[AddResult]:
        """Validate, chunk, embed and store records in one transaction."""
        results = self._writer.add(namespace, items, defaults, on_error)
        self._entities.written(namespace)
        return results

    def add_messages(
        self,
        namespace: str,
        thread_id: str,
        messages: Sequence[dict[str, Any]],
        user_id: str | None,
        agent_id: str | None,
        remember: bool,
    ) -> list[AddResult]:
        """Append conversation turns as events and (optionally) as searchable records."""
        # The writer wakes the entity extraction for the messages and again for any facts.
        return self._writer.add_messages(
            namespace, thread_id, messages, user_id, agent_id, remember
        )

    def get(self, namespace: str, record_id: str) -> MemoryRecord:
        """Return one record (live, or archived by consolidation) or raise NotFoundError."""
        try:
            return self._records.get(namespace, record_id)
        except NotFoundError:
            archived = self._consolidator.get_archived(namespace, record_id)
            if archived is None:
                raise
            return archived

    def get_many(self, namespace: str, ids: Sequence[str]) -> list[MemoryRecord]:
        """Return the records that exist among ``ids``, in the order given."""
        return self._records.get_many(namespace, ids)

    def build_filter(
        self,
        filters: dict[str, Any] | None,
        shortcuts: dict[str, Any],
        valid_at: datetime | str | None,
        include_expired: bool,
    ) -> Node | None:
        """Combine a filter object, scope shortcuts, valid_at and the expiry rule into one tree."""
        return self._records.build_filter(filters, shortcuts, valid_at, include_expired)

    def list_page(
        self, namespace: str, node: Node | None, limit: int, cursor: str | None, descending: bool
    ) -> RecordPage:
        """Return a keyset page ordered by id (time-ordered ids: oldest first by default)."""
        with read_budget(self.settings.search_timeout_ms):
            return self._records.list_page(namespace, node, limit, cursor, descending)

    def count(self, namespace: str, node: Node | None) -> int:
        """Count matching records."""
        with read_budget(self.settings.search_timeout_ms):
            return self._records.count(namespace, node)

    def update(
        self,
        namespace: str,
        record_id: str,
        fields: dict[str, Any],
        expected_version: int | None,
    ) -> MemoryRecord:
        """Change a record: re-embeds when the text changes; tags change atomically."""
        record = self._writer.update(namespace, record_id, fields, expected_version)
        if fields.get("text") is not None:
            self._entities.written(namespace)
        return record

    def delete(self, namespace: str, record_id: str) -> None:
        """Delete one record (tombstone in history) or raise NotFoundError."""
        self._writer.delete(namespace, record_id)

    def delete_all(self, namespace: str, node: Node | None, everything: bool) -> int:
        """Delete every record matching the filter; an empty filter needs ``everything``."""
        return self._writer.delete_all(namespace, node, everything)

    def history(self, namespace: str, record_id: str) -> list[HistoryEntry]:
        """Return the change history of a record (also after it was deleted)."""
        return self._records.history(namespace, record_id)

    # ------------------------------------------------------------------ search

    def search(
        self,
        namespace: str,
        query: str,
        *,
        top_k: int,
        node: Node | None,
        user_id: str | None,
        mode: Mode,
        threshold: float | None,
        offset: int,
        cursor: str | None,
        query_vector: np.ndarray | None = None,
        include_entities: bool = False,
    ) -> SearchPage:
        """Hybrid / vector / keyword search with fusion, threshold and paging.

        Bounded by ``search_timeout_ms`` (see :mod:`engramdb.deadline`).
        ``include_entities`` fills each hit's ``entities`` (its entities and relations).
        """
        with read_budget(self.settings.search_timeout_ms):
            page = self._searcher.search(
                namespace,
                query,
                top_k=top_k,
                node=node,
                user_id=user_id,
                mode=mode,
                threshold=threshold,
                offset=offset,
                cursor=cursor,
                query_vector=query_vector,
            )
        if include_entities is not True:
            if include_entities is not False:
                raise ValidationError("include_entities: true or false", field="include_entities")
            return page
        graphs = self._entities.record_entities(
            namespace, user_id, [h.record.id for h in page.hits]
        )
        hits = [replace(h, entities=graphs.get(h.record.id, EntityGraph())) for h in page.hits]
        return SearchPage(hits, page.next_cursor)

    # ------------------------------------------------------------------ entities

    def entities(
        self,
        namespace: str,
        query: str | None,
        type_: str | None,
        user_id: str | None,
        limit: int,
    ) -> list[Entity]:
        """Canonical entities of a namespace (see :meth:`EntityIndex.entities`)."""
        return self._entities.entities(namespace, query, type_, user_id, limit)

    def entity(self, namespace: str, entity_id: int) -> Entity:
        """One entity with its mentions."""
        return self._entities.entity(namespace, entity_id)

    def relations(
        self, namespace: str, entity_id: int, depth: int, types: list[str] | None
    ) -> EntityGraph:
        """The subgraph around an entity."""
        return self._entities.relations(namespace, entity_id, depth, types)

    def records_about(self, namespace: str, entity_id: int, limit: int) -> list[MemoryRecord]:
        """The records that mention an entity, newest first."""
        ids = self._entities.records_about(namespace, entity_id, limit)
        return self._records.get_many(namespace, ids)

    def unlink_entity(self, namespace: str, entity_id: int) -> Entity:
        """Undo the alias join of an entity."""
        return self._entities.unlink(namespace, entity_id)

    def entity_history(self, namespace: str, entity_id: int) -> list[dict[str, Any]]:
        """The alias log of an entity."""
        return self._entities.links(namespace, entity_id)

    # ------------------------------------------------------------------ consolidation

    def consolidate(
        self, namespace: str, user_id: str | None, thread_id: str | None, dry_run: bool
    ) -> ConsolidationReport:
        """Merge near-duplicates, expire, archive by retention, summarize long threads."""
        return self._consolidator.consolidate(namespace, user_id, thread_id, dry_run)

    def unmerge(self, namespace: str, record_id: str) -> list[MemoryRecord]:
        """Undo a merge: the absorbed records come back, the survivor as it was."""
        records = self._consolidator.unmerge(namespace, record_id)
        self._entities.written(namespace)
        return records

    def restore_archived(self, namespace: str, record_id: str) -> MemoryRecord:
        """Bring an archived record back to the live set."""
        record = self._consolidator.restore_archived(namespace, record_id)
        self._entities.written(namespace)
        return record

    def archived(self, namespace: str, user_id: str | None, limit: int) -> list[ArchivedRecord]:
        """Archived records, newest first."""
        return self._consolidator.archived(namespace, user_id, limit)

    def summarize_text(self, text: str, max_sentences: int | None) -> str:
        """Summarize a caller's text with the configured summarizer."""
        return self.summaries.summarize_text(text, max_sentences)

    # ------------------------------------------------------------------ episodic + slots

    def log_event(
        self,
        namespace: str,
        thread_id: str,
        action: str,
        payload: dict[str, Any] | None,
        user_id: str | None,
        actor: str | None,
    ) -> Event:
        """Append one event to a thread's log."""
        return self._threads.log_event(namespace, thread_id, action, payload, user_id, actor)

    def events(
        self, namespace: str, thread_id: str, since: datetime | str | None, limit: int
    ) -> list[Event]:
        """Return a thread's events in order."""
        return self._threads.events(namespace, thread_id, since, limit)

    def set_slots(
        self,
        namespace: str,
        thread_id: str,
        values: dict[str, Any],
        expected_version: int | None,
        user_id: str | None,
    ) -> Slots:
        """Compare-and-set a thread's working-memory slots."""
        return self._threads.set_slots(namespace, thread_id, values, expected_version, user_id)

    def get_slots(self, namespace: str, thread_id: str) -> Slots:
        """Return a thread's slots."""
        return self._threads.get_slots(namespace, thread_id)

    def snapshot(self, namespace: str, thread_id: str, limit: int = 1000) -> Snapshot:
        """Return the thread's events and slots as data and as readable text."""
        return self._threads.snapshot(namespace, thread_id, limit)

    # ------------------------------------------------------------------ whole-store calls

    def forget(
        self,
        namespace: str,
        user_id: str | None,
        thread_id: str | None,
        everything: bool,
        compact: bool = False,
    ) -> dict[str, int]:
        """Erase a subject for good (records, history, events, slots)."""
        return self._admin.forget(namespace, user_id, thread_id, everything, compact)

    def health(self) -> dict[str, Any]:
        """Check each component: the store answers, the embedder embeds."""
        return self._admin.health()

    def maintenance(self, doing: str) -> Maintenance:
        """The store as :class:`Maintenance`, or a clear error when it has no such role."""
        return self._admin.maintenance(doing)

    def transfer(self, doing: str) -> Transfer:
        """The store as :class:`Transfer`, or a clear error when it has no such role."""
        return self._admin.transfer(doing)

    def namespaces(self) -> dict[str, int]:
        """Return every namespace with its record count."""
        return self._admin.namespaces()

    def stats(self, namespace: str) -> dict[str, Any]:
        """Counts and sizes of one namespace and of the whole store, with embedder, cache and
        entities (``pending`` extractions among them)."""
        out = self._admin.stats(namespace)
        out["entities"] = self._entities.stats(namespace)
        return out

    def doctor(self, repair: bool) -> dict[str, Any]:
        """Check integrity and that every derived index agrees with the tables; with
        ``repair``, parked entity extractions are retried."""
        report = self._admin.doctor(repair)
        entities = self._entities.stats(None)
        if repair:
            entities["retried"] = self._entities.repair()
        report["entities"] = entities
        return report

    def backup(self, path: Path) -> None:
        """Write a consistent online copy of the whole store to ``path``."""
        self._admin.backup(path)

    def restore(self, path: Path) -> None:
        """Replace the store's content with a backup."""
        self._admin.restore(path)

    def last_write_lsn(self) -> str | None:
        """The store's position after this process's last write (read-your-writes)."""
        return self._admin.last_write_lsn()

    def user_ids(self, namespace: str) -> list[str]:
        """The distinct user scopes of the namespace's live records (an index scan)."""
        return self.store.user_ids(namespace, now_us())

    def generation(self, namespace: str) -> int:
        """The namespace's write generation: it rises in every write transaction, so a value
        derived from the namespace's content holds while it stays the same."""
        return self.store.generation(namespace)

    def export(
        self,
        path: str | Path,
        namespace: str | None,
        node: Node | None,
        vectors: bool,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Write records (with history), events and slots as versioned JSONL; return records."""
        return self._admin.export(path, namespace, node, vectors, progress)

    def import_(
        self,
        path: str | Path,
        namespace: str | None,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, int]:
        """Read an export back (idempotent: same ids, same history)."""
        counts = self._admin.import_(path, namespace, progress)
        self._entities.written(namespace)
        return counts

    def reembed(
        self,
        embedder: str | Embedder,
        batch: int = 256,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Re-embed every chunk with another embedder (resumable), then switch to it.

        ``embedder`` is a settings name (``minilm``, ``hash``) or an embedder object.
        """
        return self._admin.reembed(embedder, batch, progress)
