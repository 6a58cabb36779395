"""Catching the derived indexes up is shared work outside a search's ``search_timeout_ms``.

After a bulk load the first search catches the vector index (and the keyword index) up with
every new row. Counted against that search's budget, a large backlog failed it, and a
catch-up interrupted by the budget would start again with every next search. The budget's
clock is ``engramdb.deadline.clock``: the catch-up below moves it an hour on, so the tests
never depend on timing.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from engramdb import HashEmbedder, Memory, QueryTimeoutError, Settings
from engramdb import deadline as dl
from engramdb.stores.sqlite import keyword_index
from engramdb.stores.sqlite.vector_index import VectorIndex


class Clock:
    """A clock that only moves when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_slow_vector_catch_up_does_not_fail_the_search(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    monkeypatch.setattr(dl, "clock", clock)
    mem = Memory(f"sqlite:///{tmp_path / 'a.db'}", embedder=HashEmbedder(16))
    mem.add([f"fact {i} about the garden" for i in range(40)], user_id="u")
    real_apply = VectorIndex.apply

    def slow_apply(self: VectorIndex, inserts: list, deletes: list) -> None:  # type: ignore[type-arg]
        clock.now += 3600.0  # an hour of catching up
        real_apply(self, inserts, deletes)

    monkeypatch.setattr(VectorIndex, "apply", slow_apply)
    hits = mem.search("garden", user_id="u", top_k=5).hits
    assert len(hits) == 5
    monkeypatch.setattr(VectorIndex, "apply", real_apply)
    # The budget still bounds the search's own reads: past it, the search fails clearly.
    mem.add("one more fact about the garden", user_id="u")
    ticks = iter([1000.0] + [9000.0] * 1000)
    monkeypatch.setattr(dl, "clock", lambda: next(ticks))
    with pytest.raises(QueryTimeoutError):
        mem.search("garden", user_id="u")
    mem.close()


def test_a_slow_keyword_catch_up_does_not_fail_the_search(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    monkeypatch.setattr(dl, "clock", clock)
    settings = Settings(url=f"sqlite:///{tmp_path / 'k.db'}", keyword_index_min_rows=0)
    mem = Memory(settings=settings, embedder=HashEmbedder(16))
    mem.add([f"note {i} about tomatoes" for i in range(40)], user_id="u")
    ks = mem._engine.store._keywords  # type: ignore[attr-defined]
    ks.keyword_candidates(mem.namespace, '"tomatoes"', None, 10)  # kicks the builder
    waited = time.monotonic() + 60
    while ks._index is None and time.monotonic() < waited:  # built on a background thread
        time.sleep(0.02)
    assert ks._index is not None, "the keyword index was never built"
    mem.add("a late note about tomatoes", user_id="u")
    real_catch_up = keyword_index.catch_up

    def slow_catch_up(index: keyword_index.KeywordIndex, c: object) -> bool:
        clock.now += 3600.0
        return real_catch_up(index, c)  # type: ignore[arg-type]

    monkeypatch.setattr("engramdb.stores.sqlite.keyword_search.catch_up", slow_catch_up)
    before = ks.answered
    hits = mem.search("tomatoes", user_id="u", mode="keyword", top_k=50).hits
    assert "a late note about tomatoes" in [h.record.text for h in hits]
    assert ks.answered == before + 1  # the derived index answered, caught up
    mem.close()
