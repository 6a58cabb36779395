"""A cached search answer is shared only by searches the engine would rank alike."""

from __future__ import annotations

from typing import Any

import pytest

from engramdb.config import Settings
from engramdb.embedders import HashEmbedder
from engramdb.engine import search_key as sk


def key(**settings: Any) -> dict[str, Any]:
    return sk.search_key(
        "where does ana live",
        top_k=10,
        node=None,
        user_id="u1",
        mode="hybrid",
        threshold=None,
        offset=0,
        embedder=HashEmbedder(),
        query_vector=None,
        settings=Settings(**settings),
    )


def test_fusion_settings_and_ranking_rules_part_the_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    base = key()
    assert key() == base
    assert key(hybrid_vector_weight=0.5) != base
    assert key(question_penalty=0.0) != base
    # Another release's ranking rules: the same search must not reuse this release's page.
    monkeypatch.setattr(sk, "RANKING", sk.RANKING + 1)
    assert key() != base
