"""The engine: one implementation behind ``Memory``, ``AsyncMemory``, REST and the CLI.

Write path: validate -> chunk -> embed -> one store transaction (dedup in the database).
Read path: embed query -> vector + BM25 candidates -> locate (ids, filter) -> fuse -> read the page.
"""

from __future__ import annotations

import base64
import hashlib
import json
import operator
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from engramdb.cache import Cache, open_cache
from engramdb.config import Settings
from engramdb.embedders.base import Embedder, check_vectors
from engramdb.engine import validation as v
from engramdb.engine.chunking import chunk_text
from engramdb.engine.fusion import convex, rrf
from engramdb.engine.gc_pause import gc_paused
from engramdb.engine.keyword import index_text, match_expression
from engramdb.engine.transfer import export_jsonl, import_jsonl, reembed
from engramdb.errors import (
    EmbeddingError,
    EngramError,
    NotFoundError,
    NotSupportedError,
    ValidationError,
)
from engramdb.ids import new_id
from engramdb.models import (
    AddResult,
    Event,
    HistoryEntry,
    MemoryRecord,
    RecordPage,
    ScoreParts,
    SearchHit,
    SearchPage,
    Slots,
    Snapshot,
)
from engramdb.query.filters import Bool, Cmp, Live, Node, ValidAt, parse
from engramdb.stores.base import Maintenance, Store, Transfer
from engramdb.stores.prepared import (
    PreparedChunk,
    PreparedEvent,
    PreparedRecord,
    RecordChanges,
    ThreadTurn,
)
from engramdb.timeutil import now_us, to_us

Mode = Literal["hybrid", "vector", "keyword"]
RECORD_FIELDS = {
    "text",
    "id",
    "user_id",
    "agent_id",
    "thread_id",
    "type",
    "metadata",
    "tags",
    "source",
    "importance",
    "occurred_at",
    "expires_at",
    "valid_from",
    "valid_to",
}


