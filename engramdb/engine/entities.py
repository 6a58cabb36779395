"""Entities and relations: extraction off the write path, and the reads that catch it up.

A record is queued for extraction in the transaction that writes it (the store's job, see
:class:`~engramdb.stores.base.EntityStore`). With ``extract="background"`` (the default) a
worker thread drains the queue after writes, so an add costs what it did before; with
``"inline"`` the write drains its own namespace before it returns; ``"off"`` leaves the
queue alone (turning extraction on later catches every record up).

Every read of entities first drains what is pending in the scope it reads (namespace, and
user when given), under the same lock as the worker, so a caller never sees a record
without its entities after ``add`` returned. A batch that the NLP step fails on is retried
text by text; a text that still fails is parked (counted as ``failed``), never lost, and
``doctor --repair`` queues it again. A batch interrupted rather than failed (the helper
process killed, this process exiting) is not the texts' fault: it stays queued for the next
drain, here or in the next process to open the store.

The alias step (:func:`engramdb.extract.alias_links`) joins the short forms of people's
names in each (namespace, user) scope a batch touched, in the transaction that writes the
batch's extractions: a reader in any process sees "Bob" and "Bob Smith" as one person from
the moment it sees either.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from engramdb.config import Settings
from engramdb.engine import validation as v
from engramdb.errors import NotFoundError, NotSupportedError, ValidationError
from engramdb.extract import (
    EntityExtractor,
    ExtractionInterrupted,
    ProcessExtractor,
    alias_links,
    exiting,
)
from engramdb.models import Entity, EntityGraph, Extraction
from engramdb.observe import timing
from engramdb.stores.background import BackgroundWorker
from engramdb.stores.base import EntityStore, Store
from engramdb.stores.prepared import PendingText

log = logging.getLogger("engramdb.entities")

RELATION_TYPES = frozenset(
    {"works_for", "lives_in", "located_in", "part_of", "knows", "related_to", "likes", "owns"}
)
MENTION_LIMIT = 1000  # mentions returned by entity(id)
DEBOUNCE_S = 0.2  # the worker waits this long after a write before extracting
OPEN_DELAY_S = 2.0  # ... and this long after an open that found records queued
# A batch interrupted this many times in a row while the process is not exiting is treated
# as failing (a text that kills the helper each time would otherwise be retried forever).
MAX_INTERRUPTS = 3


class _Worker(BackgroundWorker):
    """Drains the extraction queue after writes (see the module docstring)."""

    thread_name = "engramdb-entities"

    def __init__(self, index: EntityIndex) -> None:
        super().__init__()
        self.index = index
        self.delay = DEBOUNCE_S  # the pause before the next drain (longer after an open)

    def _run(self) -> None:
        while not self.stopped:
            if not self.wake.wait(timeout=30.0):
                return  # idle: the next kick starts a new thread
            # Let a burst of writes gather into one batch; a process that closes meanwhile
            # (a one-shot CLI command) leaves the queue to the next reader instead of
            # loading the NLP pipeline on its way out.
            delay, self.delay = self.delay, DEBOUNCE_S
            if self.halt.wait(delay):
                return
            self.wake.clear()
            try:
                self.index.drain(None, None, stop=self.halt)
            except ExtractionInterrupted as exc:  # stays queued; retried after a pause
                log.info("entity extraction interrupted, left queued: %s", exc)
                if self.halt.wait(1.0):
                    return
                self.wake.set()
            except Exception:  # the queue keeps the work; the next kick retries
                log.warning("background entity extraction failed", exc_info=True)
                if self.halt.wait(1.0):
                    return


class EntityIndex:
    """The engine's part for entities (see the module docstring)."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.mode = settings.extract
        self.store: EntityStore | None = store if isinstance(store, EntityStore) else None
        # The background worker parses in a helper process (it would hold this process's
        # interpreter lock and slow the writes); inline extraction parses here.
        self.extractor: EntityExtractor | ProcessExtractor = (
            ProcessExtractor(settings.extract_batch)
            if self.mode == "background"
            else EntityExtractor(settings.extract_batch)
        )
        self._lock = threading.Lock()
        self._closing = False  # close() ran: an interrupted batch is abandoned, never judged
        self._worker = _Worker(self)
        self.seconds = 0.0  # entity_extraction_seconds: time spent in the NLP step
        self.extracted = 0
        self._interrupts = 0  # consecutive interrupted batches (see MAX_INTERRUPTS)
        # Records left queued by another process (or by an upgrade, which queues a store's
        # history) are extracted in the background from the start, not at the first read.
        es = self.store
        if es is not None and self.mode == "background" and es.extraction_pending(None, None, 1):
            self._worker.delay = OPEN_DELAY_S
            self._worker.kick()

    def _store(self, doing: str) -> EntityStore:
        if self.store is None:
            raise NotSupportedError(f"this store keeps no entities ({doing})")
        return self.store

    def close(self) -> None:
        """Stop the worker (what it left queued is drained by the next process).

        A batch in the extraction helper is abandoned, not awaited: on a loaded machine
        the helper's first batch (it loads the NLP pipeline at a low priority) can take
        longer than a service's shutdown deadline, and the batch is still queued anyway.
        """
        self._closing = True
        if isinstance(self.extractor, ProcessExtractor):
            self.extractor.abort()
        self._worker.stop()

    # ------------------------------------------------------------------ extraction

    def written(self, namespace: str | None) -> None:
        """Records were written: extract them now (inline) or wake the worker."""
        if self.store is None or self.mode == "off":
            return
        if self.mode == "inline":
            try:
                self.drain(namespace, None)
                return
            except Exception:  # the records are stored and stay queued: never fail the write
                log.warning("inline entity extraction failed; left to the worker", exc_info=True)
        self._worker.kick()

    def catch_up(self, namespace: str, user_id: str | None) -> None:
        """Drain what is pending in a scope before a read of it (nothing when off)."""
        if self.store is not None and self.mode != "off":
            self.drain(namespace, user_id)

    def drain(
        self, namespace: str | None, user_id: str | None, stop: threading.Event | None = None
    ) -> int:
        """Extract every queued record of a scope (all with None); return how many.

        ``stop`` (the worker's) ends the loop between batches: closing the store waits for
        one batch at most, and what is left stays queued.
        """
        store = self._store("extraction")
        done = 0
        # The common case, nothing pending, costs one indexed read and takes no lock.
        if not store.extraction_pending(namespace, user_id, 1):
            return 0
        with self._lock:
            while stop is None or not stop.is_set():
                batch = store.extraction_pending(namespace, user_id, self.settings.extract_batch)
                if not batch:
                    return done
                try:
                    found = self._extract(store, batch)
                except ExtractionInterrupted:
                    if exiting() or self._closing or (stop is not None and stop.is_set()):
                        raise  # left queued for the next process
                    continue  # a fresh helper takes the batch (see MAX_INTERRUPTS)
                if found:
                    store.write_extractions(found, alias_links)
                done += len(batch)
        return done

    def _extract(
        self, store: EntityStore, batch: list[PendingText]
    ) -> list[tuple[PendingText, Extraction]]:
        """Run the NLP step; texts it fails on are parked, the others returned."""
        start = time.perf_counter()
        try:
            give_up = False  # True: a text the helper dies on is parked like a failing one
            try:
                results = self.extractor.extract([p.text for p in batch])
                self._interrupts = 0
                return list(zip(batch, results, strict=True))
            except ExtractionInterrupted:
                self._interrupts += 1
                if exiting() or self._closing or self._interrupts < MAX_INTERRUPTS:
                    raise  # not judged: the batch stays queued
                self._interrupts, give_up = 0, True
            except Exception:
                log.info("entity extraction failed for a batch; retrying text by text")
            ok: list[tuple[PendingText, Extraction]] = []
            for item in batch:
                try:
                    ok.append((item, self.extractor.extract([item.text])[0]))
                except ExtractionInterrupted as exc:
                    if give_up and not exiting() and not self._closing:
                        log.warning("entity extraction failed for record %s", item.record_id)
                        store.fail_extraction(item, f"{type(exc).__name__}: {exc}")
                        continue
                    if ok:  # keep what was judged; the rest stays queued
                        store.write_extractions(ok, alias_links)
                    raise
                except Exception as exc:
                    log.warning("entity extraction failed for record %s", item.record_id)
                    store.fail_extraction(item, f"{type(exc).__name__}: {exc}")
            return ok
        finally:
            took = time.perf_counter() - start
            self.seconds += took
            self.extracted += len(batch)
            timing("entity_extraction", took)

    # ------------------------------------------------------------------ reads

    def entities(
        self,
        namespace: str,
        query: str | None,
        type_: str | None,
        user_id: str | None,
        limit: int,
    ) -> list[Entity]:
        """Canonical entities of a namespace (one user's with ``user_id``), most mentioned
        first; ``query`` matches names and aliases."""
        limit = v.check_limit(limit, self.settings, "limit")
        user_id = v.check_scope(user_id, "user_id")
        if query is not None and (not isinstance(query, str) or len(query) > 200):
            raise ValidationError("query: a string of at most 200 characters")
        if type_ is not None and (not isinstance(type_, str) or not type_.isupper()):
            raise ValidationError(f"type: an entity type such as PERSON or ORG, not {type_!r}")
        store = self._store("entities")
        self.catch_up(namespace, user_id)
        norm = None if query is None else query.strip().lower()
        return store.list_entities(namespace, user_id or None, norm or None, type_, limit)

    def entity(self, namespace: str, entity_id: int) -> Entity:
        """One entity with its mentions (an alias's id gives its canonical entity)."""
        entity_id = _check_id(entity_id)
        store = self._store("entity")
        self.catch_up(namespace, None)
        found = store.get_entity(namespace, entity_id, MENTION_LIMIT)
        if found is None:
            raise NotFoundError(f"entity {entity_id} not found in namespace {namespace!r}")
        return found

    def relations(
        self, namespace: str, entity_id: int, depth: int, types: list[str] | None
    ) -> EntityGraph:
        """The subgraph within ``depth`` (1..3) hops of an entity."""
        entity_id = _check_id(entity_id)
        if not isinstance(depth, int) or isinstance(depth, bool) or not 1 <= depth <= 3:
            raise ValidationError(f"depth: 1, 2 or 3, not {depth!r}")
        if types is not None:
            if isinstance(types, str) or not all(isinstance(t, str) for t in types):
                raise ValidationError("types: a list of relation types")
            unknown = sorted(set(types) - RELATION_TYPES)
            if unknown:
                raise ValidationError(
                    f"types: unknown relation type(s) {unknown}; known: {sorted(RELATION_TYPES)}"
                )
        store = self._store("relations")
        self.catch_up(namespace, None)
        graph = store.entity_graph(namespace, entity_id, depth, list(types) if types else None)
        if graph is None:
            raise NotFoundError(f"entity {entity_id} not found in namespace {namespace!r}")
        return graph

    def records_about(self, namespace: str, entity_id: int, limit: int) -> list[str]:
        """Ids of the records that mention an entity (newest first)."""
        entity_id = _check_id(entity_id)
        limit = v.check_limit(limit, self.settings, "limit")
        store = self._store("records_about")
        self.catch_up(namespace, None)
        if store.get_entity(namespace, entity_id, 0) is None:
            raise NotFoundError(f"entity {entity_id} not found in namespace {namespace!r}")
        return store.records_about(namespace, entity_id, limit)

    def record_entities(
        self, namespace: str, user_id: str | None, record_ids: list[str]
    ) -> dict[str, EntityGraph]:
        """Each record's entities and relations (``search(include_entities=True)``)."""
        store = self._store("include_entities")
        self.catch_up(namespace, user_id)
        return store.record_entities(namespace, record_ids)

    def unlink(self, namespace: str, entity_id: int) -> Entity:
        """Undo an alias join: the entity stands on its own again, for good."""
        entity_id = _check_id(entity_id)
        store = self._store("unlink_entity")
        self.catch_up(namespace, None)
        if store.unlink_entity(namespace, entity_id) is None:
            if store.get_entity(namespace, entity_id, 0) is None:
                raise NotFoundError(f"entity {entity_id} not found in namespace {namespace!r}")
            raise ValidationError(f"entity {entity_id} is not joined to another entity")
        found = store.get_entity(namespace, entity_id, MENTION_LIMIT)
        assert found is not None
        return found

    def links(self, namespace: str, entity_id: int) -> list[dict[str, Any]]:
        """The alias log of an entity (joins and separations), oldest first."""
        entity_id = _check_id(entity_id)
        store = self._store("entity_history")
        self.catch_up(namespace, None)
        if store.get_entity(namespace, entity_id, 0) is None:
            raise NotFoundError(f"entity {entity_id} not found in namespace {namespace!r}")
        return [dict(r) for r in store.entity_links(namespace, entity_id)]

    # ------------------------------------------------------------------ upkeep

    def stats(self, namespace: str | None) -> dict[str, Any]:
        """Pending/failed extractions, entity counts, and the time spent extracting."""
        if self.store is None:
            return {"enabled": False}
        out: dict[str, Any] = {"mode": self.mode, **self.store.extraction_counts(namespace)}
        out["entity_extraction_seconds"] = round(self.seconds, 6)
        out["extracted"] = self.extracted
        return out

    def repair(self) -> int:
        """Queue parked extractions again and drain them (``doctor --repair``)."""
        if self.store is None:
            return 0
        n = self.store.retry_failed_extractions()
        if self.mode != "off":
            self.drain(None, None)
        return n


def _check_id(entity_id: Any) -> int:
    if isinstance(entity_id, bool) or not isinstance(entity_id, int) or not 1 <= entity_id < 2**63:
        raise ValidationError(f"entity id: a positive integer, not {entity_id!r}")
    return entity_id
