"""A thread-safe LRU of query vectors: a repeated query is not embedded again."""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np


class QueryCache:
    """At most ``size`` text -> vector entries, least recently used evicted first (0: off)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, text: str) -> np.ndarray | None:
        """The cached vector of ``text``, or None."""
        with self._lock:
            hit = self._entries.get(text)
            if hit is not None:
                self._entries.move_to_end(text)
            return hit

    def put(self, text: str, vector: np.ndarray) -> None:
        """Remember ``vector`` (copied) for ``text``."""
        if not self.size:
            return
        with self._lock:
            self._entries[text] = np.array(vector, dtype=np.float32)
            self._entries.move_to_end(text)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
