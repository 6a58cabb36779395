"""Entity-aware ranking: candidates that mention the entities a query names rank higher.

The query is not parsed (spaCy would cost the search milliseconds): its word n-grams are
looked up among the namespace's known entity names and aliases, normalised as the
extraction normalises them (:func:`engramdb.extract.names.normalise`). The names are kept in
memory per namespace and read again when the namespace has changed (its write generation)
and the copy is older than ``NAMES_TTL_S``, or when it is older than ``NAMES_MAX_AGE_S``
(extraction runs after the write that queued it, so a generation alone would miss it).

Each fused candidate of the pool then gains ``entity_ranking_weight`` times the share of the
query's entities it mentions. Only what is already extracted counts: a search never waits
for the extraction queue.
"""

from __future__ import annotations

import re
import threading
import time

from engramdb.config import Settings
from engramdb.engine.fusion import within_reach
from engramdb.extract.names import normalise
from engramdb.stores.base import EntityStore, Store

NAMES_TTL_S = 2.0
NAMES_MAX_AGE_S = 30.0
MAX_NAMES = 20_000  # most mentioned entities whose names a query is matched against
MAX_NGRAM = 4  # longest name, in words, that a query is matched against
_WORD = re.compile(r"[\w&+-]+", re.UNICODE)


class _Names:
    """One namespace's entity names: normalised name or alias -> canonical entity ids."""

    __slots__ = ("by_name", "checked_at", "generation", "loaded_at")

    def __init__(self, by_name: dict[str, frozenset[int]], generation: int) -> None:
        self.by_name = by_name
        self.generation = generation
        self.loaded_at = self.checked_at = time.monotonic()


class EntityRanker:
    """Boosts the fused scores of candidates that mention the query's entities."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.entities: EntityStore | None = store if isinstance(store, EntityStore) else None
        self._names: dict[str, _Names] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Whether ranking uses entities: switched on, and the store keeps them."""
        return (
            self.settings.entity_ranking
            and self.settings.extract != "off"
            and self.entities is not None
            and self.settings.entity_ranking_weight > 0
        )

    def query_entities(self, namespace: str, query: str) -> frozenset[int]:
        """The canonical ids of the known entities whose name or alias the query contains."""
        names = self._names_of(namespace)
        if not names.by_name:
            return frozenset()
        words = [normalise(w) for w in _WORD.findall(query)]
        words = [w for w in words if w]
        found: set[int] = set()
        for n in range(1, MAX_NGRAM + 1):
            for i in range(len(words) - n + 1):
                ids = names.by_name.get(" ".join(words[i : i + n]))
                if ids:
                    found |= ids
        return frozenset(found)

    def max_boost(self) -> float:
        """The most :meth:`boost` can add to a candidate's score (the query's entities are
        not looked up for this bound)."""
        return self.settings.entity_ranking_weight if self.enabled else 0.0

    def boost(
        self, namespace: str, query: str, fused: dict[str, float], need: int
    ) -> dict[str, float]:
        """Return ``fused`` with each candidate's entity overlap with the query added.

        Only candidates that a boost could lift into the first ``need`` are read
        (:func:`~engramdb.engine.fusion.within_reach`).
        """
        if not fused or not self.enabled:
            return fused
        wanted = self.query_entities(namespace, query)
        if not wanted:
            return fused
        assert self.entities is not None
        weight = self.settings.entity_ranking_weight
        reach = within_reach(fused, need, weight)
        graphs = self.entities.record_entities(namespace, reach)
        out = dict(fused)
        for rid, graph in graphs.items():
            if rid not in out:
                continue
            shared = sum(1 for e in graph.entities if e.id in wanted)
            if shared:
                out[rid] += weight * min(shared, len(wanted)) / len(wanted)
        return out

    def _names_of(self, namespace: str) -> _Names:
        now = time.monotonic()
        cached = self._names.get(namespace)
        if cached is not None and now - cached.loaded_at < NAMES_MAX_AGE_S:
            if now - cached.checked_at < NAMES_TTL_S:
                return cached
            if self.store.generation(namespace) == cached.generation:
                cached.checked_at = now
                return cached
        with self._lock:
            generation = self.store.generation(namespace)
            assert self.entities is not None
            by_name: dict[str, set[int]] = {}
            for ent in self.entities.list_entities(namespace, None, None, None, MAX_NAMES):
                for name in (ent.name, *ent.aliases):
                    key = normalise(name)
                    if key:
                        by_name.setdefault(key, set()).add(ent.id)
            fresh = _Names({k: frozenset(v) for k, v in by_name.items()}, generation)
            self._names[namespace] = fresh
            return fresh
