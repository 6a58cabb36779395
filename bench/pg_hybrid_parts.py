"""The parts of a filtered hybrid search on PostgreSQL, each timed alone, beside the whole
search (``engramdb bench postgres``; issue 21's floor).

A hybrid search runs its vector side on the caller's thread and its keyword side (with its
hits' vector scores) on a helper at the same time, fuses, then makes one read of the
candidates within reach of the page (``Store.locate_whole``). The keyword side can at best
hide behind the vector side, so the least such a search takes on a machine is its vector
side plus that read: their sum per query is the ``floor`` reported here. Each part replays
exactly what the search asked the store (captured from the search itself), right after it,
one part at a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bench.common import latency
from bench.data import Workload
from bench.store import K

PARTS = (
    "search",
    "vector side alone",
    "keyword side and its scores alone",
    "both sides at once",
    "read after fusion alone",
    "floor: vector side + read after fusion",
)


def _timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
    t0 = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - t0


def _keyword_side(search: Any, ns: str, q: Any, match: str, full: Any, limit: int) -> None:
    """The helper's work in a hybrid search: the keyword candidates, then their vectors'
    scores."""
    hits = search.keyword_candidates(ns, match, full, limit)
    search.vector_scores([h.chunk_id for h in hits], q)


def hybrid_parts(mem: Any, w: Workload, nq: int) -> dict[str, dict[str, float]]:
    """Latency of each of :data:`PARTS` over the filtered hybrid searches of queries
    ``0..nq-1`` (query vectors given, so no embedding is timed)."""
    store = mem.engine.store
    search = store._search  # the parts below are the store's own steps, not public calls
    asked: dict[str, tuple[Any, ...]] = {}
    real_sides, real_read = store.hybrid_candidates, store.locate_whole

    def sides(*args: Any) -> Any:
        asked["sides"] = args
        return real_sides(*args)

    def read(*args: Any) -> Any:
        asked["read"] = args
        return real_read(*args)

    out: dict[str, list[float]] = {p: [] for p in PARTS}
    store.hybrid_candidates, store.locate_whole = sides, read
    try:
        for i in range(nq):
            asked.clear()
            user = w.user_name(w.query_users[i])
            text, qv = w.query_texts[i], w.query_vectors[i]
            whole = _timed(mem.search, text, top_k=K, user_id=user, query_vector=qv)
            if "sides" not in asked or "read" not in asked:
                continue  # a query with no keyword to match is a vector search
            ns, q, match, uid, node, full, limit = asked["sides"]
            vec = _timed(search.vector_candidates, ns, q, uid, node, limit, fusion_pool=True)
            kw = _timed(_keyword_side, search, ns, q, match, full, limit)
            both = _timed(real_sides, *asked["sides"])
            after = _timed(real_read, *asked["read"])
            for part, t in zip(PARTS, (whole, vec, kw, both, after, vec + after), strict=True):
                out[part].append(t)
    finally:
        del store.hybrid_candidates, store.locate_whole
    return {part: latency(ts) for part, ts in out.items()}
