"""What the LangGraph store knows of its engramdb namespace as a whole, per write generation.

Two facts are derived from the namespace's content and kept while its write generation (it
rises in every write transaction, from any process) stays the same:

* **coverage**: whether every record of the namespace is an indexed item carrying a given
  set of label tags. A search across all items under a prefix such as ``("users",)`` then
  needs neither the tag filter nor the type filter, which every record would pass, and runs
  on engramdb's plain vector and keyword paths instead of the filtered ones. It is two
  counts, both exact: records of the namespace (of any origin, expired or not) against
  indexed items with the tags; equal means no record could fail the filters.
* **namespaces**: the distinct namespace tuples of the items under a set of label tags, for
  ``list_namespaces``, read once per generation rather than on every call.

A value is kept only when the generation was the same before and after it was computed, so
a write racing the computation is never folded into a stale entry.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from engramdb.integrations.langgraph.layout import INDEXED
from engramdb.memory import Memory

MAX_ENTRIES = 256  # kept (tags -> value) pairs per kind; cleared whole past this
T = TypeVar("T")


class Census:
    """Coverage and namespace sets of one engramdb namespace (see module docstring)."""

    def __init__(self, memory: Memory) -> None:
        self.memory = memory
        self._lock = threading.Lock()
        self._covers: dict[tuple[str, ...], tuple[int, bool]] = {}
        self._spaces: dict[tuple[str, ...], tuple[int, frozenset[tuple[str, ...]]]] = {}

    def generation(self) -> int:
        """The namespace's write generation now."""
        return self.memory._write_generation()

    def covers(self, tags: list[str]) -> tuple[int, bool]:
        """``(generation, covered)``: whether every record of the namespace is an indexed
        item carrying all ``tags``, as of that generation."""

        def compute() -> bool:
            every = self.memory.count(include_expired=True)
            mine = self.memory.count(type=INDEXED, tags=tags or None, include_expired=True)
            return every == mine

        return self._kept(self._covers, tuple(tags), compute)

    def namespaces(
        self, tags: list[str], read: Callable[[], frozenset[tuple[str, ...]]]
    ) -> frozenset[tuple[str, ...]]:
        """The distinct namespaces of the items carrying ``tags`` (``read`` lists them)."""
        return self._kept(self._spaces, tuple(tags), read)[1]

    def _kept(
        self,
        cache: dict[tuple[str, ...], tuple[int, T]],
        key: tuple[str, ...],
        compute: Callable[[], T],
    ) -> tuple[int, T]:
        gen = self.generation()
        with self._lock:
            hit = cache.get(key)
        if hit is not None and hit[0] == gen:
            return hit
        value = compute()
        if self.generation() == gen:
            with self._lock:
                if len(cache) >= MAX_ENTRIES:
                    cache.clear()
                cache[key] = (gen, value)
        return gen, value
