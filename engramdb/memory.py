"""``Memory``: the synchronous face of engramdb. ``AsyncMemory`` is generated from this file.

Edit the methods between the markers here, then run ``python scripts/gen_async.py``; a test
fails when ``engramdb/_async_memory.py`` is out of date.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Self, TypeVar

import numpy as np

from engramdb._facade import _Shared, call_sync
from engramdb.config import Settings
from engramdb.embedders.base import Embedder
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

T = TypeVar("T")
Results = list[AddResult]
Records = list[MemoryRecord]
Events = list[Event]
Changes = list[HistoryEntry]
Entities = list[Entity]
EntityLog = list[dict[str, Any]]
Archived = list[ArchivedRecord]


class Memory(_Shared):
    """Long-term memory for agents over one store (a SQLite file by default).

    Safe to share between threads. Example::

        from engramdb import Memory
        with Memory("sqlite:///agent.db") as mem:
            mem.add("Alice moved to Lisbon in 2021", user_id="alice", tags=["profile"])
            hits = mem.search("where does alice live?", user_id="alice", top_k=5)
    """

    @classmethod
    def open(
        cls,
        url: str,
        *,
        namespace: str | None = None,
        embedder: str | Embedder | None = None,
        settings: Settings | None = None,
        facts: str | FactExtractor | None = None,
    ) -> Self:
        """Open the store at ``url`` and return a ready ``Memory`` (same as ``Memory(url)``).

        The twin of ``await AsyncMemory.open(...)``, so code opens either face the same
        way. It blocks while the store opens, its schema migrates and the model loads.

        Raises:
            WrongContextError: called on a thread running an event loop (use
                ``await AsyncMemory.open(...)`` there).
        """
        return call_sync(
            "open", cls, url, namespace=namespace, embedder=embedder, settings=settings, facts=facts
        )

    def _call(self, method: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return call_sync(method, fn, *args, **kwargs)

    def with_namespace(self, namespace: str) -> Memory:
        """Return a view of the same store scoped to another namespace (shares the engine)."""
        return Memory(namespace=namespace, _engine=self._engine)

    def close(self) -> None:
        """Persist derived indexes and close the store (only the owner of the store closes it)."""
        if self._owner:
            self._engine.close()

    def __enter__(self) -> Memory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- begin shared methods (AsyncMemory is generated from here to the end marker)

    def add(
        self,
        text: str | dict[str, Any] | Sequence[str | dict[str, Any]],
        *,
        id: str | None = None,
        user_id: str | None = None,
        agent_id: str | None = None,
        thread_id: str | None = None,
        type: str | None = None,
        metadata: dict[str, Any] | None = None,
        tags: Sequence[str] | None = None,
        source: str | None = None,
        importance: float | None = None,
        occurred_at: datetime | str | None = None,
        expires_at: datetime | str | None = None,
        valid_from: datetime | str | None = None,
        valid_to: datetime | str | None = None,
        on_error: Literal["abort", "skip"] = "abort",
    ) -> Results:
        """Remember one text or a batch (strings, or dicts with per-item fields).

        Keyword arguments are defaults for every item. The batch is one transaction. Same
        text in the same scope (namespace, user, agent, thread, type) is stored once: the
        existing record comes back with ``outcome="deduplicated"``. ``id`` makes a single
        add idempotent. ``on_error="abort"`` raises on the first bad item and stores
        nothing; ``"skip"`` stores the good items and reports the others as ``rejected``.

        Raises:
            ValidationError: bad input (the message names the field and item index).
            ConflictError: ``id`` exists with a different text.
            EmbeddingError: the embedder failed; nothing was stored.
            StoreUnavailableError: the database server stayed unreachable for
                ``store_retry_s``; nothing was stored.
            CommitUnknownError: (PostgreSQL) the connection was lost after COMMIT was sent;
                the batch may or may not be stored. Adding it again with the ids in
                ``details["ids"]`` is safe: existing ones come back ``unchanged``.
        """
        defaults = {
            "user_id": user_id,
            "agent_id": agent_id,
            "thread_id": thread_id,
            "type": type,
            "metadata": metadata,
            "tags": tags,
            "source": source,
            "importance": importance,
            "occurred_at": occurred_at,
            "expires_at": expires_at,
            "valid_from": valid_from,
            "valid_to": valid_to,
        }
        if id is not None:
            if not isinstance(text, str):
                from engramdb.errors import ValidationError

                raise ValidationError("id= applies to a single text; put ids in item dicts")
            text = {"text": text, "id": id}
        return self._call("add", self._engine.add, self.namespace, text, defaults, on_error)

    def add_messages(
        self,
        thread_id: str,
        messages: Sequence[dict[str, Any]],
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        remember: bool = True,
    ) -> Results:
        """Append conversation turns (``{"role", "content", "occurred_at"?}``) to a thread.

        The turns go to the thread's event log in order and, with ``remember``, each is also
        stored as a searchable ``message`` record linked to its event, in one transaction.
        """
        return self._call(
            "add_messages",
            self._engine.add_messages,
            self.namespace,
            thread_id,
            messages,
            user_id,
            agent_id,
            remember,
        )

    def get(self, id: str) -> MemoryRecord:
        """Return the record with this id.

        Raises:
            NotFoundError: no such record in this namespace.
        """
        return self._call("get", self._engine.get, self.namespace, id)

    def get_many(self, ids: Sequence[str]) -> Records:
        """Return the records among ``ids`` that exist, in the order given."""
        return self._call("get_many", self._engine.get_many, self.namespace, ids)

    def list(
        self,
        filters: dict[str, Any] | None = None,
        *,
        limit: int = 100,
        cursor: str | None = None,
        descending: bool = False,
        user_id: str | None = None,
        agent_id: str | None = None,
        thread_id: str | None = None,
        type: str | None = None,
        tags: Sequence[str] | None = None,
        valid_at: datetime | str | None = None,
        include_expired: bool = False,
    ) -> RecordPage:
        """Return a page of records matching the filter, in id (creation) order.

        Pass ``page.next_cursor`` as ``cursor`` for the next page.
        """
        node = self._engine.build_filter(
            filters,
            {
                "user_id": user_id,
                "agent_id": agent_id,
                "thread_id": thread_id,
                "type": type,
                "tags": tags,
            },
            valid_at,
            include_expired,
        )
        return self._call(
            "list", self._engine.list_page, self.namespace, node, limit, cursor, descending
        )

    def count(
        self,
        filters: dict[str, Any] | None = None,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        thread_id: str | None = None,
        type: str | None = None,
        tags: Sequence[str] | None = None,
        valid_at: datetime | str | None = None,
        include_expired: bool = False,
    ) -> int:
        """Count records matching the filter."""
        node = self._engine.build_filter(
            filters,
            {
                "user_id": user_id,
                "agent_id": agent_id,
                "thread_id": thread_id,
                "type": type,
                "tags": tags,
            },
            valid_at,
            include_expired,
        )
        return self._call("count", self._engine.count, self.namespace, node)

    def update(
        self,
        id: str,
        *,
        text: str | None = None,
        metadata: dict[str, Any] | None = None,
        add_tags: Sequence[str] | None = None,
        remove_tags: Sequence[str] | None = None,
        importance: float | None = None,
        type: str | None = None,
        valid_from: datetime | str | None = None,
        valid_to: datetime | str | None = None,
        expires_at: datetime | str | None = None,
        clear: Sequence[str] | None = None,
        expected_version: int | None = None,
    ) -> MemoryRecord:
        """Change a record; every change bumps ``version`` and leaves a history row.

        ``metadata`` replaces the metadata; tag changes are applied atomically in the store;
        a new ``text`` is re-embedded. ``clear`` names optional fields to unset.

        Raises:
            NotFoundError: no such record.
            ConflictError: ``expected_version`` is stale, or the new text duplicates another
                record in the same scope.
        """
        fields = {
            "text": text,
            "metadata": metadata,
            "add_tags": add_tags,
            "remove_tags": remove_tags,
            "importance": importance,
            "type": type,
            "valid_from": valid_from,
            "valid_to": valid_to,
            "expires_at": expires_at,
            "clear": clear,
        }
        return self._call(
            "update", self._engine.update, self.namespace, id, fields, expected_version
        )

    def delete(self, id: str) -> None:
        """Delete a record from every index; its before-image stays in history.

        Raises:
            NotFoundError: no such record.
        """
        return self._call("delete", self._engine.delete, self.namespace, id)

    def delete_all(
        self,
        filters: dict[str, Any] | None = None,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        thread_id: str | None = None,
        type: str | None = None,
        tags: Sequence[str] | None = None,
        all: bool = False,
    ) -> int:
        """Delete every record matching the filter; with no filter at all, ``all=True``."""
        node = self._engine.build_filter(
            filters,
            {
                "user_id": user_id,
                "agent_id": agent_id,
                "thread_id": thread_id,
                "type": type,
                "tags": tags,
            },
            None,
            True,
        )
        return self._call("delete_all", self._engine.delete_all, self.namespace, node, all)

    def history(self, id: str) -> Changes:
        """Return every change of a record (add, update, delete), oldest first."""
        return self._call("history", self._engine.history, self.namespace, id)

    def search(
        self,
        query: str,
        *,
        top_k: int = 10,
        filters: dict[str, Any] | None = None,
        user_id: str | None = None,
        agent_id: str | None = None,
        thread_id: str | None = None,
        type: str | None = None,
        tags: Sequence[str] | None = None,
        mode: Literal["hybrid", "vector", "keyword"] = "hybrid",
        threshold: float | None = None,
        offset: int = 0,
        cursor: str | None = None,
        valid_at: datetime | str | None = None,
        include_expired: bool = False,
        query_vector: np.ndarray | None = None,
        include_entities: bool = False,
    ) -> SearchPage:
        """Find the records most relevant to ``query``.

        ``mode="hybrid"`` fuses exact vector similarity and BM25 keyword relevance with
        reciprocal-rank fusion; each hit carries its parts. ``threshold`` drops hits whose
        vector cosine similarity is below it. Paging: ``offset`` or ``page.next_cursor``.
        ``include_entities=True`` fills each hit's ``entities`` with the entities its
        record mentions and the relations it states.
        """
        node = self._engine.build_filter(
            filters,
            {"agent_id": agent_id, "thread_id": thread_id, "type": type, "tags": tags},
            valid_at,
            include_expired,
        )
        if user_id is not None:
            from engramdb.engine.validation import check_scope

            check_scope(user_id, "user_id")
        return self._call(
            "search",
            self._engine.search,
            self.namespace,
            query,
            top_k=top_k,
            node=node,
            user_id=user_id,
            mode=mode,
            threshold=threshold,
            offset=offset,
            cursor=cursor,
            query_vector=query_vector,
            include_entities=include_entities,
        )

    def entities(
        self,
        query: str | None = None,
        *,
        type: str | None = None,
        user_id: str | None = None,
        limit: int = 100,
    ) -> Entities:
        """Return the namespace's entities (one user's with ``user_id``), most mentioned first.

        Each has an id, its name as first written, type (PERSON, ORG, GPE, ...), aliases
        (other names joined to it) and mention count. ``query`` matches names and aliases
        (case-insensitive substring). Records added before the call are extracted first.

        Example::

            mem.add("John works for Microsoft in Seattle", user_id="u1")
            [e.name for e in mem.entities(user_id="u1")]  # ['John', 'Microsoft', 'Seattle']
        """
        return self._call(
            "entities", self._engine.entities, self.namespace, query, type, user_id, limit
        )

    def entity(self, id: int) -> Entity:
        """Return one entity with its mentions (record, span, sentence, confidence).

        The id of an alias gives the entity it is joined to.

        Raises:
            NotFoundError: no such entity in this namespace.
        """
        return self._call("entity", self._engine.entity, self.namespace, id)

    def relations(
        self, entity_id: int, *, depth: int = 1, types: Sequence[str] | None = None
    ) -> EntityGraph:
        """Return the subgraph within ``depth`` (1-3) hops of an entity.

        Relations (``works_for``, ``lives_in``, ``located_in``, ``part_of``, ``knows``,
        ``related_to``, ``likes``, ``owns``; ``types`` narrows them) carry the ids of the
        records stating them and their sentences.

        Raises:
            NotFoundError: no such entity in this namespace.
        """
        return self._call(
            "relations",
            self._engine.relations,
            self.namespace,
            entity_id,
            depth,
            None if types is None else list(types),
        )

    def records_about(self, entity_id: int, *, limit: int = 100) -> Records:
        """Return the records that mention an entity (or one of its aliases), newest first."""
        return self._call(
            "records_about", self._engine.records_about, self.namespace, entity_id, limit
        )

    def unlink_entity(self, id: int) -> Entity:
        """Undo an alias join: the entity stands on its own again (and stays so).

        Raises:
            NotFoundError: no such entity. ValidationError: it is not joined to another.
        """
        return self._call("unlink_entity", self._engine.unlink_entity, self.namespace, id)

    def entity_history(self, id: int) -> EntityLog:
        """Return the alias log of an entity: each join and separation, oldest first."""
        return self._call("entity_history", self._engine.entity_history, self.namespace, id)

    def consolidate(
        self,
        *,
        user_id: str | None = None,
        thread_id: str | None = None,
        dry_run: bool = False,
    ) -> ConsolidationReport:
        """Keep the namespace (or one user's or thread's part) small and current.

        Deletes records past ``expires_at``; merges near-duplicates of one scope (cosine
        at least ``consolidate_merge_threshold``, metadata that do not disagree) into the
        richest, which gains their tags and metadata and the earliest ``occurred_at``;
        archives records whose importance decayed below ``consolidate_archive_floor``
        (never one without an importance, or younger than the half-life); writes or
        refreshes a ``summary`` record for each thread of ``summarize_min_turns`` turns.
        Merged and archived records leave search, list and count, stay readable by id
        and in exports; ``unmerge`` and ``restore_archived`` bring them back.
        ``dry_run=True`` returns the same report and changes nothing.

        Example::

            report = mem.consolidate(user_id="alice", dry_run=True)
            [(m.survivor_id, m.merged_ids) for m in report.merges]
        """
        return self._call(
            "consolidate",
            self._engine.consolidate,
            self.namespace,
            user_id,
            thread_id,
            dry_run,
        )

    def unmerge(self, record_id: str) -> Records:
        """Undo the merge a record took part in (a survivor: its latest merge).

        The merged records come back with their ids, texts and vectors; the survivor gets
        back its tags, metadata, importance and ``occurred_at`` unless it changed since.

        Raises:
            NotFoundError: the record took part in no merge still in effect.
        """
        return self._call("unmerge", self._engine.unmerge, self.namespace, record_id)

    def restore_archived(self, record_id: str) -> MemoryRecord:
        """Bring a record archived by consolidation back to search, list and count.

        Raises:
            NotFoundError: no archived record with this id.
        """
        return self._call(
            "restore_archived", self._engine.restore_archived, self.namespace, record_id
        )

    def archived(self, *, user_id: str | None = None, limit: int = 100) -> Archived:
        """Return records consolidation took out of the live set, newest first."""
        return self._call("archived", self._engine.archived, self.namespace, user_id, limit)

    def summarize_text(self, text: str, *, max_sentences: int | None = None) -> str:
        """Summarize a text with the store's summarizer (extractive unless configured).

        The extractive default keeps the text's best sentences by TextRank over their
        embeddings; ``max_sentences`` defaults to ``summarize_sentences``.
        """
        return self._call("summarize_text", self._engine.summarize_text, text, max_sentences)

    def log_event(
        self,
        thread_id: str,
        action: str,
        payload: dict[str, Any] | None = None,
        *,
        user_id: str | None = None,
        actor: str | None = None,
    ) -> Event:
        """Append an event (an action with a JSON payload) to a thread's log."""
        return self._call(
            "log_event",
            self._engine.log_event,
            self.namespace,
            thread_id,
            action,
            payload,
            user_id,
            actor,
        )

    def events(
        self, thread_id: str, *, since: datetime | str | None = None, limit: int = 1000
    ) -> Events:
        """Return a thread's events in the order they were appended."""
        return self._call("events", self._engine.events, self.namespace, thread_id, since, limit)

    def snapshot(self, thread_id: str) -> Snapshot:
        """Return a readable, ordered account of a thread: its events and slots."""
        return self._call("snapshot", self._engine.snapshot, self.namespace, thread_id)

    def set_slots(
        self,
        thread_id: str,
        values: dict[str, Any],
        *,
        expected_version: int | None = None,
        user_id: str | None = None,
    ) -> Slots:
        """Write working-memory slots of a thread (None removes a slot); compare-and-set.

        Raises:
            ConflictError: ``expected_version`` is not the current version.
        """
        return self._call(
            "set_slots",
            self._engine.set_slots,
            self.namespace,
            thread_id,
            values,
            expected_version,
            user_id,
        )

    def get_slots(self, thread_id: str) -> Slots:
        """Return a thread's working-memory slots and their version."""
        return self._call("get_slots", self._engine.get_slots, self.namespace, thread_id)

    def forget(
        self,
        *,
        user_id: str | None = None,
        thread_id: str | None = None,
        namespace: bool = False,
        compact: bool = False,
    ) -> dict[str, int]:
        """Erase a user's, a thread's or (``namespace=True``) the namespace's data for good.

        Records, history, events and slots are removed with no before-image kept; use it to
        honour deletion requests. On SQLite the freed space is overwritten. On PostgreSQL
        it is only marked free (the bytes stay in table and index pages until reused)
        unless ``compact=True``, which rewrites the tables without it (``VACUUM FULL``:
        they are locked meanwhile). On SQLite ``compact`` rewrites the file so it shrinks.
        The result counts what was erased, and with ``compact`` the ``bytes_freed``.
        """
        return self._call(
            "forget", self._engine.forget, self.namespace, user_id, thread_id, namespace, compact
        )

    def namespaces(self) -> dict[str, int]:
        """Return every namespace with its record count."""
        return self._call("namespaces", self._engine.namespaces)

    def stats(self) -> dict[str, Any]:
        """Return counts and sizes for this namespace and the whole store."""
        return self._call("stats", self._engine.stats, self.namespace)

    def health(self) -> dict[str, Any]:
        """Check each component (store, embedder): ``ok`` or an error message."""
        return self._call("health", self._engine.health)

    def doctor(self, *, repair: bool = False) -> dict[str, Any]:
        """Check integrity and that every derived index agrees with the tables."""
        return self._call("doctor", self._engine.doctor, repair)

    def backup(self, path: str | Path) -> None:
        """Write a consistent online copy of the whole store to ``path``."""
        return self._call("backup", self._engine.backup, Path(path))

    def restore(self, path: str | Path) -> None:
        """Replace the store's content with a backup made by :meth:`backup`."""
        return self._call("restore", self._engine.restore, Path(path))

    def export(
        self,
        path: str | Path,
        filters: dict[str, Any] | None = None,
        *,
        all_namespaces: bool = False,
        vectors: bool = True,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Export records (with history), events and slots to versioned JSONL."""
        node = self._engine.build_filter(filters, {}, None, True)
        ns = None if all_namespaces else self.namespace
        return self._call("export", self._engine.export, path, ns, node, vectors, progress)

    def import_(
        self,
        path: str | Path,
        *,
        keep_namespaces: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, int]:
        """Import an export file into this namespace (or each line's own namespace)."""
        ns = None if keep_namespaces else self.namespace
        return self._call("import_", self._engine.import_, path, ns, progress)

    def reembed(
        self,
        embedder: str | Embedder,
        *,
        batch: int = 256,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Re-embed every chunk with another embedder (resumable), then switch to it."""
        return self._call("reembed", self._engine.reembed, embedder, batch, progress)

    # --- end shared methods
