"""Contract: search modes, ranking against brute force, threshold, paging, chunking."""

from __future__ import annotations

import numpy as np
import pytest
from contract_helpers import CORPUS, all_records, brute_force

from engramdb import Memory


@pytest.fixture
def corpus(mem: Memory) -> list[str]:
    return [r.id or "" for r in mem.add(CORPUS, user_id="u")]


@pytest.mark.parametrize("query", ["cat garden", "monday morning bakery", "weekend", "zzz qq"])
def test_vector_order_equals_brute_force(mem: Memory, corpus: list[str], query: str) -> None:
    records = all_records(mem)
    expected = brute_force(mem, query, records)
    hits = mem.search(query, mode="vector", top_k=len(records)).hits
    assert len(hits) == len(records)
    got_scores = [h.score for h in hits]
    # Each hit's score is its true cosine, and the order is by that score, best first.
    for h in hits:
        assert h.parts.vector == pytest.approx(expected[h.record.id], abs=1e-5)
        assert h.score == pytest.approx(expected[h.record.id], abs=1e-5)
    assert got_scores == sorted(got_scores, reverse=True)
    ranked = sorted(expected.values(), reverse=True)
    assert np.allclose(got_scores, ranked, atol=1e-5)
    # top_k smaller than the corpus: the best k (up to ties at the boundary).
    top3 = mem.search(query, mode="vector", top_k=3).hits
    kth = ranked[2]
    assert all(expected[h.record.id] >= kth - 1e-5 for h in top3)
    assert [h.record.id for h in top3] == [h.record.id for h in hits[:3]]


def test_keyword_mode_finds_exact_words(mem: Memory, corpus: list[str]) -> None:
    hits = mem.search("bakery", mode="keyword", top_k=50).hits
    texts = {h.record.text for h in hits}
    # Every record with the exact word is found; stemming may add inflections, nothing else.
    assert {t for t in CORPUS if "bakery" in t.split()} <= texts
    assert texts <= {t for t in CORPUS if "baker" in t}
    for h in hits:
        assert h.parts.keyword is not None and h.parts.keyword_rank is not None
    assert mem.search("xylophone", mode="keyword").hits == []


def test_hybrid_returns_each_record_once_with_score_parts(mem: Memory, corpus: list[str]) -> None:
    hits = mem.search("cat garden weekend", mode="hybrid", top_k=50).hits
    ids = [h.record.id for h in hits]
    assert len(ids) == len(set(ids))
    assert set(ids) == set(corpus)  # the vector side scans every record
    for h in hits:
        assert h.parts.fused == h.score
        assert h.parts.vector is not None
        assert h.chunk and h.chunk in h.record.text
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    both = [h for h in hits if h.parts.keyword is not None]
    assert both and all(h.parts.keyword_rank is not None for h in both)


def test_threshold_keeps_exactly_the_similar_ones(mem: Memory, corpus: list[str]) -> None:
    records = all_records(mem)
    expected = brute_force(mem, "cat garden", records)
    for mode in ("vector", "hybrid"):
        hits = mem.search("cat garden", mode=mode, threshold=0.2, top_k=50).hits
        want = {rid for rid, s in expected.items() if s >= 0.2 + 1e-6}
        got = {h.record.id for h in hits}
        assert want <= got
        assert all(expected[rid] >= 0.2 - 1e-5 for rid in got)
    kw = mem.search("garden", mode="keyword", threshold=0.99, top_k=50).hits
    assert kw == []


