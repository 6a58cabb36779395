"""A hybrid search's two sides run at once on PostgreSQL (stores/postgres/side_threads.py):
same answers, the caller's context and replica floor in the helper, no pool deadlock, and
errors from either side reach the caller."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from pg_store_helpers import count_calls, open_memory

import engramdb.stores.postgres.search as postgres_search
import engramdb.stores.postgres.search_sql as search_sql
from engramdb import HashEmbedder, Memory
from engramdb.consistency import read_at_least, read_floor
from engramdb.deadline import read_budget, remaining_ms
from engramdb.engine.keyword import match_expression
from engramdb.errors import StoreError
from engramdb.query.filters import Cmp
from engramdb.stores.postgres import PostgresStore
from engramdb.stores.postgres.replica import ReplicaRouter
from engramdb.stores.postgres.side_threads import SideThreads

pytestmark_pg = pytest.mark.postgres

TEXTS = [
    f"note {i} about topic {i % 11} and place {i * 7 % 23} for project {i % 5}" for i in range(1000)
]


def _store(m: Memory) -> PostgresStore:
    store = m.engine.store
    assert isinstance(store, PostgresStore)
    return store


def test_the_helper_reads_in_the_callers_context_and_floor() -> None:
    """What the helper sees: the caller's read budget and read floor (context variables)
    and the caller thread's replica floor, which is the helper thread's own again after."""
    router = ReplicaRouter(30.0)
    sides = SideThreads(router, 2)

    def seen() -> tuple[int | None, int | None, int | None, str]:
        return router.thread_floor(), read_floor(), remaining_ms(), threading.current_thread().name

    try:
        router.note_thread_floor(1234)
        with read_at_least(777), read_budget(60_000):
            floor, carried, budget, name = sides.start(seen).result()
        assert (floor, carried) == (1234, 777)
        assert budget is not None and 0 < budget <= 60_000
        assert name.startswith("engramdb-side") and name != threading.current_thread().name
        # A caller with no floor of its own: the helper thread kept none from before.
        out: list[Any] = []
        other = threading.Thread(target=lambda: out.append(sides.start(seen).result()))
        other.start()
        other.join()
        assert out[0][:3] == (None, None, None)
        assert router.floor() == 1234  # this thread's floor is untouched
    finally:
        sides.close()
    with pytest.raises(StoreError, match="closed"):
        sides.start(seen)


@pytestmark_pg
def test_both_sides_run_at_once_and_answer_as_one_after_the_other(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each side waits for the other at a barrier: only sides run at once get past it.
    The page equals the one built from the sides called one after the other, and the
    keyword hits come with their vector scores, so the engine reads none afterwards."""
    mem = open_memory(postgres_url)
    try:
        mem.add(TEXTS, user_id="u")
        store = _store(mem)
        queries = ("topic 3 place 9", "project 4 note 17", "place 2", "note 200 about topic 2")
        sequential = {}
        for q in queries:
            with monkeypatch.context() as one_by_one:
                # The sides one after the other, as a store without helpers runs them.
                def in_turn(
                    ns: str, qv: Any, match: str, user: Any, node: Any, full: Any, limit: int
                ) -> Any:
                    vec = store.vector_candidates(ns, qv, user, node, limit)
                    return vec, store.keyword_candidates(ns, match, full, limit), {}

                one_by_one.setattr(store, "hybrid_candidates", in_turn)
                sequential[q] = [
                    (h.record.id, h.score, h.parts) for h in mem.search(q, user_id="u", top_k=50)
                ]
        barrier = threading.Barrier(2, timeout=30)
        threads: dict[str, str] = {}
        search = store._search
        for side in ("vector_candidates", "keyword_candidates"):
            real = getattr(search, side)

            def met(*args: Any, _real: Any = real, _side: str = side, **kwargs: Any) -> Any:
                threads[_side] = threading.current_thread().name
                barrier.wait()
                return _real(*args, **kwargs)

            monkeypatch.setattr(search, side, met)
        scored = count_calls(monkeypatch, store, ["vector_scores"])
        keyword_only = 0
        for q in queries:
            got = [(h.record.id, h.score, h.parts) for h in mem.search(q, user_id="u", top_k=50)]
            assert got == sequential[q], q
            keyword_only += sum(p.vector_rank is None and p.vector is not None for _, _, p in got)
        assert keyword_only > 0, "no page held a hit found by its keywords alone"
        assert threads["keyword_candidates"] != threads["vector_candidates"]
        assert scored["vector_scores"] == 0, "keyword hits came without their vector scores"
    finally:
        mem.close()