class Engine:
    """Validation, chunking, embedding, retrieval and fusion over one store."""

    def __init__(self, settings: Settings, embedder: Embedder, store: Store) -> None:
        self.settings = settings
        self.embedder = embedder
        self.store = store
        self._embed_lock = threading.Lock()
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

    def close(self) -> None:
        """Release the cache's connections, then persist derived indexes and close the store."""
        self.cache.close()
        self.store.close()

    # ------------------------------------------------------------------ helpers

    @property
    def max_chunk_tokens(self) -> int:
        """The chunk size: the setting, or the embedder's window."""
        return self.settings.max_chunk_tokens or self.embedder.max_tokens

    def count_tokens(self, text: str) -> int:
        """Measure text with the embedder's tokenizer (outside code: its failures are wrapped).

        Raises:
            EmbeddingError: the tokenizer raised or returned something other than an integer.
        """
        try:
            return operator.index(self.embedder.count_tokens(text))
        except EngramError:
            raise
        except Exception as exc:
            raise EmbeddingError(
                f"embedder {self.embedder.name!r} failed to count tokens "
                f"({type(exc).__name__}; the cause is chained and logged)"
            ) from exc

    def embed(self, texts: Sequence[str], *, query: bool = False) -> np.ndarray:
        """Embed texts in batches, checking the (untrusted) output of the embedder."""
        if not texts:
            return np.empty((0, self.embedder.dim), np.float32)
        parts = []
        step = self.settings.embed_batch_size * 8
        for i in range(0, len(texts), step):
            batch = list(texts[i : i + step])
            try:
                raw = self.embedder.embed(batch, query=query)
            except EngramError:
                raise
            except Exception as exc:  # the embedder is outside code: wrap whatever it raises
                raise EmbeddingError(
                    f"embedder {self.embedder.name!r} failed "
                    f"({type(exc).__name__}; the cause is chained and logged)"
                ) from exc
            parts.append(check_vectors(raw, len(batch), self.embedder.dim, self.embedder.name))
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def _time(self, value: Any, field: str) -> int | None:
        return None if value is None else to_us(value, field)

    def _prepare(self, item: dict[str, Any], defaults: dict[str, Any]) -> PreparedRecord:
        if not RECORD_FIELDS.issuperset(item):
            unknown = sorted(set(item) - RECORD_FIELDS)
            raise ValidationError(f"unknown record field(s) {unknown}", fields=unknown)
        f = {**defaults, **{k: val for k, val in item.items() if val is not None}}
        s = self.settings
        text = v.check_text(f.get("text"), s)
        caller_id = f.get("id") is not None
        rid = v.check_id(f["id"]) if caller_id else new_id()
        metadata = v.check_metadata(f.get("metadata"), s)
        tags = v.check_tags(f.get("tags"), s)
        occurred = self._time(f.get("occurred_at"), "occurred_at") or now_us()
        vf = self._time(f.get("valid_from"), "valid_from")
        vt = self._time(f.get("valid_to"), "valid_to")
        if vf is not None and vt is not None and vt <= vf:
            raise ValidationError("valid_to must be after valid_from", field="valid_to")
        return PreparedRecord(
            id=rid,
            caller_id=caller_id,
            text=text,
            content_hash=v.content_hash(text),
            type=v.check_type(f.get("type") or "semantic"),
            user_id=v.check_scope(f.get("user_id"), "user_id") or "",
            agent_id=v.check_scope(f.get("agent_id"), "agent_id") or "",
            thread_id=v.check_scope(f.get("thread_id"), "thread_id") or "",
            metadata_json=(
                json.dumps(metadata, ensure_ascii=False, allow_nan=False) if metadata else "{}"
            ),
            tags_json=json.dumps(tags, ensure_ascii=False) if tags else "[]",
            source=v.check_source(f.get("source")) or "",
            importance=v.check_importance(f.get("importance")),
            occurred_at=occurred,
            valid_from=vf,
            valid_to=vt,
            expires_at=self._time(f.get("expires_at"), "expires_at"),
        )

    def _chunk_and_embed(self, records: list[PreparedRecord]) -> None:
        spans: list[tuple[PreparedRecord, int, int]] = []
        counter = self.count_tokens if self.max_chunk_tokens else None
        for rec in records:
            for start, end in chunk_text(rec.text, self.max_chunk_tokens, counter or len):
                spans.append((rec, start, end))
        vectors = self.embed([r.text[s:e] for r, s, e in spans])
        with gc_paused():
            for (rec, s, e), vec in zip(spans, vectors, strict=True):
                rec.chunks.append(
                    PreparedChunk(s, e, vec, index_text(rec.text[s:e], rec.occurred_at))
                )

    # ------------------------------------------------------------------ thread context

    def _index_with_context(self, records: list[PreparedRecord], stored: list[ThreadTurn]) -> None:
        """Give new messages their neighbouring turns (stored and new) in their keyword text."""
        window = self.settings.context_window
        seq: list[tuple[tuple[int, int, int], str, PreparedRecord | None]] = [
            ((t.occurred_at, 0, i), t.text, None) for i, t in enumerate(stored)
        ]
        seq += [((r.occurred_at, 1, i), r.text, r) for i, r in enumerate(records)]
        seq.sort(key=lambda item: item[0])
        for pos, (_, _, rec) in enumerate(seq):
            if rec is None:
                continue
            context = [
                x[1] for x in seq[max(0, pos - window) : pos] + seq[pos + 1 : pos + 1 + window]
            ]
            for ch in rec.chunks:
                ch.index_text = index_text(rec.text[ch.start : ch.end], rec.occurred_at, context)

    def _reindex_thread(
        self, namespace: str, thread_id: str, start: int, end: int, skip: set[str]
    ) -> None:
        """Re-index the messages of a thread whose context window reaches ``[start, end]``.

        Called after messages in that time range were added, edited or deleted, so that
        their neighbours' keyword text names the current turns. ``skip``: records already
        indexed with their context in the same write.
        """
        window = self.settings.context_window
        if window == 0 or not thread_id:
            return
        turns = self.store.thread_turns(namespace, thread_id, start, end, 2 * window)
        inside = [i for i, t in enumerate(turns) if start <= t.occurred_at <= end]
        if inside:
            lo, hi = inside[0] - window, inside[-1] + window
        else:  # the range is now empty (a delete): re-index the turns on either side of it
            after = next((i for i, t in enumerate(turns) if t.occurred_at > end), len(turns))
            lo, hi = after - window, after + window - 1
        texts: list[tuple[int, str]] = []
        for i in range(max(0, lo), min(len(turns), hi + 1)):
            turn = turns[i]
            if turn.record_id in skip:
                continue
            context = [
                t.text for t in turns[max(0, i - window) : i] + turns[i + 1 : i + 1 + window]
            ]
            for cid, a, b in turn.chunks:
                texts.append((cid, index_text(turn.text[a:b], turn.occurred_at, context)))
        self.store.set_index_texts(namespace, texts)

    # ------------------------------------------------------------------ records

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
                    prepared.append(self._prepare(data, defaults))
                except ValidationError as exc:
                    if on_error == "abort":
                        exc.details["index"] = i
                        exc.message = f"item {i}: {exc.message}"
                        exc.args = (exc.message,)
                        raise
                    rejected[i] = exc.message
                    prepared.append(None)
        good = [p for p in prepared if p is not None]
        self._chunk_and_embed(good)
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
        return out

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
        if not isinstance(messages, list | tuple) or not messages:
            raise ValidationError("messages must be a non-empty list", field="messages")
        if len(messages) > self.settings.max_batch:
            raise ValidationError(
                f"more than max_batch={self.settings.max_batch} messages", field="messages"
            )
        events: list[PreparedEvent] = []
        records: list[PreparedRecord] = []
        base = now_us()
        for i, m in enumerate(messages):
            if not isinstance(m, dict):
                raise ValidationError(f"message {i} must be an object", field="messages", index=i)
            extra = set(m) - {"role", "content", "occurred_at", "metadata", "name"}
            if extra:
                raise ValidationError(f"message {i}: unknown field(s) {sorted(extra)}", index=i)
            role = m.get("role")
            if not isinstance(role, str) or not v.SCOPE_PATTERN.match(role):
                raise ValidationError(f"message {i}: role must be a non-empty string", index=i)
            text = v.check_text(m.get("content"), self.settings, field=f"messages[{i}].content")
            ts = self._time(m.get("occurred_at"), "occurred_at") or base + i
            meta = v.check_metadata(m.get("metadata"), self.settings)
            name = m.get("name")
            payload: dict[str, Any] = {"role": role, "content": text}
            if name is not None:
                payload["name"] = v.check_scope(name, "name")
            if meta:
                payload["metadata"] = meta
            ev_id = new_id()
            events.append(
                PreparedEvent(
                    ev_id,
                    thread_id,
                    user,
                    role,
                    "message",
                    json.dumps(payload, ensure_ascii=False),
                    ts,
                )
            )
            if remember:
                rec = self._prepare(
                    {
                        "text": text,
                        "type": "message",
                        "thread_id": thread_id,
                        "user_id": user or None,
                        "agent_id": agent_id,
                        "metadata": {**meta, "role": role, **({"name": name} if name else {})},
                        "occurred_at": m.get("occurred_at"),
                    },
                    {},
                )
                rec.occurred_at = ts
                rec.event_id = ev_id
                records.append(rec)
        self._chunk_and_embed(records)
        window = self.settings.context_window
        if records and window:
            start = min(r.occurred_at for r in records)
            end = max(r.occurred_at for r in records)
            stored = self.store.thread_turns(namespace, thread_id, start, end, window)
            self._index_with_context(records, stored)
        results = self.store.add_records(namespace, records, "abort", events=events)
        if not remember:
            return [AddResult(i, "written", None) for i in range(len(events))]
        if records and window:
            # The earlier (and any later) turns now have a new neighbour: correct their index.
            # A separate transaction: the keyword index is derived, and the new turns were
            # already written with their context above.
            written = {r.record.id for r in results if r.outcome == "written" and r.record}
            self._reindex_thread(namespace, thread_id, start, end, written)
        return results

    def get(self, namespace: str, record_id: str) -> MemoryRecord:
        """Return one record or raise NotFoundError."""
        v.check_namespace(namespace)
        found = self.cache.records(
            namespace,
            [v.check_id(record_id)],
            lambda ids: self.store.get_records(namespace, ids),
        )
        if not found:
            raise NotFoundError(
                f"record {record_id!r} not found in namespace {namespace!r}", id=record_id
            )
        return found[0]

    def get_many(self, namespace: str, ids: Sequence[str]) -> list[MemoryRecord]:
        """Return the records that exist among ``ids``, in the order given."""
        v.check_namespace(namespace)
        if isinstance(ids, str) or not isinstance(ids, Sequence):
            raise ValidationError("ids must be a list of record ids", field="ids")
        if len(ids) > self.settings.max_top_k:
            raise ValidationError(f"more than max_top_k={self.settings.max_top_k} ids", field="ids")
        return self.cache.records(
            namespace,
            [v.check_id(i) for i in ids],
            lambda wanted: self.store.get_records(namespace, wanted),
        )

    def build_filter(
        self,
        filters: dict[str, Any] | None,
        shortcuts: dict[str, Any],
        valid_at: datetime | str | None,
        include_expired: bool,
    ) -> Node | None:
        """Combine a filter object, scope shortcuts, valid_at and the expiry rule into one tree."""
        node = parse(filters, self.settings.max_filter_clauses)
        items: list[Node] = [] if node is None else [node]
        for key, value in shortcuts.items():
            if value is None:
                continue
            if key == "tags":
                tags = v.check_tags(value if not isinstance(value, str) else [value], self.settings)
                items.append(Cmp("tags", "tags", "$contains", tuple(tags)))
            elif key == "type":
                items.append(Cmp("str", "type", "$eq", v.check_type(value)))
            else:
                items.append(Cmp("str", key, "$eq", v.check_scope(value, key)))
        if valid_at is not None:
            items.append(ValidAt(to_us(valid_at, "valid_at")))
        if not include_expired:
            items.append(Live(now_us()))
        if not items:
            return None
        return items[0] if len(items) == 1 else Bool("and", tuple(items))

    def list_page(
        self, namespace: str, node: Node | None, limit: int, cursor: str | None, descending: bool
    ) -> RecordPage:
        """Return a keyset page ordered by id (time-ordered ids: oldest first by default)."""
        v.check_namespace(namespace)
        limit = v.check_limit(limit, self.settings, "limit")
        after = None if cursor is None else _decode_cursor(cursor, "a")
        if after is not None:
            after = v.check_id(after, "cursor")
        rows = self.store.list_records(namespace, node, limit + 1, after, descending)
        more = len(rows) > limit
        rows = rows[:limit]
        nxt = _encode_cursor("a", rows[-1].id) if more and rows else None
        return RecordPage(rows, nxt)

    def count(self, namespace: str, node: Node | None) -> int:
        """Count matching records."""
        v.check_namespace(namespace)
        return self.store.count_records(namespace, node)

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
        if expected_version is not None and (
            isinstance(expected_version, bool) or not isinstance(expected_version, int)
        ):
            raise ValidationError("expected_version must be an integer", field="expected_version")
        s = self.settings
        ch = RecordChanges()
        clear: set[str] = set()
        given = {k: val for k, val in fields.items() if val is not None}
        if not given and not fields.get("clear"):
            raise ValidationError("nothing to update: give text, metadata, tags or another field")
        if "text" in given:
            ch.text = v.check_text(given["text"], s)
            ch.content_hash = v.content_hash(ch.text)
            spans = chunk_text(ch.text, self.max_chunk_tokens, self.count_tokens)
            vecs = self.embed([ch.text[a:b] for a, b in spans])
            when = _occurred_us(self.get(namespace, record_id))
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
            if name not in ("importance", "valid_from", "valid_to", "expires_at"):
                raise ValidationError(f"cannot clear {name!r}", field="clear")
            clear.add(name)
        ch.clear = frozenset(clear)
        after = self.store.update_record(namespace, record_id, ch, expected_version)
        self.cache.invalidate_records(namespace, [record_id])
        if ch.text is not None and after.type == "message" and after.thread_id:
            # The message and its neighbours index each other's text: re-index them all.
            when = _occurred_us(after)
            self._reindex_thread(namespace, after.thread_id, when, when, set())
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
        if gone.type == "message" and gone.thread_id:
            # Its neighbours indexed its text as context: re-index them without it.
            when = _occurred_us(gone)
            self._reindex_thread(namespace, gone.thread_id, when, when, set())

    def delete_all(self, namespace: str, node: Node | None, everything: bool) -> int:
        """Delete every record matching the filter; an empty filter needs ``everything``."""
        v.check_namespace(namespace)
        if node is None and not everything:
            raise ValidationError(
                "delete_all without a filter would delete the whole namespace; pass all=True",
                field="filters",
            )
        return self.store.delete_records(namespace, None, node)

    def history(self, namespace: str, record_id: str) -> list[HistoryEntry]:
        """Return the change history of a record (also after it was deleted)."""
        v.check_namespace(namespace)
        record_id = v.check_id(record_id)
        entries = self.store.history(namespace, record_id)
        live: list[MemoryRecord] | None = None
        if not entries or entries[0].op != "add":
            live = self.store.get_records(namespace, [record_id])
            first = entries[0].before if entries else (live[0].to_dict() if live else None)
            if first is not None:
                entries.insert(0, _derived_add(namespace, record_id, first))
        if not entries:
            raise NotFoundError(
                f"no history for record {record_id!r} in namespace {namespace!r}", id=record_id
            )
        self._fill_add_images(namespace, record_id, entries, live)
        return entries

    def _fill_add_images(
        self,
        namespace: str,
        record_id: str,
        entries: list[HistoryEntry],
        live: list[MemoryRecord] | None,
    ) -> None:
        """Derive the after-image of ``add`` entries stored (or derived) without one.

        It is the record as inserted: the before-image of the next change, or, when there
        was none, the live record (``live``: already read, or None to read it here).
        """
        for i, entry in enumerate(entries):
            if entry.op != "add" or entry.after is not None:
                continue
            if i + 1 < len(entries):
                entry.after = entries[i + 1].before
            else:
                if live is None:
                    live = self.store.get_records(namespace, [record_id])
                entry.after = live[0].to_dict() if live else None

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
    ) -> SearchPage:
        """Hybrid / vector / keyword search with fusion, threshold and paging."""
        v.check_namespace(namespace)
        query = v.check_text(query, self.settings, field="query")
        top_k = v.check_limit(top_k, self.settings)
        if mode not in ("hybrid", "vector", "keyword"):
            raise ValidationError(
                f"mode must be hybrid, vector or keyword, not {mode!r}", field="mode"
            )
        if threshold is not None and (
            isinstance(threshold, bool)
            or not isinstance(threshold, int | float)
            or not -1.0 <= threshold <= 1.0
        ):
            raise ValidationError("threshold is a cosine similarity in [-1, 1]", field="threshold")
        if cursor is not None:
            offset = int(_decode_cursor(cursor, "o"))
        offset = v.check_offset(offset)
        key = {
            "query": query,  # exactly as validated: the embedder sees the raw text
            "top_k": top_k,
            "filter": _node_key(node),
            "user_id": user_id,
            "mode": mode,
            "threshold": threshold,
            "offset": offset,
            "embedder": [self.embedder.name, self.embedder.dim],
            "vector": None
            if query_vector is None
            else hashlib.sha256(np.asarray(query_vector, np.float32).tobytes()).hexdigest(),
            "settings": [
                self.settings.search_pool,
                self.settings.hybrid_fusion,
                self.settings.hybrid_vector_weight,
                self.settings.rrf_k,
            ],
        }
        cutoff = _live_cutoff(node)

        def load() -> tuple[SearchPage, int | None]:
            # Read before the search: an answer hiding expired records holds until the next
            # record of the namespace expires (a change of expires_at is a write).
            horizon = None
            if cutoff is not None and self.cache.keeps_answers:
                horizon = self.store.next_expiry(namespace, cutoff)
            page = self._search(
                namespace, query, top_k, node, user_id, mode, threshold, offset, query_vector
            )
            return page, horizon

        return self.cache.search(namespace, key, load)

    def _search(
        self,
        namespace: str,
        query: str,
        top_k: int,
        node: Node | None,
        user_id: str | None,
        mode: Mode,
        threshold: float | None,
        offset: int,
        query_vector: np.ndarray | None,
    ) -> SearchPage:
        """Run a validated search (the uncached path of ``search``)."""
        need = offset + top_k
        # A fixed floor keeps the fused order the same from one page to the next, and convex
        # fusion normalises over the pool: 50 candidates gave LoCoMo Recall@10 0.757, 100 0.771.
        pool = max(need * 2, self.settings.search_pool)
        if mode == "vector":
            # No fusion: the exact similarity order is final, so hydrating a large pool only
            # costs time (~50 us per record). The slack covers records with several chunks.
            pool = max(need * 2, 20)
        qvec = None
        if mode != "keyword" or threshold is not None:
            qvec = query_vector if query_vector is not None else self.embed([query], query=True)[0]
        full = node
        if user_id is not None:
            uc: Node = Cmp("str", "user_id", "$eq", user_id)
            full = uc if node is None else Bool("and", (uc, node))
        vec_hits = []
        kw_hits = []
        if mode in ("hybrid", "vector"):
            assert qvec is not None
            # Vector mode needs no fusion: the page's records may come with the candidates.
            vec_hits = self.store.vector_candidates(
                namespace, qvec, user_id, node, pool, with_records=mode == "vector"
            )
        if mode in ("hybrid", "keyword"):
            kw_hits = self.store.keyword_candidates(namespace, match_expression(query), full, pool)
        # Rank and fuse on ids; read whole records only for the page returned (hydrating
        # every candidate of both pools cost ~40% of a hybrid search).
        rows: dict[int, tuple[str, int, int, int]] = {}
        unlocated: set[int] = set()
        for h in (*vec_hits, *kw_hits):
            if h.located is None:
                unlocated.add(h.chunk_id)
            else:
                rows[h.chunk_id] = h.located
        if unlocated:
            rows.update(self.store.locate(namespace, list(unlocated), full))
        vec_rank: list[str] = []
        kw_rank: list[str] = []
        best_chunk: dict[str, tuple[int, int, int, int]] = {}
        vec_score: dict[str, float] = {}
        kw_score: dict[str, float] = {}
        for h in vec_hits:
            if h.chunk_id not in rows:
                continue
            rid, version, s, e = rows[h.chunk_id]
            if rid not in vec_score:
                vec_score[rid] = h.score
                vec_rank.append(rid)
                best_chunk[rid] = (h.chunk_id, version, s, e)
        for h in kw_hits:
            if h.chunk_id not in rows:
                continue
            rid, version, s, e = rows[h.chunk_id]
            if rid not in kw_score:
                kw_score[rid] = h.score
                kw_rank.append(rid)
                best_chunk.setdefault(rid, (h.chunk_id, version, s, e))
        # Ties are broken by record id, never by internal chunk ids (which differ between a
        # store and its export re-imported elsewhere), so ranks and fused scores are stable.
        vec_rank.sort(key=lambda rid: (-vec_score[rid], rid))
        kw_rank.sort(key=lambda rid: (-kw_score[rid], rid))
        if qvec is not None and mode != "vector":
            missing = [rid for rid in kw_rank if rid not in vec_score]
            if missing:
                scores = self.store.vector_scores([best_chunk[r][0] for r in missing], qvec)
                for rid, sc in zip(missing, scores, strict=True):
                    vec_score[rid] = sc
        if mode == "vector":
            fused = {rid: vec_score[rid] for rid in vec_rank}
        elif mode == "keyword":
            fused = {rid: kw_score[rid] for rid in kw_rank}
        elif self.settings.hybrid_fusion == "convex":
            fused = convex(vec_score, kw_score, self.settings.hybrid_vector_weight)
        else:
            fused = rrf([vec_rank, kw_rank], k=self.settings.rrf_k)
        vpos = {rid: i + 1 for i, rid in enumerate(vec_rank)}
        kpos = {rid: i + 1 for i, rid in enumerate(kw_rank)}
        ordered = sorted(fused, key=lambda rid: (-fused[rid], rid))
        if threshold is not None:
            ordered = [rid for rid in ordered if vec_score.get(rid, -2.0) >= threshold]
        page = ordered[offset:need]
        # Records the store read with the candidates are built here, for the page only.
        records: dict[str, MemoryRecord] = {}
        wanted = set(page)
        for h in vec_hits:
            if h.record is not None and h.located is not None:
                rid = h.located[0]
                if rid in wanted and rid not in records:
                    records[rid] = h.record()
        unread = [rid for rid in page if rid not in records]
        if unread:
            records.update((r.id, r) for r in self.store.get_records(namespace, unread))
        hits = []
        for rid in page:
            rec = records.get(rid)
            if rec is None:  # deleted between the two reads: as if it had been before both
                continue
            _, version, s, e = best_chunk[rid]
            # Updated in between: the span belongs to the old text, so show the whole record.
            matched = rec.text[s:e] if rec.version == version else rec.text
            parts = ScoreParts(
                vector=vec_score.get(rid),
                keyword=kw_score.get(rid),
                fused=fused[rid],
                vector_rank=vpos.get(rid),
                keyword_rank=kpos.get(rid),
            )
            hits.append(SearchHit(rec, fused[rid], parts, matched))
        nxt = _encode_cursor("o", need) if len(ordered) > need else None
        return SearchPage(hits, nxt)

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
        v.check_namespace(namespace)
        thread = v.check_thread(thread_id)
        v.check_action(action)
        data = v.check_metadata(payload, self.settings)
        ev = PreparedEvent(
            new_id(),
            thread,
            v.check_scope(user_id, "user_id") or "",
            v.check_scope(actor, "actor") or "",
            action,
            json.dumps(data, ensure_ascii=False),
            now_us(),
        )
        return self.store.append_events(namespace, [ev])[0]

    def events(
        self, namespace: str, thread_id: str, since: datetime | str | None, limit: int
    ) -> list[Event]:
        """Return a thread's events in order."""
        v.check_namespace(namespace)
        thread = v.check_scope(thread_id, "thread_id") or ""
        limit = v.check_limit(limit, self.settings, "limit")
        since_us = self._time(since, "since")
        return self.cache.events(
            namespace,
            [thread, since_us, limit],
            lambda: self.store.list_events(namespace, thread, since_us, limit),
        )

    def set_slots(
        self,
        namespace: str,
        thread_id: str,
        values: dict[str, Any],
        expected_version: int | None,
        user_id: str | None,
    ) -> Slots:
        """Compare-and-set a thread's working-memory slots."""
        v.check_namespace(namespace)
        thread = v.check_thread(thread_id)
        v.check_slot_values(values, self.settings)
        if expected_version is not None and (
            isinstance(expected_version, bool) or not isinstance(expected_version, int)
        ):
            raise ValidationError("expected_version must be an integer", field="expected_version")
        return self.store.set_slots(
            namespace, thread, values, expected_version, v.check_scope(user_id, "user_id") or ""
        )

    def get_slots(self, namespace: str, thread_id: str) -> Slots:
        """Return a thread's slots."""
        v.check_namespace(namespace)
        thread = v.check_scope(thread_id, "thread_id") or ""
        return self.cache.slots(namespace, thread, lambda: self.store.get_slots(namespace, thread))

    def snapshot(self, namespace: str, thread_id: str, limit: int = 1000) -> Snapshot:
        """Return the thread's events and slots as data and as readable text."""
        events = self.events(namespace, thread_id, None, limit)
        slots = self.get_slots(namespace, thread_id)
        lines = [f"Thread {thread_id} (namespace {namespace})"]
        if slots.values:
            lines.append(f"Working memory (version {slots.version}):")
            for name, value in slots.values.items():
                lines.append(f"  {name}: {json.dumps(value, ensure_ascii=False)}")
        lines.append(f"Events ({len(events)}):")
        for e in events:
            when = e.timestamp.isoformat(timespec="seconds")
            if e.action == "message":
                lines.append(f"  [{when}] {e.actor}: {e.payload.get('content', '')}")
            else:
                lines.append(
                    f"  [{when}] {e.actor or '-'} {e.action} "
                    f"{json.dumps(e.payload, ensure_ascii=False)}"
                )
        return Snapshot(namespace, thread_id, events, slots, "\n".join(lines))

    # ------------------------------------------------------------------ admin

    def forget(
        self,
        namespace: str,
        user_id: str | None,
        thread_id: str | None,
        everything: bool,
        compact: bool = False,
    ) -> dict[str, int]:
        """Erase a subject for good (records, history, events, slots)."""
        v.check_namespace(namespace)
        user = v.check_scope(user_id, "user_id")
        thread = v.check_scope(thread_id, "thread_id")
        for name, flag in (("namespace", everything), ("compact", compact)):
            if not isinstance(flag, bool):
                raise ValidationError(
                    f"{name} must be true or false, not {type(flag).__name__}", field=name
                )
        if user is None and thread is None and not everything:
            raise ValidationError("forget needs user_id, thread_id, or namespace=True")
        return self.store.forget(namespace, user, thread, everything, compact)

    def health(self) -> dict[str, Any]:
        """Check each component: the store answers, the embedder embeds."""
        out: dict[str, Any] = {"store": self.store.health()}
        try:
            self.embed(["health check"], query=True)
            out["embedder"] = {"status": "ok", "name": self.embedder.name, "dim": self.embedder.dim}
        except EngramError as exc:
            out["embedder"] = {"status": "error", "message": exc.message}
        out["status"] = "ok" if all(c["status"] == "ok" for c in out.values()) else "degraded"
        return out

    # ------------------------------------------------------------------ whole-store calls

    def maintenance(self, doing: str) -> Maintenance:
        """The store as :class:`Maintenance`, or a clear error when it has no such role."""
        if not isinstance(self.store, Maintenance):
            raise _unsupported(self.store, "Maintenance", doing)
        return self.store

    def transfer(self, doing: str) -> Transfer:
        """The store as :class:`Transfer`, or a clear error when it has no such role."""
        if not isinstance(self.store, Transfer):
            raise _unsupported(self.store, "Transfer", doing)
        return self.store

    def namespaces(self) -> dict[str, int]:
        """Return every namespace with its record count."""
        return self.store.namespaces()

    def stats(self, namespace: str) -> dict[str, Any]:
        """Counts and sizes of one namespace and of the whole store, with embedder and cache."""
        store = self.maintenance("stats")
        return {
            "namespace": namespace,
            "namespace_stats": store.stats(namespace),
            "store": store.stats(),
            "embedder": {"name": self.embedder.name, "dim": self.embedder.dim},
            "cache": self.cache.stats(),
        }

    def doctor(self, repair: bool) -> dict[str, Any]:
        """Check integrity and that every derived index agrees with the tables."""
        return self.maintenance("doctor").doctor(repair)

    def backup(self, path: Path) -> None:
        """Write a consistent online copy of the whole store to ``path``."""
        self.maintenance("backup").backup(path)

    def restore(self, path: Path) -> None:
        """Replace the store's content with a backup."""
        self.maintenance("restore").restore(path)

    def last_write_lsn(self) -> str | None:
        """The store's position after this process's last write (read-your-writes)."""
        return self.store.last_write_lsn()

    def export(
        self,
        path: str | Path,
        namespace: str | None,
        node: Node | None,
        vectors: bool,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Write records (with history), events and slots as versioned JSONL; return records."""
        store = self.transfer("export")
        return export_jsonl(self, store, Path(path), namespace, node, vectors, progress)

    def import_(
        self,
        path: str | Path,
        namespace: str | None,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, int]:
        """Read an export back (idempotent: same ids, same history)."""
        return import_jsonl(self, self.transfer("import"), Path(path), namespace, progress)

    def reembed(
        self, embedder: Embedder, batch: int = 256, progress: Callable[[int], None] | None = None
    ) -> int:
        """Re-embed every chunk with another embedder (resumable), then switch to it."""
        count = reembed(self.maintenance("reembed"), embedder, batch, progress)
        self.embedder = embedder
        return count


def _unsupported(store: Store, role: str, doing: str) -> NotSupportedError:
    return NotSupportedError(
        f"the {store.backend} store cannot {doing}: it does not implement {role}",
        backend=store.backend,
        capability=role,
    )


def _node_key(node: Node | None) -> Any:
    """A filter tree as JSON-ready data for a cache key.

    The expiry cutoff ``Live(now)`` differs on every call, so it becomes a marker; the cached
    answer carries its own expiry horizon instead (see ``Engine.search``).
    """
    if node is None:
        return None
    if isinstance(node, Live):
        return ["live"]
    if isinstance(node, Bool):
        return ["bool", node.op, [_node_key(item) for item in node.items]]
    if isinstance(node, ValidAt):
        return ["valid_at", node.at_us]
    return ["cmp", node.kind, node.field, node.op, node.value]


def _live_cutoff(node: Node | None) -> int | None:
    """The time of the filter's ``Live`` clause (records expired by then are hidden)."""
    if isinstance(node, Live):
        return node.now_us
    if isinstance(node, Bool):
        found = [c for c in (_live_cutoff(item) for item in node.items) if c is not None]
        return min(found) if found else None
    return None


def _occurred_us(record: MemoryRecord) -> int:
    """A stored record's ``occurred_at`` in epoch microseconds (always set on write)."""
    return now_us() if record.occurred_at is None else to_us(record.occurred_at, "occurred_at")


def _encode_cursor(kind: str, value: Any) -> str:
    raw = json.dumps({kind: value}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, kind: str) -> Any:
    try:
        if not isinstance(cursor, str) or len(cursor) > 512:
            raise ValueError
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        value = data[kind]
        if kind == "o" and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ValueError
        if kind == "a" and not isinstance(value, str):
            raise ValueError
        return value
    except (ValueError, KeyError, TypeError) as exc:
        raise ValidationError(
            f"cursor {cursor!r} is invalid or from another call", field="cursor"
        ) from exc


def iter_batches(items: Iterable[Any], size: int) -> Iterable[list[Any]]:
    """Yield lists of at most ``size`` items."""
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _derived_add(namespace: str, record_id: str, first: dict[str, Any]) -> HistoryEntry:
    """The ``add`` entry of a record whose add left no history row.

    Adds write no history row (the record as inserted is the before-image of its first
    change, or the live record; its time is ``created_at``): that row was a third of the
    write path's random index inserts. Stores written before that keep their ``add`` rows,
    which are returned as stored. The derived entry has ``seq`` 0 (before every stored row)
    and the version of the first image (1 unless the record was imported at a later one).
    """
    return HistoryEntry(
        seq=0,
        record_id=record_id,
        namespace=namespace,
        op="add",
        version=int(first.get("version") or 1),
        before=None,
        after=None,
        at=datetime.fromisoformat(first["created_at"]),
    )