def test_offset_and_cursor_paging_agree(mem: Memory, corpus: list[str]) -> None:
    for mode in ("vector", "hybrid", "keyword"):
        query = "the cat dog garden weekend bakery monday"
        full = [h.record.id for h in mem.search(query, mode=mode, top_k=50).hits]
        by_offset: list[str] = []
        for off in range(0, len(full) + 3, 3):
            by_offset += [h.record.id for h in mem.search(query, mode=mode, top_k=3, offset=off)]
        assert by_offset == full
        by_cursor: list[str] = []
        cursor = None
        pages = 0
        while True:
            page = mem.search(query, mode=mode, top_k=3, cursor=cursor)
            by_cursor += [h.record.id for h in page]
            pages += 1
            cursor = page.next_cursor
            if cursor is None:
                break
        assert by_cursor == full
        assert len(set(by_cursor)) == len(by_cursor)
        assert pages == -(-len(full) // 3)


def test_search_respects_user_scope(mem: Memory, corpus: list[str]) -> None:
    other = mem.add("the cat sat on the warm mat", user_id="v")[0].id
    ids = [h.record.id for h in mem.search("cat", user_id="u", top_k=50)]
    assert other not in ids and ids
    for mode in ("hybrid", "vector", "keyword"):
        got = [h.record.id for h in mem.search("cat mat", user_id="v", mode=mode)]
        assert got == [other]


def test_user_scoped_keyword_ranking_is_the_unscoped_ranking_of_that_user(mem: Memory) -> None:
    """Narrowing to a user or thread before ranking (SQLite's scope tokens) gives the same
    scores and order as ranking everyone's matches and keeping that scope's.

    Also after the paths that rewrite keyword rows: a text update re-chunks a record and a
    thread message re-indexes its neighbours.
    """
    words = ["cat", "garden", "bakery", "monday", "weekend", "fish"]
    items = [
        {
            "text": f"{words[i % 6]} {words[(i * 5) % 6]} note {i}",
            "user_id": f"u{i % 3}",
            "thread_id": f"t{i % 4}",
        }
        for i in range(60)
    ]
    ids = [r.id for r in mem.add(items)]
    mem.update(ids[4], text="the garden cat had fish on monday")
    mem.add_messages(
        "t1",
        [{"role": "user", "content": "my garden cat"}, {"role": "user", "content": "and fish"}],
        user_id="u1",
    )
    query = "garden cat fish monday bakery"
    everyone = mem.search(query, mode="keyword", top_k=200).hits
    assert len(everyone) > 40
    for user in ("u0", "u1", "u2"):
        scoped = [h.record.id for h in mem.search(query, mode="keyword", user_id=user, top_k=200)]
        expected = [h.record.id for h in everyone if h.record.user_id == user]
        assert scoped == expected and scoped, user
        for thread in ("t0", "t1"):  # both scopes at once, one given as a filter
            both = mem.search(
                query, mode="keyword", filters={"user_id": user}, thread_id=thread, top_k=200
            )
            expected = [
                h.record.id
                for h in everyone
                if h.record.user_id == user and h.record.thread_id == thread
            ]
            assert [h.record.id for h in both] == expected and expected, (user, thread)


def test_keyword_search_finds_filtered_matches_ranked_below_hundreds_of_others(
    mem: Memory,
) -> None:
    """Stores rank a few hundred keyword matches before reading their records; when the
    filter drops all of those, the whole match set is searched (nothing is lost)."""
    mem.add([f"apple apple apple pie number {i}" for i in range(500)])
    rare = mem.add(
        [
            {"text": f"an apple among many other longer words in sentence {i}", "type": "rare"}
            for i in range(5)
        ]
    )
    everyone = mem.search("apple", mode="keyword", top_k=1000).hits
    assert len(everyone) == 505
    below = [h.record.id for h in everyone if h.record.type == "rare"]
    assert set(below) == {r.id for r in rare}
    ranks = [i for i, h in enumerate(everyone) if h.record.type == "rare"]
    assert min(ranks) >= 400  # below every probed match
    got = mem.search("apple", mode="keyword", type="rare", top_k=10).hits
    assert [h.record.id for h in got] == below


def test_long_text_is_chunked_but_returned_whole(mem: Memory) -> None:
    filler = " ".join(f"Sentence number {i} talks about ordinary weather today." for i in range(80))
    needle = "The secret ingredient is saffron from Kashmir."
    text = filler + " " + needle + " " + filler
    assert mem.embedder.count_tokens(text) > mem.embedder.max_tokens
    rid = mem.add(text, user_id="u")[0].id
    mem.add("saffron is a spice", user_id="u")
    assert mem.get(rid or "").text == text
    for mode in ("hybrid", "vector", "keyword"):
        hits = mem.search("saffron Kashmir ingredient", mode=mode, top_k=10).hits
        ids = [h.record.id for h in hits]
        assert ids.count(rid) == 1
        hit = next(h for h in hits if h.record.id == rid)
        assert hit.record.text == text
        assert needle in hit.chunk and len(hit.chunk) < len(text)
    stats = mem.stats()["store"]
    assert stats["chunks"] > 2


def test_locate_agrees_with_what_candidates_carry(mem: Memory, corpus: list[str]) -> None:
    """``Store.locate`` (the engine's fallback for hits a store did not locate) maps each
    chunk to its record id, version and span, and drops chunks the filter rejects; where a
    store's candidates already carry ``located``, it is the same answer."""
    from engramdb.query.filters import Cmp

    store = mem.engine.store
    ns = mem.namespace
    q = np.asarray(mem.embedder.embed(["cat garden"], query=True), np.float32)[0]
    hits = store.vector_candidates(ns, q, None, None, 20)
    assert hits
    located = store.locate(ns, [h.chunk_id for h in hits], None)
    assert set(located) == {h.chunk_id for h in hits}
    for h in hits:
        rid, version, start, end = located[h.chunk_id]
        rec = mem.get(rid)
        assert version == rec.version and rec.text[start:end] == rec.text
        if h.located is not None:
            assert h.located == located[h.chunk_id]
    mem.update(corpus[0], text="the cat sat on the cold mat")
    mem.add("a cat in another user's garden", user_id="v")
    again = store.vector_candidates(ns, q, None, None, 20)
    ids = [h.chunk_id for h in again]
    every = store.locate(ns, ids, None)
    only_u = store.locate(ns, ids, Cmp("str", "user_id", "$eq", "u"))
    assert set(only_u) < set(every) and len(only_u) == len(every) - 1
    assert all(mem.get(rid).user_id == "u" for rid, *_ in only_u.values())
    assert {rid: version for rid, version, *_ in every.values()}[corpus[0]] == 2


def test_candidates_with_records_are_what_locate_and_get_records_say(
    mem: Memory, corpus: list[str]
) -> None:
    """``with_records`` hits carry, from one read, exactly what the engine's two reads
    would give: the location ``locate`` returns under the whole filter (user scope
    included) and the record ``get_records`` returns; a chunk outside the filter is not
    among them, nor one of a deleted record. Asked for the records of the best two, a
    store attaches at least those."""
    from engramdb.query.filters import Bool, Cmp

    store = mem.engine.store
    ns = mem.namespace
    mem.add("a cat in another user's garden", user_id="v")
    mem.update(corpus[1], text="a dog chased the cat around the cold garden")
    q = np.asarray(mem.embedder.embed(["cat garden"], query=True), np.float32)[0]
    live = mem.engine.build_filter(None, {}, None, False)
    for user in (None, "u"):
        plain = store.vector_candidates(ns, q, user, live, 20)
        hits = store.vector_candidates(ns, q, user, live, 20, with_records=20)
        assert [h.chunk_id for h in hits] == [h.chunk_id for h in plain]
        assert [h.score for h in hits] == pytest.approx([h.score for h in plain])
        full = live if user is None else Bool("and", (Cmp("str", "user_id", "$eq", user), live))
        where = store.locate(ns, [h.chunk_id for h in hits], full)
        assert {h.chunk_id: h.located for h in hits} == where
        records = store.get_records(ns, [loc[0] for loc in where.values()])
        assert all(h.record is not None for h in hits)
        assert sorted((h.record() for h in hits), key=lambda r: r.id) == sorted(
            records, key=lambda r: r.id
        )
        users = {h.record().user_id for h in hits}
        assert users == ({"u", "v"} if user is None else {"u"})
        few = store.vector_candidates(ns, q, user, live, 20, with_records=2)
        assert [(h.chunk_id, h.located) for h in few] == [(h.chunk_id, h.located) for h in hits]
        assert all(h.record is not None for h in few[:2])
        assert [h.record() for h in few[:2]] == [h.record() for h in hits[:2]]
        if store.backend == "sqlite":  # it builds no row the page will not show
            assert all(h.record is None for h in few[2:])
    first = store.vector_candidates(ns, q, "u", live, 20, with_records=20)[0]
    mem.delete(first.located[0])
    again = store.vector_candidates(ns, q, "u", live, 20, with_records=20)
    assert first.located[0] not in {h.located[0] for h in again}
