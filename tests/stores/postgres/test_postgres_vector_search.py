"""PostgreSQL vector search: exact scopes, the HNSW path, prefiltered narrow filters, and
hits that come with their records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from pg_store_helpers import count_calls, open_memory

from engramdb import Memory
from engramdb.stores.postgres import PostgresStore

pytestmark_pg = pytest.mark.postgres


@pytestmark_pg
def test_hnsw_path_matches_exact_search(postgres_url: str) -> None:
    texts = [f"note {i} about topic {i % 17} and item {i * 7 % 31}" for i in range(400)]
    exact = open_memory(postgres_url)
    exact.add(texts[:200], user_id="u1")
    exact.add(texts[200:], user_id="u2", tags=["late"])
    ann = open_memory(postgres_url, ann_min_rows=0)
    try:
        for q in ("topic 3 item 5", "note 250", "about topic 16"):
            want = [h.record.id for h in exact.search(q, mode="vector", top_k=10)]
            got = [h.record.id for h in ann.search(q, mode="vector", top_k=10)]
            assert len(set(want) & set(got)) >= 9
            # A filter that rejects most rows still fills the page (iterative scan).
            hits = ann.search(q, mode="vector", top_k=10, tags=["late"])
            assert len(hits) == 10 and all("late" in h.record.tags for h in hits)
    finally:
        ann.close()
        exact.close()


@pytestmark_pg
def test_narrow_indexed_filters_search_just_their_records(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a scope searched through HNSW, a filter that requires a tag or a metadata value
    and that few records pass ranks exactly those records (vector and keyword) instead of
    walking the graph or every keyword match; above PREFILTER_MAX_RECORDS the iterative
    scan still fills the page."""
    import engramdb.stores.postgres.search as postgres_search

    texts = [f"note {i} about topic {i % 17} and item {i * 7 % 31}" for i in range(400)]
    exact = open_memory(postgres_url)
    exact.add(texts[:380], tags=["common"])
    exact.add(texts[380:], tags=["common", "rare"], metadata={"k": "v", "n": 1})
    ann = open_memory(postgres_url, ann_min_rows=0)
    narrow = [{"tags": "rare"}, {"metadata.k": "v"}, {"tags": "nobody"}, {"metadata.k": "w"}]
    taken: list[bool] = []
    find = postgres_search.Search._narrow
    ann_store = ann.engine.store
    assert isinstance(ann_store, PostgresStore)

    def spy(self: postgres_search.Search, *args: Any) -> Any:
        got = find(self, *args)
        if self is ann_store._search:  # the exact instance may ask too (a failed probe)
            taken.append(got is not None)
        return got

    monkeypatch.setattr(postgres_search.Search, "_narrow", spy)
    try:
        for q in ("topic 3 item 5", "note 390", "about topic 16"):
            for flt in narrow:
                for mode in ("vector", "keyword"):
                    want = exact.search(q, mode=mode, filters=flt, top_k=10)
                    got = ann.search(q, mode=mode, filters=flt, top_k=10)
                    assert [h.record.id for h in got] == [h.record.id for h in want], (flt, mode)
                    assert [h.score for h in got] == pytest.approx([h.score for h in want])
                    expected = 0 if flt in narrow[2:] else (10 if mode == "vector" else None)
                    if expected is not None:
                        assert len(got) == expected, (flt, mode)
                    assert all(h.record.metadata.get("n") == 1 for h in got)
        # The HNSW instance took the narrow path every time (vector and keyword).
        assert len(taken) == 3 * len(narrow) * 2 and all(taken)
        monkeypatch.setattr(postgres_search, "PREFILTER_MAX_RECORDS", 0)
        hits = ann.search("topic 3 item 5", mode="vector", top_k=10, tags=["rare"])
        assert len(hits) == 10 and all("rare" in h.record.tags for h in hits)
    finally:
        ann.close()
        exact.close()


