"""The write path: validate -> chunk -> embed (checked) -> one store transaction.

Dedup happens in the database (a unique index decides whether a text is new), so concurrent
adds from several processes agree. A change to a turn of a thread (a message, or a record
added with a thread) also re-indexes its neighbours'
keyword text (:mod:`engramdb.engine.context_index`). Every change of a record drops its
cached copy.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Literal

from engramdb.cache import Cache
from engramdb.config import Settings
from engramdb.engine import validation as v
from engramdb.engine.chunking import chunk_text
from engramdb.engine.context_index import ContextIndex
from engramdb.engine.encoder import Encoder
from engramdb.engine.facts import FactRecorder
from engramdb.engine.gc_pause import gc_paused
from engramdb.engine.keyword import index_text
from engramdb.engine.prepare import chunk_and_embed, prepare_messages, prepare_record
from engramdb.engine.records import Records
from engramdb.errors import NotFoundError, ValidationError
from engramdb.extract.facts import FactExtractor
from engramdb.models import AddResult, MemoryRecord
from engramdb.query.filters import Node
from engramdb.stores.base import Store
from engramdb.stores.prepared import PreparedChunk, PreparedRecord, RecordChanges, is_turn
from engramdb.timeutil import now_us, to_us

CLEARABLE = ("importance", "valid_from", "valid_to", "expires_at")


class Writer:
    """Adds, changes and deletes records (and the events of conversation turns)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        cache: Cache,
        encoder: Encoder,
        records: Records,
        facts: str | FactExtractor | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.cache = cache
        self.encoder = encoder
        self.records = records
        self.context = ContextIndex(settings, store)
        self.facts = FactRecorder(settings, records, self, facts)
        # Called with the namespace after add_messages stored records (its messages, then
        # its facts): the engine wakes the entity extraction there (see Engine.__init__).
        self.on_written: Callable[[str], None] = _nothing

    def add(
        self,
        namespace: str,
        items: str | dict[str, Any] | Sequence[str | dict[str, Any]],
        defaults: dict[str, Any],
        on_error: Literal["abort", "skip"] = "abort",
    ) -> list[AddResult]:
        """Validate, chunk, embed and store records in one transaction."""
        v.check_namespace(namespace)
        if on_error not in ("abort", "skip"):
            raise ValidationError("on_error must be 'abort' or 'skip'", field="on_error")
        if isinstance(items, str | dict):
            items = [items]
        if isinstance(items, bytes):
            items = [items]
        items = list(items)
        if not items:
            raise ValidationError("nothing to add: the list is empty", field="text")
        if len(items) > self.settings.max_batch:
            raise ValidationError(
                f"{len(items)} items; the limit max_batch is {self.settings.max_batch}",
                field="text",
                limit="max_batch",
            )
        prepared: list[PreparedRecord | None] = []
        rejected: dict[int, str] = {}
        # The collector is paused around our own object-building, not the embedder's call.
        with gc_paused():
            for i, item in enumerate(items):
                try:
                    data = item if isinstance(item, dict) else {"text": item}
                    prepared.append(prepare_record(data, defaults, self.settings))
                except ValidationError as exc:
                    if on_error == "abort":
                        exc.details["index"] = i
                        exc.message = f"item {i}: {exc.message}"
                        exc.args = (exc.message,)
                        raise
                    rejected[i] = exc.message
                    prepared.append(None)
        good = [p for p in prepared if p is not None]
        chunk_and_embed(good, self.encoder)
        spans = self._thread_context(namespace, good)
        with gc_paused():
            stored = self.store.add_records(namespace, good, on_error) if good else []
            out: list[AddResult] = []
            it = iter(stored)
            for i, p in enumerate(prepared):
                if p is None:
                    out.append(AddResult(i, "rejected", None, rejected[i]))
                else:
                    r = next(it)
                    r.index = i
                    out.append(r)
        if spans:
            written = {r.record.id for r in stored if r.outcome == "written" and r.record}
            for thread_id, span in spans.items():
                self.context.reindex(namespace, thread_id, *span, written)
        return out

    def _thread_context(
        self, namespace: str, records: list[PreparedRecord]
    ) -> dict[str, tuple[int, int]]:
        """Index records added with a thread with their neighbouring turns, thread by thread.

        Returns each thread's time span, for re-indexing its stored turns after the write.
        """
        by_thread: dict[str, list[PreparedRecord]] = {}
        for rec in records:
            if is_turn(rec.type, rec.thread_id):
                by_thread.setdefault(rec.thread_id, []).append(rec)
        spans: dict[str, tuple[int, int]] = {}
        for thread_id, recs in by_thread.items():
            span = self.context.prepare(namespace, thread_id, recs)
            if span is not None:
                spans[thread_id] = span
        return spans

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
        v.check_namespace(namespace)
        thread_id = v.check_thread(thread_id)
        user = v.check_scope(user_id, "user_id") or ""
        events, records = prepare_messages(
            thread_id, user, agent_id, messages, remember, self.settings
        )
        chunk_and_embed(records, self.encoder)
        span = self.context.prepare(namespace, thread_id, records)
        results = self.store.add_records(namespace, records, "abort", events=events)
        if not remember:
            return [AddResult(i, "written", None) for i in range(len(events))]
        self.on_written(namespace)  # the messages' extraction need not wait for the facts
        if span is not None:
            # The earlier (and any later) turns now have a new neighbour: correct their index.
            # A separate transaction: the keyword index is derived, and the new turns were
            # already written with their context above.
            written = {r.record.id for r in results if r.outcome == "written" and r.record}
            self.context.reindex(namespace, thread_id, *span, written)
        self.facts.record(namespace, records, results)
        return results

    def update(
        self,
        namespace: str,
        record_id: str,
        fields: dict[str, Any],
        expected_version: int | None,
    ) -> MemoryRecord:
        """Change a record: re-embeds when the text changes; tags change atomically."""
        v.check_namespace(namespace)
        v.check_id(record_id)
        v.check_expected_version(expected_version)
        s = self.settings
        ch = RecordChanges()
        clear: set[str] = set()
        given = {k: val for k, val in fields.items() if val is not None}
        if not given and not fields.get("clear"):
            raise ValidationError("nothing to update: give text, metadata, tags or another field")
        if "type" in given and "text" not in given:
            current = self.records.get(namespace, record_id)
            if current.thread_id:
                # A change of type can make a record a turn of its thread or stop it being
                # one: its keyword text is rebuilt (and its neighbours' below).
                given["text"] = current.text
        if "text" in given:
            ch.text = v.check_text(given["text"], s)
            ch.content_hash = v.content_hash(ch.text)
            spans = chunk_text(ch.text, self.encoder.max_chunk_tokens, self.encoder.count_tokens)
            vecs = self.encoder.embed([ch.text[a:b] for a, b in spans])
            when = _occurred_us(self.records.get(namespace, record_id))
            ch.chunks = [
                PreparedChunk(a, b, vec, index_text(ch.text[a:b], when))
                for (a, b), vec in zip(spans, vecs, strict=True)
            ]
        if "metadata" in given:
            ch.metadata_json = json.dumps(
                v.check_metadata(given["metadata"], s), ensure_ascii=False
            )
        if "add_tags" in given:
            ch.add_tags = v.check_tags(given["add_tags"], s)
        if "remove_tags" in given:
            ch.remove_tags = v.check_tags(given["remove_tags"], s)
        if "importance" in given:
            ch.importance = v.check_importance(given["importance"])
        if "type" in given:
            ch.type = v.check_type(given["type"])
        for tf in ("valid_from", "valid_to", "expires_at"):
            if tf in given:
                setattr(ch, tf, to_us(given[tf], tf))
        for name in fields.get("clear") or ():
            if name not in CLEARABLE:
                raise ValidationError(f"cannot clear {name!r}", field="clear")
            clear.add(name)
        ch.clear = frozenset(clear)
        after = self.store.update_record(namespace, record_id, ch, expected_version)
        self.cache.invalidate_records(namespace, [record_id])
        turn_changed = ch.text is not None and is_turn(after.type, after.thread_id)
        if after.thread_id and (ch.type is not None or turn_changed):
            # A turn and its neighbours index each other's text: re-index them all (a change
            # of type may also make a record a turn, or stop it being one).
            when = _occurred_us(after)
            self.context.reindex(namespace, after.thread_id, when, when, set())
        return after

    def delete(self, namespace: str, record_id: str) -> None:
        """Delete one record (tombstone in history) or raise NotFoundError."""
        v.check_namespace(namespace)
        found = self.store.get_records(namespace, [v.check_id(record_id)])
        if not found or self.store.delete_records(namespace, [record_id], None) == 0:
            raise NotFoundError(
                f"record {record_id!r} not found in namespace {namespace!r}", id=record_id
            )
        self.cache.invalidate_records(namespace, [record_id])
        gone = found[0]
        if gone.thread_id and is_turn(gone.type, gone.thread_id):
            # Its neighbours indexed its text as context: re-index them without it.
            when = _occurred_us(gone)
            self.context.reindex(namespace, gone.thread_id, when, when, set())

    def delete_all(self, namespace: str, node: Node | None, everything: bool) -> int:
        """Delete every record matching the filter; an empty filter needs ``everything``."""
        v.check_namespace(namespace)
        if node is None and not everything:
            raise ValidationError(
                "delete_all without a filter would delete the whole namespace; pass all=True",
                field="filters",
            )
        return self.store.delete_records(namespace, None, node)


def _occurred_us(record: MemoryRecord) -> int:
    """A stored record's ``occurred_at`` in epoch microseconds (always set on write)."""
    return now_us() if record.occurred_at is None else to_us(record.occurred_at, "occurred_at")


def _nothing(namespace: str) -> None:
    """The default ``on_written``: nobody to tell."""
