"""The PostgreSQL store's search calls: each hands its call to
:class:`~engramdb.stores.postgres.search.Search` inside the retry.

A part of :class:`~engramdb.stores.postgres.store.PostgresStore` (a mixin, so the store's
one class keeps every public method while its module stays short); it relies on the store's
``_search`` part and on what :func:`~engramdb.stores.postgres.faults.retried` reads from it.
"""

from __future__ import annotations

import numpy as np

from engramdb.query.filters import Node
from engramdb.stores.postgres.faults import Breaker, RetryPolicy, retried
from engramdb.stores.postgres.search import Search
from engramdb.stores.prepared import ChunkHit, WholeHit


class SearchCalls:
    """The ``Store`` search methods of the PostgreSQL store (see the module docstring)."""

    _search: Search
    retry_policy: RetryPolicy  # read by ``retried``
    breaker: Breaker

    @retried
    def vector_candidates(
        self,
        namespace: str,
        query: np.ndarray,
        user_id: str | None,
        node: Node | None,
        limit: int,
        with_records: int = 0,
    ) -> list[ChunkHit]:
        """Return the best chunks by cosine similarity that pass the filter (with the
        records of every hit when ``with_records`` asks for any: they share one statement)."""
        return self._search.vector_candidates(
            namespace, query, user_id, node, limit, bool(with_records)
        )

    @retried
    def hybrid_candidates(
        self,
        namespace: str,
        query: np.ndarray,
        match: str,
        user_id: str | None,
        node: Node | None,
        full: Node | None,
        limit: int,
    ) -> tuple[list[ChunkHit], list[ChunkHit], dict[int, float]]:
        """Both sides' candidates, side by side on two connections (``Search``)."""
        return self._search.hybrid_candidates(namespace, query, match, user_id, node, full, limit)

    @retried
    def vector_scores(self, chunk_ids: list[int], query: np.ndarray) -> list[float]:
        """Return the cosine similarity of the query to each chunk (NaN when it is gone)."""
        return self._search.vector_scores(chunk_ids, query)

    @retried
    def keyword_candidates(
        self, namespace: str, match: str, node: Node | None, limit: int
    ) -> list[ChunkHit]:
        """Return the best chunks by ``ts_rank`` (higher is better), ties by chunk id."""
        return self._search.keyword_candidates(namespace, match, node, limit)

    @retried
    def chunk_rids(self, namespace: str, chunk_ids: list[int]) -> dict[int, int]:
        """Map chunk id -> its record's row id, for the chunks of the namespace that exist."""
        return self._search.chunk_rids(namespace, chunk_ids)

    @retried
    def locate(
        self, namespace: str, chunk_ids: list[int], node: Node | None
    ) -> dict[int, tuple[str, int, int, int]]:
        """Map chunk id -> (record id, version, start, end) for chunks passing the filter."""
        return self._search.locate(namespace, chunk_ids, node)

    @retried
    def locate_whole(
        self, namespace: str, chunk_ids: list[int], node: Node | None
    ) -> dict[int, WholeHit]:
        """``locate``, with each chunk's record and answer kinds, in one statement."""
        return self._search.locate_whole(namespace, chunk_ids, node)