@pytestmark_pg
def test_large_user_scope_uses_hnsw_with_a_user_filter(postgres_url: str) -> None:
    """A user above the exact-scan size is searched through HNSW, filtered to that user."""
    texts = [f"memo {i} on subject {i % 13} with detail {i * 5 % 29}" for i in range(600)]
    exact = open_memory(postgres_url)
    exact.add(texts[:300], user_id="big")
    exact.add(texts[300:], user_id="other", tags=["x"])
    exact.add(["memo 7 on subject 7 tagged rare"], user_id="big", tags=["rare"])
    gone = datetime.now(UTC) - timedelta(minutes=1)
    exact.add("subject 3 detail 5", user_id="big", id="expired", expires_at=gone)
    ann = open_memory(postgres_url, ann_min_user_rows=50)
    store = ann.engine.store
    assert isinstance(store, PostgresStore)
    try:
        for q in ("subject 3 detail 5", "memo 42", "with detail 28"):
            want = [h.record.id for h in exact.search(q, user_id="big", mode="vector", top_k=10)]
            hits = ann.search(q, user_id="big", mode="vector", top_k=10)
            assert len(hits) == 10 and all(h.record.user_id == "big" for h in hits)
            assert "expired" not in {h.record.id for h in hits}
            assert len(set(want) & {h.record.id for h in hits}) >= 9
            scores = [h.score for h in hits]
            assert scores == sorted(scores, reverse=True)
            # A filter on the records side still applies, and a page wider than the
            # search breadth (top_k > ann_ef_search) is still filled.
            rare = ann.search(q, user_id="big", mode="vector", top_k=10, tags=["rare"])
            assert [h.record.tags for h in rare] == [["rare"]]
            wide = ann.search(q, user_id="big", mode="vector", top_k=150)
            assert len(wide) == 150 and all(h.record.user_id == "big" for h in wide)
        assert store._search.scopes._cache[(ann.namespace, "big")][1] > 50
    finally:
        ann.close()
        exact.close()


@pytestmark_pg
def test_user_scoped_vector_search_is_exact_through_the_scope_index(
    pg: Memory, postgres_url: str
) -> None:
    pg.add([f"user fact number {i}" for i in range(50)], user_id="alice")
    pg.add([f"other fact number {i}" for i in range(50)], user_id="bob")
    q = np.asarray(pg.embedder.embed(["fact number 7"], query=True), np.float32)[0]
    hits = pg.search("fact number 7", mode="vector", user_id="alice", top_k=50)
    assert len(hits) == 50 and all(h.record.user_id == "alice" for h in hits)
    recs = [h.record for h in hits]
    vecs = np.asarray(pg.embedder.embed([r.text for r in recs]), np.float32)
    sims = vecs @ q / np.linalg.norm(vecs, axis=1) / np.linalg.norm(q)
    assert np.all(np.diff(sims) <= 1e-5)


