"""``LegacyMemory``: a team's current store (Chroma, a SQL table) with the ``Memory`` verbs
that :class:`~engramdb.sidebyside.DualWriteMemory` and
:class:`~engramdb.sidebyside.ShadowReadMemory` use, so it can run beside engramdb before
the switch (as either side).

It speaks through a writable source adapter (:class:`~engramdb.ops.sources.WritableSource`)
and the same mapping ``migrate`` reads with: a record written here is laid out as the
team's code lays it out (the mapping read backwards), and an item read here is mapped as
``migrate`` maps it. Ids are engramdb's on both sides, so ``reconcile`` and the shadow
comparisons match records by id:

* an item this class writes gets the source id ``engram:<engramdb id>`` (the id of the
  record, given by the caller or new), read back as that engramdb id; ``migrate`` gives
  such an item the same id, so a later migration finds it already there;
* an item that was in the store before gets the id ``migrate`` derives from its source
  id (``derived_id``), and carries ``migrated_from`` like a migrated record does.

Search embeds the query with the legacy side's own embedder (the model its vectors came
from) and asks the store for the nearest items (Chroma). A store without vector search (a
SQL table, Redis turns) is searched by embedding every item of the collection in scope and
ranking by cosine similarity: exact, and as slow as the collection is large, which is what
a side-by-side check of a conversation store needs; without an embedder it refuses search
with a ValidationError. Filters, cursors and ``valid_at`` are engramdb's and are refused;
the other read options are accepted so the same call runs on both sides.

For ``reconcile`` it also lists its records by id (``list``, ``get_many``) under one
namespace: the collection's name by default (the namespace ``migrate`` gives it), or the
one given.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import numpy as np

from engramdb.config import Settings
from engramdb.embedders import Embedder
from engramdb.engine import validation as v
from engramdb.errors import NotFoundError, ValidationError
from engramdb.ids import new_id
from engramdb.models import (
    WRITABLE_RECORD_FIELDS,
    AddResult,
    MemoryRecord,
    RecordPage,
    ScoreParts,
    SearchHit,
    SearchPage,
)
from engramdb.ops.legacy import ENGRAM_PREFIX, derived_id
from engramdb.ops.mapping import SkipItem, apply_mapping, parse_mapping
from engramdb.ops.sources import SourceItem, WritableSource, open_source

Records = list[MemoryRecord]  # named here: the class's own ``list`` hides the builtin
_Scored = list[tuple[MemoryRecord, float]]
_SCOPES = ("user_id", "agent_id", "thread_id", "type", "source")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class LegacyMemory:
    """A writable legacy store behind the ``Memory`` verbs (see the module docstring).

    Args:
        source: a source URL (``chroma:///dir?collection=NAME``, ``sql:…``) or an open
            writable adapter.
        embedder: the legacy side's embedder (its vectors' model); needed to write to
            Chroma and to search.
        mapping: the mapping (default: the source's built-in one).
        collection: the collection (Chroma) written and read; default the source's only one.
        namespace: the engramdb namespace its records are read as (default: the collection).

    Raises:
        ValidationError: the source cannot be written, or the collection is ambiguous.
    """

    def __init__(
        self,
        source: str | WritableSource,
        *,
        embedder: Embedder | None = None,
        mapping: dict[str, Any] | None = None,
        collection: str | None = None,
        namespace: str | None = None,
    ) -> None:
        src = open_source(source, mapping) if isinstance(source, str) else source
        if not isinstance(src, WritableSource):
            src.close()
            raise ValidationError(
                f"a {src.kind} source cannot be written (Chroma, SQL tables and Redis can)",
                field="source",
            )
        self.source = src
        raw = mapping if mapping is not None else src.builtin_mapping()
        if raw is None:
            raise ValidationError("a mapping is needed for this source", field="mapping")
        self.spec = parse_mapping(raw)
        names = list(getattr(src, "collections", None) or [getattr(src, "collection", "")])
        if collection is None and len(names) != 1:
            raise ValidationError(
                f"name the collection to use (the source has {names})", field="collection"
            )
        self.collection = collection or names[0]
        self.namespace = namespace or self.collection
        self.embedder = embedder
        self._derived: dict[str, str] | None = None  # engramdb id -> older item's source id

    @property
    def unheld_fields(self) -> frozenset[str]:
        """The record fields this store cannot keep (the mapping gives them no column, or a
        constant): ``reconcile`` leaves them out of its comparison."""
        held = {"id", "text", "metadata"}
        held.update(n for n in (*_SCOPES, "occurred_at") if self._field(n))
        return frozenset(WRITABLE_RECORD_FIELDS) - held

    # --- writes -------------------------------------------------------------------------

    def add(self, text: Any, **kwargs: Any) -> list[AddResult]:
        """Add one text (with ``user_id=``… keywords) or a list of record dicts; each
        written item keeps its ``id`` when given (a dual write's replay), else gets one."""
        items = (
            [dict(i) for i in text]
            if isinstance(text, list)
            else [{"text": text, **{k: val for k, val in kwargs.items() if val is not None}}]
        )
        records = [self._record_of(item) for item in items]
        self.source.put(self.collection, [self._item_of(r) for r in records])
        return [AddResult(i, "written", r) for i, r in enumerate(records)]

    def add_messages(
        self,
        thread_id: str,
        messages: Sequence[dict[str, Any]],
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        remember: bool = True,
    ) -> list[AddResult]:
        """Add conversation turns as ``message`` records of the thread (``role`` in their
        metadata). A legacy store keeps turns only as records: with ``remember=False`` (a
        dual write's replay, whose message records follow as an ``add``) nothing is written.
        """
        if not remember:
            return []
        items = [
            {
                "text": m.get("content"),
                "thread_id": thread_id,
                "type": "message",
                "user_id": user_id,
                "agent_id": agent_id,
                "metadata": {**(m.get("metadata") or {}), "role": m.get("role")},
            }
            for m in messages
        ]
        return self.add(items)

    def update(self, id: str, **fields: Any) -> MemoryRecord:
        """Change a record's text, scope fields or metadata (the item is rewritten)."""
        old = self.get(id)
        fields.pop("expected_version", None)
        item = {
            "text": fields.get("text", old.text),
            "id": old.id,
            **{k: getattr(old, k) for k in _SCOPES if getattr(old, k)},
            "metadata": {**old.metadata, **(fields.get("metadata") or {})},
            "occurred_at": old.occurred_at,
        }
        item.update({k: fields[k] for k in _SCOPES if fields.get(k) is not None})
        record = self._record_of(item)
        sid = self._source_id(id)
        if sid is not None and not sid.startswith(ENGRAM_PREFIX):
            # An older item is rewritten under its own source id, so it keeps the id and
            # provenance migrate gives it.
            self.source.put(self.collection, [self._item_of(record, sid)])
            return self.get(id)
        # Every adapter's put replaces by source id, so the item is rewritten where it is
        # (a Redis turn keeps its place in its conversation; one that changes conversation
        # leaves the old one first, since Redis looks for it in the new one only).
        if record.thread_id != old.thread_id:
            self._delete_source(id)
        self.source.put(self.collection, [self._item_of(record)])
        return record

    def delete(self, id: str) -> None:
        """Delete a record. Raises NotFoundError when it is not there."""
        self.get(id)
        self._delete_source(id)

    # --- reads --------------------------------------------------------------------------

    def get(self, id: str) -> MemoryRecord:
        """The record with this engramdb id. Raises NotFoundError when absent."""
        sid = self._source_id(id)
        found = self.source.fetch(self.collection, [sid]) if sid is not None else []
        record = self._read(found[0]) if found else None
        if record is None:
            raise NotFoundError(f"record {id!r} not found in the legacy store", id=id)
        return record

    def get_many(self, ids: Sequence[str]) -> Records:
        """The records among ``ids`` that exist, in the order given."""
        out = []
        for rid in ids:
            try:
                out.append(self.get(rid))
            except NotFoundError:
                continue
        return out

    def list(
        self,
        filters: dict[str, Any] | None = None,
        *,
        limit: int = 100,
        cursor: str | None = None,
        include_expired: bool = False,
    ) -> RecordPage:
        """A page of records in id order (``cursor``: the last id of the page before).
        Each page reads the collection; filters are refused."""
        if filters:
            raise ValidationError("the legacy store lists without filters", field="filters")
        records = sorted(self._records(), key=lambda r: r.id)
        after = [r for r in records if cursor is None or r.id > cursor]
        page = after[:limit]
        more = len(after) > limit
        return RecordPage(page, page[-1].id if more and page else None)

    def namespaces(self) -> dict[str, int]:
        """The one namespace its records are read as, with their count."""
        return {self.namespace: self.source.count_where(self.collection, None)}

    def with_namespace(self, namespace: str) -> LegacyMemory:
        """Itself for its own namespace (it holds no other).

        Raises:
            ValidationError: another namespace.
        """
        if namespace != self.namespace:
            raise ValidationError(
                f"the legacy store holds namespace {self.namespace!r} only, not {namespace!r}",
                field="namespace",
            )
        return self

    def count(
        self,
        filters: dict[str, Any] | None = None,
        *,
        valid_at: Any = None,
        include_expired: bool = False,
        tags: Any = None,
        **scope: Any,
    ) -> int:
        """How many items, optionally in one scope (``user_id=``…); filters are refused."""
        _refuse(filters=filters, valid_at=valid_at, tags=tags)
        return self.source.count_where(self.collection, self._where(scope))

    def search(
        self,
        query: str,
        *,
        top_k: int = 10,
        filters: dict[str, Any] | None = None,
        threshold: float | None = None,
        offset: int = 0,
        cursor: str | None = None,
        valid_at: Any = None,
        tags: Any = None,
        mode: str | None = None,
        include_expired: bool = False,
        include_entities: bool = False,
        **scope: Any,
    ) -> SearchPage:
        """The ``top_k`` items nearest the query (by the legacy side's own vectors, or by
        embedding the items in scope); ``mode`` and the include flags are accepted and
        make no difference."""
        _refuse(filters=filters, cursor=cursor, valid_at=valid_at, tags=tags, offset=offset)
        if self.embedder is None:
            raise ValidationError(
                f"the {self.source.kind} store cannot search without the legacy embedder",
                field="source",
            )
        vector = self.embedder.embed([query], query=True)[0]
        nearest = getattr(self.source, "nearest", None)
        if nearest is not None:
            scored = [
                (record, 1.0 - distance)
                for item, distance in nearest(self.collection, vector, top_k, self._where(scope))
                if (record := self._read(item)) is not None
            ]
        else:
            scored = self._scan(vector, top_k, scope)
        hits = [
            SearchHit(record, score, ScoreParts(vector=score, fused=score), "")
            for record, score in scored
            if threshold is None or score >= threshold
        ]
        return SearchPage(hits)

    def _scan(self, vector: np.ndarray, top_k: int, scope: dict[str, Any]) -> _Scored:
        """Every record in scope, embedded and ranked by cosine similarity."""
        self._where(scope)  # the same refusal of a scope the mapping does not map
        wanted = {k: str(val) for k, val in scope.items() if val is not None}
        records = [
            r for r in self._records() if all(getattr(r, k) == val for k, val in wanted.items())
        ]
        if not records:
            return []
        q = np.asarray(vector, dtype=np.float32)
        q = q / (np.linalg.norm(q) or 1.0)
        scores: list[float] = []
        for start in range(0, len(records), 256):
            embs = np.asarray(
                self.embedder.embed([r.text for r in records[start : start + 256]])  # type: ignore[union-attr]
            )
            norms = np.linalg.norm(embs, axis=1)
            norms[norms == 0] = 1.0
            scores.extend(float(x) for x in (embs @ q) / norms)
        ranked = sorted(zip(records, scores, strict=True), key=lambda p: (-p[1], p[0].id))
        return ranked[:top_k]

    def _records(self) -> Records:
        """Every readable record of the collection."""
        items = self.source.fetch(self.collection, self.source.source_ids(self.collection))
        return [r for i in items if (r := self._read(i)) is not None]

    def close(self) -> None:
        """Close the adapter."""
        self.source.close()

    def __enter__(self) -> LegacyMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the mapping, both ways -----------------------------------------------------------

    def _field(self, name: str) -> str | None:
        spec = self.spec.fields.get(name)
        return spec if isinstance(spec, str) else None

    def _where(self, scope: dict[str, Any]) -> dict[str, Any] | None:
        terms = []
        for key, value in scope.items():
            column = self._field(key) if key in _SCOPES else None
            if value is None:
                continue
            if column is None:
                raise ValidationError(f"the mapping does not map {key!r}", field=key)
            terms.append({column: value})
        if len(terms) > 1 and self.source.kind == "chroma":
            return {"$and": terms}
        return {k: val for t in terms for k, val in t.items()} or None

    def _record_of(self, item: dict[str, Any]) -> MemoryRecord:
        text = v.check_text(item.get("text"), _LIMITS)
        rid = v.check_id(item["id"]) if item.get("id") else new_id()
        meta = v.check_metadata(item.get("metadata"), _LIMITS)
        when = item.get("occurred_at")
        return MemoryRecord(
            id=rid,
            namespace=self.namespace,
            text=text,
            type=str(item.get("type") or "semantic"),
            user_id=item.get("user_id"),
            agent_id=item.get("agent_id"),
            thread_id=item.get("thread_id"),
            metadata=dict(meta),
            source=item.get("source"),
            # Like engramdb, a record without a time happened when it was written.
            occurred_at=when if isinstance(when, dt.datetime) else dt.datetime.now(dt.UTC),
            content_hash=v.content_hash(text),
        )

    def _item_of(self, record: MemoryRecord, sid: str | None = None) -> SourceItem:
        """A record laid out as the mapping reads it, under source id ``sid`` (default:
        ``engram:<its id>``)."""
        text_field = self._field("text") or "$document"
        fields: dict[str, Any] = {text_field: record.text}
        if text_field != "$document":
            fields["$document"] = record.text
        for name in _SCOPES:
            column, value = self._field(name), getattr(record, name)
            if column and value:
                fields[column] = value
        when = self._field("occurred_at")
        if when and record.occurred_at is not None:
            fields[when] = record.occurred_at.isoformat()
        meta = dict(record.metadata)
        if sid is not None:  # an older item: its provenance is derived when read
            meta.pop("migrated_from", None)
        if isinstance(self.spec.metadata, list | str) and self.spec.metadata not in ("*",):
            if isinstance(self.spec.metadata, str):
                fields[self.spec.metadata] = meta
            else:
                fields.update({k: meta[k] for k in self.spec.metadata if k in meta})
        elif self.spec.metadata == "*":
            fields.update({k: val for k, val in meta.items() if k not in fields})
        vector = None
        if self.embedder is not None:
            vector = self.embedder.embed([record.text])[0]
        elif self.source.kind == "chroma":
            raise ValidationError("writing to Chroma needs the legacy embedder", field="embedder")
        sid = sid or ENGRAM_PREFIX + record.id
        id_field = self._field("id")
        if id_field and id_field != "$id":
            fields[id_field] = sid
        return SourceItem(sid, self.collection, fields, vector)

    def _read(self, item: SourceItem) -> MemoryRecord | None:
        """An item mapped as ``migrate`` maps it (None: it would be skipped)."""
        try:
            mapped = apply_mapping(self.spec, item.fields, item.source_id, item.embedding)
        except SkipItem:
            return None
        values = mapped.values
        sid = mapped.source_id
        ref = f"{self.source.kind}:{self.collection}/{sid}"
        rid = sid[len(ENGRAM_PREFIX) :] if sid.startswith(ENGRAM_PREFIX) else derived_id(ref)
        meta = dict(values.get("metadata") or {})
        if not sid.startswith(ENGRAM_PREFIX):
            meta.setdefault("migrated_from", ref)
        when = values.get("occurred_at")
        return MemoryRecord(
            id=rid,
            namespace=self.namespace,
            text=values["text"],
            type=values.get("type") or "semantic",
            user_id=values.get("user_id"),
            agent_id=values.get("agent_id"),
            thread_id=values.get("thread_id"),
            metadata=meta,
            source=values.get("source"),
            occurred_at=None if when is None else _EPOCH + dt.timedelta(microseconds=when),
            content_hash=v.content_hash(values["text"]),
        )

    def _source_id(self, rid: str) -> str | None:
        """The source id holding engramdb id ``rid`` (an older item's is found by deriving
        every source id's engramdb id, again when an id is not among them: the team's own
        code keeps writing the store while it runs beside engramdb)."""
        found = self.source.fetch(self.collection, [ENGRAM_PREFIX + rid])
        if found:
            return found[0].source_id
        if self._derived is None or rid not in self._derived:
            kind = self.source.kind
            self._derived = {
                derived_id(f"{kind}:{self.collection}/{sid}"): sid
                for sid in self.source.source_ids(self.collection)
                if not sid.startswith(ENGRAM_PREFIX)
            }
        return self._derived.get(rid)

    def _delete_source(self, rid: str) -> None:
        sid = self._source_id(rid)
        if sid is not None:
            self.source.remove(self.collection, [sid])


def _refuse(**options: Any) -> None:
    """Refuse the engine's read options a legacy store cannot honour."""
    for name, value in options.items():
        if value not in (None, 0, [], {}):
            raise ValidationError(f"the legacy store does not support {name!r}", field=name)


# The engine's text and metadata limits, as a default store has them.
_LIMITS = Settings()