@pytestmark_pg
def test_a_pool_of_one_connection_serves_concurrent_hybrid_searches(postgres_url: str) -> None:
    """Each side holds one connection at a time and the caller waits for the helper only
    once its own is back, so even a pool of one never deadlocks."""
    mem = open_memory(postgres_url)
    mem.add(TEXTS[:80], user_id="u")
    mem.close()
    store = PostgresStore(postgres_url, pool_min=1, pool_max=1, pool_timeout_s=20)
    embedder = HashEmbedder(64)
    errors: list[BaseException] = []

    def searching(i: int) -> None:
        try:
            for j in range(8):
                query = f"topic {(i + j) % 11} place {j}"
                vec, kw, scores = store.hybrid_candidates(
                    "default",
                    embedder.embed([query])[0],
                    match_expression(query),
                    "u",
                    None,
                    Cmp("str", "user_id", "$eq", "u"),
                    20,
                )
                assert vec and kw and set(scores) == {h.chunk_id for h in kw}
        except BaseException as exc:  # reported below
            errors.append(exc)

    try:
        runs = [threading.Thread(target=searching, args=(i,)) for i in range(4)]
        for t in runs:
            t.start()
        for t in runs:
            t.join()
        assert errors == []
    finally:
        store.close()


@pytestmark_pg
def test_an_error_on_either_side_reaches_the_caller(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failing side fails the search with its own error, after the other side ended
    (the first error wins when both fail); the next search works."""
    mem = open_memory(postgres_url)
    try:
        mem.add(TEXTS[:40], user_id="u")
        search = _store(mem)._search
        ended: list[str] = []
        for side in ("vector_candidates", "keyword_candidates"):
            real = getattr(search, side)

            def tracked(*args: Any, _real: Any = real, _side: str = side, **kw: Any) -> Any:
                try:
                    return _real(*args, **kw)
                finally:
                    ended.append(_side)

            monkeypatch.setattr(search, side, tracked)
        base = {s: getattr(search, s) for s in ("vector_candidates", "keyword_candidates")}

        def failing(side: str) -> Any:
            def fail(*args: Any, **kw: Any) -> Any:
                base[side](*args, **kw)
                raise StoreError(f"{side} failed")

            return fail

        for bad in (
            ("vector_candidates",),
            ("keyword_candidates",),
            ("vector_candidates", "keyword_candidates"),
        ):
            with monkeypatch.context() as broken:
                for side in bad:
                    broken.setattr(search, side, failing(side))
                ended.clear()
                with pytest.raises(StoreError, match=f"{bad[0]} failed"):
                    mem.search("topic 3", user_id="u")
                assert sorted(ended) == ["keyword_candidates", "vector_candidates"]
        assert mem.search("topic 3", user_id="u").hits
    finally:
        mem.close()


@pytestmark_pg
def test_the_fusion_pool_rescores_fewer_sign_bits_than_a_vector_page(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user in the sign-bits band: a vector page of ``n`` re-scores ``4n`` (at least
    200) of the nearest bits, the hybrid's pool of 100 only ``2 x 100``: its tail only
    nominates candidates, and the keyword side scores its own exactly."""
    mem = open_memory(postgres_url)
    try:
        mem.add(TEXTS, user_id="u")
        _store(mem)._search.bits_rows = (100, 1_000)
        asked: list[int] = []
        real = search_sql.bits_statement

        def spy(*args: Any) -> Any:
            asked.append(args[5])
            return real(*args)

        monkeypatch.setattr(postgres_search, "bits_statement", spy)
        mem.search("topic 3", user_id="u", mode="vector", top_k=60)
        mem.search("topic 3", user_id="u", mode="vector", top_k=5)
        mem.search("topic 3", user_id="u")
        assert asked == [4 * 120, 200, 2 * 100]
    finally:
        mem.close()