@pytestmark_pg
def test_vector_search_reads_hits_and_their_records_in_one_statement(
    pg: Memory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Vector mode needs neither ``locate`` nor ``get_records``: the candidate statement
    returns each hit's location and record. Hybrid mode reads the candidates within reach
    of its page whole in one statement (``locate_whole``) instead."""
    pg.add([f"harbour note {i} about boats {i % 7}" for i in range(40)], user_id="ann")
    pg.add([f"garden note {i} about roses {i % 5}" for i in range(40)], user_id="bob")
    expired = datetime.now(UTC) - timedelta(seconds=1)
    pg.add("harbour note about boats 3 expired", user_id="ann", expires_at=expired)
    store = pg.engine.store
    assert isinstance(store, PostgresStore)
    calls = count_calls(monkeypatch, store, ["locate", "get_records", "locate_whole"])
    for user in (None, "ann"):
        calls.update(locate=0, get_records=0, locate_whole=0)
        hits = pg.search("harbour boats 3", mode="vector", user_id=user, top_k=8)
        assert len(hits) == 8 and calls == {"locate": 0, "get_records": 0, "locate_whole": 0}
        assert all(user in (None, h.record.user_id) for h in hits)
        assert all("expired" not in h.record.text for h in hits)
        for h in hits:
            assert h.record == pg.get(h.record.id)
            assert h.chunk == h.record.text  # one chunk each: the whole text
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
    calls.update(locate=0, get_records=0, locate_whole=0)
    hybrid = pg.search("harbour boats 3", mode="hybrid", user_id="ann", top_k=8)
    assert len(hybrid) == 8 and calls == {"locate": 0, "get_records": 0, "locate_whole": 1}
    assert all(h.record == pg.get(h.record.id) for h in hybrid)


@pytestmark_pg
def test_exact_scope_settles_a_broad_filter_on_its_best_chunks(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exact scope with a filter most records pass (a tag every record carries) checks
    the filter on the best few chunks only, with the same answer as checking every chunk;
    a filter too few of those pass falls back to filtering first, with the same answer."""
    import engramdb.stores.postgres.search as postgres_search

    texts = [f"entry {i} about subject {i % 11} and part {i * 3 % 23}" for i in range(300)]
    mem = open_memory(postgres_url)
    mem.add(texts[:290], tags=["all"])
    mem.add(texts[290:], tags=["all", "few"])
    probed: list[bool] = []
    real = postgres_search.Search._probed

    def spy(self: postgres_search.Search, *args: Any) -> Any:
        got = real(self, *args)
        probed.append(got is not None)
        return got

    try:
        for q in ("subject 3 part 5", "entry 295", "about subject 10"):
            for flt in ({"tags": "all"}, {"tags": "few"}, {"tags": "none"}):
                monkeypatch.setattr(postgres_search.Search, "_probed", spy)
                got = mem.search(q, mode="vector", filters=flt, top_k=10)
                monkeypatch.undo()
                monkeypatch.setattr(postgres_search, "PROBE_MIN", 1_000)  # the whole scope
                want = mem.search(q, mode="vector", filters=flt, top_k=10, threshold=-1.0)
                monkeypatch.undo()
                assert [h.record.id for h in got] == [h.record.id for h in want], flt
                assert [h.score for h in got] == pytest.approx([h.score for h in want])
                assert len(got) == {"all": 10, "few": 10, "none": 0}[flt["tags"]]
                assert all(flt["tags"] in h.record.tags for h in got)
        # "all" was settled by the probe every time; "few" and "none" needed the fallback.
        assert probed == [True, False, False] * 3
    finally:
        mem.close()


@pytestmark_pg
def test_a_mid_sized_user_is_searched_through_sign_bits_and_rescored_exactly(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user's scope inside the sign-bits band scans the bits and re-scores the best few
    exactly. When the re-scored few cover the scope, the page is the exact scan's, score
    for score, in both modes; with the default few, every hit carries its exact cosine, in
    order. Expired records stay out, and a filter beyond the expiry check takes the exact
    path instead. A namespace inside the band is searched the same way. (How many of the
    exact page the bits find is a benchmark figure: the hash embedder's sparse vectors make
    poor bits.)"""
    import engramdb.stores.postgres.search as postgres_search

    texts = [f"memo {i} on subject {i % 13} with detail {i * 5 % 29}" for i in range(400)]
    exact = open_memory(postgres_url)
    exact.add(texts[:300], user_id="mid")
    exact.add(texts[300:], user_id="other")
    exact.add(["memo 7 on subject 7 tagged rare"], user_id="mid", tags=["rare"])
    gone = datetime.now(UTC) - timedelta(minutes=1)
    exact.add("subject 3 detail 5", user_id="mid", id="expired", expires_at=gone)
    bits = open_memory(postgres_url)
    bits_store, exact_store = bits.engine.store, exact.engine.store
    assert isinstance(bits_store, PostgresStore) and isinstance(exact_store, PostgresStore)
    bits_store._search.bits_rows = (150, 1_000)
    exact_store._search.bits_rows = (0, 0)
    taken: list[int] = []
    real = postgres_search.Search._bits

    def spy(self: postgres_search.Search, *args: Any) -> Any:
        got = real(self, *args)
        taken.append(len(got))
        return got

    def page(m: Memory, q: str, **kw: Any) -> list[tuple[str, float]]:
        return [(h.record.id, h.score) for h in m.search(q, user_id="mid", **kw)]

    monkeypatch.setattr(postgres_search.Search, "_bits", spy)
    queries = ("subject 3 detail 5", "memo 42", "with detail 28", "memo 250 on subject 3")
    try:
        with monkeypatch.context() as whole:
            whole.setattr(postgres_search, "BITS_RESCORE_MIN", 1_000)
            for q in queries:
                for top_k in (10, 60):
                    want = page(exact, q, mode="vector", top_k=top_k)
                    got = page(bits, q, mode="vector", top_k=top_k)
                    assert [i for i, _ in got] == [i for i, _ in want], (q, top_k)
                    assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=1e-6)
                assert page(bits, q, top_k=10) == page(exact, q, top_k=10)
                # The namespace (~400 chunks, inside the band here) is searched the same way.
                want_ns = exact.search(q, mode="vector", top_k=10)
                got_ns = bits.search(q, mode="vector", top_k=10)
                assert [h.record.id for h in got_ns] == [h.record.id for h in want_ns]
                assert [h.score for h in got_ns] == pytest.approx([h.score for h in want_ns])
        assert len(taken) == len(queries) * 4
        for q in queries:
            every = dict(page(exact, q, mode="vector", top_k=400))
            for top_k in (10, 60):
                got = page(bits, q, mode="vector", top_k=top_k)
                assert len(got) == top_k and "expired" not in {i for i, _ in got}
                assert [s for _, s in got] == pytest.approx([every[i] for i, _ in got], abs=1e-6)
                assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)
            before = len(taken)
            rare = bits.search(q, user_id="mid", mode="vector", top_k=10, tags=["rare"])
            assert [h.record.tags for h in rare] == [["rare"]] and len(taken) == before
        # The other user is below the band: scanned exactly.
        before = len(taken)
        bits.search("memo 310", user_id="other", mode="vector", top_k=5)
        assert len(taken) == before == len(queries) * 6, "a 100-chunk user took the bits"
    finally:
        bits.close()
        exact.close()
