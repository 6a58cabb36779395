"""What a cached search answer is keyed on, and until when it holds. Pure: no I/O.

Two searches share a cached answer only when everything that shapes the page is equal: the
query as validated, the paging, the filter tree, the embedder, the settings of fusion and
the release's ranking rules.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from engramdb.config import Settings
from engramdb.embedders.base import Embedder
from engramdb.query.filters import Bool, Live, Node, ValidAt

# The engine's ranking rules, numbered. Bump it with any change that ranks the same
# candidates differently under the same settings (2: the keyword side scaled by its best
# score), so that a shared cache never serves one release's page to another release.
RANKING = 2


def search_key(
    query: str,
    *,
    top_k: int,
    node: Node | None,
    user_id: str | None,
    mode: str,
    threshold: float | None,
    offset: int,
    embedder: Embedder,
    query_vector: np.ndarray | None,
    settings: Settings,
) -> dict[str, Any]:
    """The cache key of one validated search, as JSON-ready data."""
    return {
        "query": query,  # exactly as validated: the embedder sees the raw text
        "top_k": top_k,
        "filter": node_key(node),
        "user_id": user_id,
        "mode": mode,
        "threshold": threshold,
        "offset": offset,
        "embedder": [embedder.name, embedder.dim],
        "vector": None
        if query_vector is None
        else hashlib.sha256(np.asarray(query_vector, np.float32).tobytes()).hexdigest(),
        "ranking": RANKING,
        "settings": [
            settings.search_pool,
            settings.hybrid_fusion,
            settings.hybrid_vector_weight,
            settings.rrf_k,
            settings.entity_ranking,
            settings.entity_ranking_weight,
            settings.answer_kind_weight,
            settings.question_penalty,
            settings.extract != "off",
        ],
    }


def node_key(node: Node | None) -> Any:
    """A filter tree as JSON-ready data for a cache key.

    The expiry cutoff ``Live(now)`` differs on every call, so it becomes a marker; the cached
    answer carries its own expiry horizon instead (see :func:`live_cutoff`).
    """
    if node is None:
        return None
    if isinstance(node, Live):
        return ["live"]
    if isinstance(node, Bool):
        return ["bool", node.op, [node_key(item) for item in node.items]]
    if isinstance(node, ValidAt):
        return ["valid_at", node.at_us]
    return ["cmp", node.kind, node.field, node.op, node.value]


def live_cutoff(node: Node | None) -> int | None:
    """The time of the filter's ``Live`` clause (records expired by then are hidden)."""
    if isinstance(node, Live):
        return node.now_us
    if isinstance(node, Bool):
        found = [c for c in (live_cutoff(item) for item in node.items) if c is not None]
        return min(found) if found else None
    return None
