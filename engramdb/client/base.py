"""The verbs of the remote faces, written once: each is one call of ``self._call``.

``Client`` (HTTP) and ``ZmqClient`` (ZeroMQ) subclass :class:`ClientMethods` and say how a
call travels; ``AsyncClient`` subclasses ``AsyncClientMethods``, which
``scripts/gen_async_client.py`` generates from this file (a test fails on drift). The
signatures are ``Memory``'s, so agent code moves from embedded to remote by changing the
line that builds the object; ``tests/client`` checks the signatures match.
"""

# mypy: disable-error-code="no-any-return"
# (each decoder returns its op's type: the method's annotation is the contract, and
# tests/client checks the results against Memory's)

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

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

Results = list[AddResult]
Records = list[MemoryRecord]
Events = list[Event]
Changes = list[HistoryEntry]
Entities = list[Entity]
EntityLog = list[dict[str, Any]]
Archived = list[ArchivedRecord]


class ClientMethods:
    """``Memory``'s verbs over a transport; subclasses implement ``_call``."""

    namespace: str

    def _call(self, op: str, **args: Any) -> Any:
        raise NotImplementedError

    # --- begin shared methods (AsyncClientMethods is generated from here to the end marker)

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
        """Remember one text or a batch (see ``Memory.add``); retried once-only by its key."""
        return self._call(
            "add",
            text=text,
            id=id,
            user_id=user_id,
            agent_id=agent_id,
            thread_id=thread_id,
            type=type,
            metadata=metadata,
            tags=tags,
            source=source,
            importance=importance,
            occurred_at=occurred_at,
            expires_at=expires_at,
            valid_from=valid_from,
            valid_to=valid_to,
            on_error=on_error,
        )

    def add_messages(
        self,
        thread_id: str,
        messages: Sequence[dict[str, Any]],
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        remember: bool = True,
    ) -> Results:
        """Append conversation turns to a thread (see ``Memory.add_messages``)."""
        return self._call(
            "add_messages",
            thread_id=thread_id,
            messages=messages,
            user_id=user_id,
            agent_id=agent_id,
            remember=remember,
        )

    def get(self, id: str) -> MemoryRecord:
        """Return the record with this id (``NotFoundError`` when there is none)."""
        return self._call("get", id=id)

    def get_many(self, ids: Sequence[str]) -> Records:
        """Return the records among ``ids`` that exist, in the order given."""
        return self._call("get_many", ids=ids)

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
        """Return a page of records matching the filter, in id (creation) order."""
        return self._call(
            "list",
            filters=filters,
            limit=limit,
            cursor=cursor,
            descending=descending,
            user_id=user_id,
            agent_id=agent_id,
            thread_id=thread_id,
            type=type,
            tags=tags,
            valid_at=valid_at,
            include_expired=include_expired,
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
        return self._call(
            "count",
            filters=filters,
            user_id=user_id,
            agent_id=agent_id,
            thread_id=thread_id,
            type=type,
            tags=tags,
            valid_at=valid_at,
            include_expired=include_expired,
        )

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
        """Change a record (``ConflictError`` when ``expected_version`` is stale)."""
        return self._call(
            "update",
            id=id,
            text=text,
            metadata=metadata,
            add_tags=add_tags,
            remove_tags=remove_tags,
            importance=importance,
            type=type,
            valid_from=valid_from,
            valid_to=valid_to,
            expires_at=expires_at,
            clear=clear,
            expected_version=expected_version,
        )

    def delete(self, id: str) -> None:
        """Delete a record (``NotFoundError`` when there is none)."""
        return self._call("delete", id=id)

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
        return self._call(
            "delete_all",
            filters=filters,
            user_id=user_id,
            agent_id=agent_id,
            thread_id=thread_id,
            type=type,
            tags=tags,
            all=all,
        )

    def history(self, id: str) -> Changes:
        """Return every change of a record, oldest first."""
        return self._call("history", id=id)

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
        query_vector: Any = None,
        include_entities: bool = False,
    ) -> SearchPage:
        """Find the records most relevant to ``query`` (``query_vector`` is not sent:
        ``NotSupportedError``); ``include_entities=True`` fills each hit's ``entities``."""
        return self._call(
            "search",
            query=query,
            top_k=top_k,
            filters=filters,
            user_id=user_id,
            agent_id=agent_id,
            thread_id=thread_id,
            type=type,
            tags=tags,
            mode=mode,
            threshold=threshold,
            offset=offset,
            cursor=cursor,
            valid_at=valid_at,
            include_expired=include_expired,
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
        """Return the namespace's entities (one user's with ``user_id``), most mentioned first."""
        return self._call("entities", query=query, type=type, user_id=user_id, limit=limit)

    def entity(self, id: int) -> Entity:
        """Return one entity with its mentions (``NotFoundError`` when there is none)."""
        return self._call("entity", id=id)

    def relations(
        self, entity_id: int, *, depth: int = 1, types: Sequence[str] | None = None
    ) -> EntityGraph:
        """Return the entities and relations within ``depth`` (1-3) hops of an entity."""
        return self._call("relations", entity_id=entity_id, depth=depth, types=types)

    def records_about(self, entity_id: int, *, limit: int = 100) -> Records:
        """Return the records that mention an entity (or one of its aliases), newest first."""
        return self._call("records_about", entity_id=entity_id, limit=limit)

    def unlink_entity(self, id: int) -> Entity:
        """Undo an alias join: the entity stands on its own again (and stays so)."""
        return self._call("unlink_entity", id=id)

    def entity_history(self, id: int) -> EntityLog:
        """Return the alias log of an entity: each join and separation, oldest first."""
        return self._call("entity_history", id=id)

    def consolidate(
        self,
        *,
        user_id: str | None = None,
        thread_id: str | None = None,
        dry_run: bool = False,
    ) -> ConsolidationReport:
        """Merge near-duplicates, expire, archive by retention, summarize long threads
        (``dry_run``: report the plan, change nothing). Needs a key that may write."""
        return self._call("consolidate", user_id=user_id, thread_id=thread_id, dry_run=dry_run)

    def unmerge(self, record_id: str) -> Records:
        """Undo the merge a record took part in; return the survivor and the records back."""
        return self._call("unmerge", record_id=record_id)

    def restore_archived(self, record_id: str) -> MemoryRecord:
        """Bring an archived record back to search, list and count."""
        return self._call("restore_archived", record_id=record_id)

    def archived(self, *, user_id: str | None = None, limit: int = 100) -> Archived:
        """Return records consolidation took out of the live set, newest first."""
        return self._call("archived", user_id=user_id, limit=limit)

    def summarize_text(self, text: str, *, max_sentences: int | None = None) -> str:
        """Summarize a text with the service's summarizer."""
        return self._call("summarize_text", text=text, max_sentences=max_sentences)

    def log_event(
        self,
        thread_id: str,
        action: str,
        payload: dict[str, Any] | None = None,
        *,
        user_id: str | None = None,
        actor: str | None = None,
    ) -> Event:
        """Append an event to a thread's log."""
        return self._call(
            "log_event",
            thread_id=thread_id,
            action=action,
            payload=payload,
            user_id=user_id,
            actor=actor,
        )

    def events(
        self, thread_id: str, *, since: datetime | str | None = None, limit: int = 1000
    ) -> Events:
        """Return a thread's events in the order they were appended."""
        return self._call("events", thread_id=thread_id, since=since, limit=limit)

    def snapshot(self, thread_id: str) -> Snapshot:
        """Return a readable, ordered account of a thread: its events and slots."""
        return self._call("snapshot", thread_id=thread_id)

    def set_slots(
        self,
        thread_id: str,
        values: dict[str, Any],
        *,
        expected_version: int | None = None,
        user_id: str | None = None,
    ) -> Slots:
        """Write working-memory slots; compare-and-set (``ConflictError`` when stale)."""
        return self._call(
            "set_slots",
            thread_id=thread_id,
            values=values,
            expected_version=expected_version,
            user_id=user_id,
        )

    def get_slots(self, thread_id: str) -> Slots:
        """Return a thread's working-memory slots and their version."""
        return self._call("get_slots", thread_id=thread_id)

    def forget(
        self,
        *,
        user_id: str | None = None,
        thread_id: str | None = None,
        namespace: bool = False,
        compact: bool = False,
    ) -> dict[str, int]:
        """Erase a user's, a thread's or the namespace's data for good."""
        return self._call(
            "forget", user_id=user_id, thread_id=thread_id, namespace=namespace, compact=compact
        )

    def namespaces(self) -> dict[str, int]:
        """Return every namespace the key may see, with its record count."""
        return self._call("namespaces")

    def stats(self) -> dict[str, Any]:
        """Return counts and sizes for this namespace and the whole store (no paths)."""
        return self._call("stats")

    def health(self) -> dict[str, Any]:
        """Check each component of the service: ``ok`` or an error message."""
        return self._call("health")

    def doctor(self, *, repair: bool = False) -> dict[str, Any]:
        """Check integrity of the service's store (an admin call)."""
        return self._call("doctor", repair=repair)

    def backup(self, path: str | Path) -> None:
        """Download a consistent copy of the service's store to the local ``path``."""
        return self._call("backup", path=path)

    def restore(self, path: str | Path) -> None:
        """Replace the service's store with the local backup file at ``path``."""
        return self._call("restore", path=path)

    def export(
        self,
        path: str | Path,
        filters: dict[str, Any] | None = None,
        *,
        all_namespaces: bool = False,
        vectors: bool = True,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Export to the local JSONL file ``path``; return the number of records."""
        return self._call(
            "export",
            path=path,
            filters=filters,
            all_namespaces=all_namespaces,
            vectors=vectors,
            progress=progress,
        )

    def import_(
        self,
        path: str | Path,
        *,
        keep_namespaces: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, int]:
        """Upload and import the local export file at ``path``."""
        return self._call("import_", path=path, keep_namespaces=keep_namespaces, progress=progress)

    def reembed(
        self,
        embedder: Any,
        *,
        batch: int = 256,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Re-embed every chunk with another embedder the service has (named)."""
        return self._call("reembed", embedder=embedder, batch=batch, progress=progress)

    # --- end shared methods
