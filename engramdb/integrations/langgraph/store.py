"""``EngramStore``: LangGraph's long-term store (``BaseStore``) over one engramdb namespace.

LangGraph's stores implement two batch primitives over typed ops and inherit the rest
(``get/put/delete/search/list_namespaces`` and their ``a…`` forms); so does this one.
Items are engramdb records laid out as :mod:`.layout` describes; a search with a query is
engramdb's default (hybrid) search, one without lists the matching items. Every write goes
through ``Memory`` (validation, limits, history, one transaction per call), so the keys,
limits and tenancy of the engramdb namespace apply to the whole LangGraph store.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
from langgraph.store.base import (
    BaseStore,
    GetOp,
    IndexConfig,
    Item,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
)

from engramdb._async_memory import AsyncMemory
from engramdb._facade import call_async
from engramdb.config import Settings
from engramdb.embedders.base import Embedder
from engramdb.errors import ConflictError, ValidationError
from engramdb.integrations.langgraph.census import Census
from engramdb.integrations.langgraph.layout import (
    DEEP,
    INDEXED,
    RAW,
    RAW_SCOPE,
    check_labels,
    index_text,
    is_deep,
    is_exact,
    label_tags,
    record_id,
    scope_labels,
    scope_of,
    value_filter,
)
from engramdb.integrations.langgraph.opening import open_memory
from engramdb.memory import Memory
from engramdb.models import MemoryRecord

PAGE = 1000  # records per engramdb call (its default max_batch and max_top_k)


class EngramStore(BaseStore):
    """LangGraph's ``BaseStore`` on engramdb (see module docstring).

    Args:
        url_or_memory: a store URL (opened here, closed by :meth:`close`) or a ``Memory`` /
            ``AsyncMemory`` to share; its namespace holds the whole LangGraph store.
        index: LangGraph's ``IndexConfig``: ``fields`` to embed (default the whole value),
            and ``embed``/``dims`` to use another embedder than engramdb's own (with a URL
            only: a Memory keeps its embedder). ``False`` stores nothing for search by
            query (items are still listed and filtered).
        scope_depth: how many leading labels form engramdb's user scope (2 fits LangMem's
            ``("memories", "{user_id}")``); a search within such a prefix is scoped.
        ttl: LangGraph's ``TTLConfig`` (``default_ttl`` minutes, ``refresh_on_read``).
        search_mode: engramdb's search mode for a query: ``hybrid`` (default: vector and
            keyword relevance fused), ``vector`` or ``keyword``.

    Example::

        store = EngramStore("sqlite:///agent.db", index={"fields": ["text"]})
        store.put(("users", "alice"), "food", {"text": "likes ramen"})
        store.search(("users", "alice"), query="what does she eat?")
    """

    supports_ttl = True

    def __init__(
        self,
        url_or_memory: str | Memory | AsyncMemory,
        *,
        index: IndexConfig | Literal[False] | None = None,
        namespace: str | None = None,
        scope_depth: int = 2,
        ttl: TTLConfig | None = None,
        search_mode: Literal["hybrid", "vector", "keyword"] = "hybrid",
        embedder: str | Embedder | None = None,
        settings: Settings | None = None,
    ) -> None:
        if search_mode not in ("hybrid", "vector", "keyword"):
            raise ValidationError(
                f"search_mode {search_mode!r} is not hybrid, vector or keyword",
                field="search_mode",
            )
        self._mode: Literal["hybrid", "vector", "keyword"] = search_mode
        if isinstance(scope_depth, bool) or not isinstance(scope_depth, int) or scope_depth < 1:
            raise ValidationError("scope_depth must be a positive integer", field="scope_depth")
        if index and index.get("embed") is not None:
            if embedder is not None:
                raise ValidationError(
                    "give the embedder either as index['embed'] or as embedder=", field="index"
                )
            embedder = ConfigEmbedder(index)
        self.memory, self._owned = open_memory(
            url_or_memory, namespace=namespace, embedder=embedder, settings=settings
        )
        self.index_config = index or None
        self._indexing = index is not False
        self._fields: list[str] | None = (index or {}).get("fields")
        self._depth = scope_depth
        self.ttl_config = ttl
        self._census = Census(self.memory)

    def close(self) -> None:
        """Close the store if this object opened it (a shared Memory stays open)."""
        if self._owned:
            self.memory.close()

    def __enter__(self) -> EngramStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the two primitives

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Run ops in order of effect: every put (the last per item wins), then the reads."""
        ops = list(ops)
        puts: dict[tuple[tuple[str, ...], str], PutOp] = {}
        for op in ops:
            if isinstance(op, PutOp):
                puts[(check_labels(op.namespace), _check_key(op.key))] = op
            elif not isinstance(op, GetOp | SearchOp | ListNamespacesOp):
                raise ValidationError(f"unknown store operation {type(op).__name__}", field="op")
        if puts:
            self._apply_puts(list(puts.values()))
        gets = [op for op in ops if isinstance(op, GetOp)]
        found = self._get_many(gets) if gets else {}
        results: list[Result] = []
        for op in ops:
            if isinstance(op, GetOp):
                results.append(found.get(record_id(op.namespace, op.key)))
            elif isinstance(op, SearchOp):
                results.append(self._search(op))
            elif isinstance(op, ListNamespacesOp):
                results.append(self._list_namespaces(op))
            else:
                results.append(None)
        return results

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """Async :meth:`batch`, in engramdb's shared thread pool (the loop never blocks)."""
        return await call_async("abatch", self.batch, list(ops))

    # ------------------------------------------------------------------ writes

    def _apply_puts(self, puts: list[PutOp]) -> None:
        deletes = [record_id(op.namespace, op.key) for op in puts if op.value is None]
        writes = [op for op in puts if op.value is not None]
        for i in range(0, len(deletes), 200):
            self.memory.delete_all({"id": {"$in": deletes[i : i + 200]}})
        if not writes:
            return
        rows = [self._row(op) for op in writes]
        existing = set()
        for i in range(0, len(rows), PAGE):
            existing |= {r.id for r in self.memory.get_many([r["id"] for r in rows[i : i + PAGE]])}
        new = [r for r in rows if r["id"] not in existing]
        for i in range(0, len(new), PAGE):
            try:
                self.memory.add(new[i : i + PAGE])
            except ConflictError:
                # Another writer added one of these ids meanwhile: update each instead.
                for row in new[i : i + PAGE]:
                    self._upsert(row)
        for row in rows:
            if row["id"] in existing:
                self._update(row)

    def _row(self, op: PutOp) -> dict[str, Any]:
        if not isinstance(op.value, dict):
            raise ValidationError(
                f"a LangGraph value is a JSON object, got {type(op.value).__name__}",
                field="value",
            )
        labels = op.namespace
        indexed = self._indexing and op.index is not False
        text = index_text(op.value, op.index or self._fields) if indexed else ""
        metadata: dict[str, Any] = {"ns": list(labels), "key": op.key, "value": op.value}
        expires = None
        if op.ttl is not None:
            if isinstance(op.ttl, bool) or not isinstance(op.ttl, int | float) or op.ttl <= 0:
                raise ValidationError("ttl must be a positive number of minutes", field="ttl")
            metadata["ttl"] = op.ttl
            expires = datetime.now(UTC) + timedelta(minutes=op.ttl)
        rid = record_id(labels, op.key)
        scope = scope_of(labels, self._depth)
        return {
            "id": rid,
            "text": text if text.strip() else (op.key if op.key.strip() else "-"),
            "type": INDEXED if text.strip() else RAW,
            "user_id": scope if text.strip() else RAW_SCOPE + scope,
            "agent_id": rid,
            "tags": label_tags(labels) + ([DEEP] if is_deep(labels, self._depth) else []),
            "metadata": metadata,
            "expires_at": expires,
        }

    def _update(self, row: dict[str, Any]) -> None:
        current = self.memory.get_many([row["id"]])
        if not current:
            self.memory.add([row])
            return
        rec = current[0]
        if rec.user_id != row["user_id"]:
            # Indexed <-> unindexed moves the item to the other scope, which no update changes.
            self.memory.delete(row["id"])
            self.memory.add([row])
            return
        self.memory.update(
            row["id"],
            text=None if rec.text == row["text"] else row["text"],
            metadata=row["metadata"],
            type=row["type"],
            expires_at=row["expires_at"],
            clear=["expires_at"] if row["expires_at"] is None and rec.expires_at else None,
        )

    def _upsert(self, row: dict[str, Any]) -> None:
        try:
            self.memory.add([row])
        except ConflictError:
            self._update(row)

    # ------------------------------------------------------------------ reads

    def _get_many(self, gets: list[GetOp]) -> dict[str, Item]:
        for op in gets:
            check_labels(op.namespace)
            _check_key(op.key)
        ids = list(dict.fromkeys(record_id(op.namespace, op.key) for op in gets))
        now = datetime.now(UTC)
        records = []
        for i in range(0, len(ids), PAGE):
            records += self.memory.get_many(ids[i : i + PAGE])
        live = [r for r in records if r.expires_at is None or r.expires_at > now]
        self._refresh([r for r, op in _pairs(live, gets) if op.refresh_ttl])
        return {r.id: _plain_item(r) for r in live}

    def _search(self, op: SearchOp) -> list[SearchItem]:
        prefix = check_labels(op.namespace_prefix, prefix=True)
        plan = self._plan(prefix, op.filter)
        out, records = self._run(op, plan)
        if plan.generation is not None and self._census.generation() != plan.generation:
            # A write landed while the search ran without the filters it had found
            # redundant: run it again with them, so no record it added can slip in.
            out, records = self._run(op, self._plan(prefix, op.filter, trust_census=False))
        if op.refresh_ttl:
            self._refresh(records)
        return out

    def _plan(
        self, prefix: tuple[str, ...], filter: dict[str, Any] | None, trust_census: bool = True
    ) -> Plan:
        """How a search under ``prefix`` runs: engramdb filters, user scope, type.

        Within a user scope, the scope names the leading labels (no tag test for them) and
        keeps unindexed items out. Across users, each label of the prefix is a tag test and
        the type keeps unindexed items out, unless the census says every record of the
        namespace is an indexed item with those tags: then both go, and the search runs on
        engramdb's unfiltered paths (the ANN graph of the namespace, plain keyword ranking).
        """
        filters = value_filter(filter)
        user = scope_of(prefix, self._depth) if len(prefix) >= self._depth else None
        tags = label_tags(prefix, self._depth if user and is_exact(user) else 0)
        generation = None
        typed = user is None
        if user is None and trust_census:
            generation, covered = self._census.covers(tags)
            if covered:
                tags, typed = [], False
            else:
                generation = None
        if tags:
            filters["tags"] = {"$contains": tags}
        return Plan(filters, user, typed, generation)

    def _run(self, op: SearchOp, plan: Plan) -> tuple[list[SearchItem], list[MemoryRecord]]:
        filters = dict(plan.filters)
        if op.query and self._indexing:
            page = self.memory.search(
                op.query,
                top_k=op.limit,
                offset=op.offset,
                filters=filters,
                user_id=plan.user,
                # Within a scope unindexed items are in their own (raw:) scope already.
                type=INDEXED if plan.typed else None,
                mode=self._mode,
            )
            return [_item(h.record, h.score) for h in page.hits], [h.record for h in page.hits]
        if plan.user is not None:
            filters["user_id"] = {"$in": [plan.user, RAW_SCOPE + plan.user]}
        records = self._list(filters, op.offset + op.limit)[op.offset :]
        return [_item(r, None) for r in records], records

    def _list(self, filters: dict[str, Any], want: int | None) -> list[MemoryRecord]:
        """The first ``want`` matching records (all of them when None)."""
        records: list[MemoryRecord] = []
        cursor = None
        while want is None or len(records) < want:
            left = PAGE if want is None else min(PAGE, want - len(records))
            page = self.memory.list(filters, limit=left, cursor=cursor)
            records += page.records
            cursor = page.next_cursor
            if cursor is None:
                break
        return records

    def _list_namespaces(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        from langgraph.store.memory import _does_match

        tags: list[str] = []
        for cond in op.match_conditions or ():
            check_labels(tuple(cond.path), prefix=True)
            if cond.match_type == "prefix":
                tags += [f"{i}:{x}" for i, x in enumerate(cond.path) if x != "*"]
        found = self._census.namespaces(tags, lambda: self._namespaces(tags))
        spaces = [ns for ns in found if all(_does_match(c, ns) for c in op.match_conditions or ())]
        if op.max_depth is not None:
            spaces = [ns[: op.max_depth] for ns in spaces]
        ordered = sorted(set(spaces))
        return ordered[op.offset : op.offset + op.limit]

    def _namespaces(self, tags: list[str]) -> frozenset[tuple[str, ...]]:
        """Every namespace holding a live item (``tags``: of the prefix conditions).

        An item no deeper than ``scope_depth`` labels is named exactly by its user scope,
        so those come from the distinct scopes (a loose scan of engramdb's user index);
        only the items tagged deeper are read, and a scope that holds nothing but those
        names no namespace of its own.
        """
        found: set[tuple[str, ...]] = set()
        deep_in: dict[str, int] = {}
        for r in self._list({"tags": {"$contains": [DEEP, *tags]}}, None):
            if "ns" in r.metadata:
                found.add(tuple(r.metadata["ns"]))
                deep_in[r.user_id or ""] = deep_in.get(r.user_id or "", 0) + 1
        for user in self.memory._user_ids():
            labels = scope_labels(user)
            if labels is None:
                continue
            if user in deep_in and self.memory.count(user_id=user) == deep_in[user]:
                continue  # every item of the scope is deeper than it
            found.add(labels)
        return frozenset(found)

    def _refresh(self, records: Sequence[MemoryRecord]) -> None:
        """Push back the expiry of items read (``refresh_on_read``) by their own ttl."""
        now = datetime.now(UTC)
        for r in records:
            ttl = r.metadata.get("ttl")
            if isinstance(ttl, int | float) and not isinstance(ttl, bool):
                self.memory.update(r.id, expires_at=now + timedelta(minutes=ttl))


@dataclass(frozen=True, slots=True)
class Plan:
    """A search's engramdb arguments; ``generation`` is the census generation it relied on
    (None when it relied on none)."""

    filters: dict[str, Any]
    user: str | None
    typed: bool
    generation: int | None


class ConfigEmbedder:
    """An ``IndexConfig``'s ``embed`` (LangChain embeddings, a function, a provider string)
    as an engramdb embedder; its name records the model so a store never mixes two."""

    max_tokens = 8192

    def __init__(self, index: IndexConfig) -> None:
        from langgraph.store.base.embed import ensure_embeddings

        dims = index.get("dims")
        if isinstance(dims, bool) or not isinstance(dims, int) or dims < 1:
            raise ValidationError("index['dims'] must be a positive integer", field="index")
        embed = index.get("embed")
        label = (
            embed if isinstance(embed, str) else getattr(embed, "__name__", type(embed).__name__)
        )
        self._embeddings = ensure_embeddings(embed)
        self.dim = dims
        self.name = f"langgraph:{label}"

    def embed(self, texts: Sequence[str], *, query: bool = False) -> np.ndarray:
        """Embed with the configured model (queries one by one, as LangGraph does)."""
        if query:
            rows = [self._embeddings.embed_query(t) for t in texts]
        else:
            rows = self._embeddings.embed_documents(list(texts))
        return np.asarray(rows, dtype=np.float32)

    def count_tokens(self, text: str) -> int:
        """Whitespace words: the configured model's tokenizer is unknown here."""
        return len(text.split())


def _check_key(key: Any) -> str:
    if not isinstance(key, str):
        raise ValidationError(f"a key is a string, got {type(key).__name__}", field="key")
    return key


def _item(r: MemoryRecord, score: float | None = None) -> SearchItem:
    md = r.metadata
    return SearchItem(tuple(md["ns"]), md["key"], md["value"], *_times(r), score=score)


def _plain_item(r: MemoryRecord) -> Item:
    md = r.metadata
    return Item(
        value=md["value"],
        key=md["key"],
        namespace=tuple(md["ns"]),
        created_at=_times(r)[0],
        updated_at=_times(r)[1],
    )


def _times(r: MemoryRecord) -> tuple[datetime, datetime]:
    """A stored record always has both times; a missing one would be a store bug."""
    created = r.created_at or datetime.now(UTC)
    return created, r.updated_at or created


def _pairs(records: list[MemoryRecord], gets: list[GetOp]) -> list[tuple[MemoryRecord, GetOp]]:
    by_id = {record_id(op.namespace, op.key): op for op in gets}
    return [(r, by_id[r.id]) for r in records if r.id in by_id]
