"""Contract: a hybrid search reads the candidates within reach of its page whole
(``Store.locate_whole``: location, record and answer kinds in one statement) instead of
locating them, reading their answer kinds and then the page's records in three, and ranks
exactly as those three reads would."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from call_counts import count_calls

from engramdb import Memory, Settings
from engramdb.embedders import HashEmbedder
from engramdb.extract.answer_types import PERSON, PLACE, TIME
from engramdb.query.filters import Cmp
from engramdb.stores.base import Store

QUERY = "Where did she go on her trip?"  # asks for a place
TEXTS = [
    "Her trip ended in Lisbon in 2019",
    "she would go on the trip again",
    "a short trip",
    "the trip was long and the trip was hard",
    "I met Anna on Monday before the trip",
    "Did she enjoy the trip?",
    "green tea tastes better cold",
]


@pytest.fixture
def kinds_mem(store_url: str) -> Iterator[Memory]:
    """Records of two users, extracted in the write (answer kinds recorded), with the
    answer-kind boost and the question penalty high enough to move the page."""
    settings = Settings(extract="inline", answer_kind_weight=1.0, question_penalty=0.3)
    m = Memory(store_url, embedder=HashEmbedder(64), settings=settings)
    m.add(TEXTS, user_id="u", tags=["travel", 'été "quoted"'])
    m.add(TEXTS[:4], user_id="v")
    yield m
    m.close()


def store_of(m: Memory) -> Store:
    return m.engine.store


def page(m: Memory, **kw: Any) -> list[tuple[str, float, Any, str]]:
    hits = m.search(QUERY, mode="hybrid", top_k=5, **kw).hits
    return [(h.record.id, h.score, h.parts, h.chunk) for h in hits]


def fallback(monkeypatch: pytest.MonkeyPatch, store: Store) -> None:
    """Make the store answer as one without the whole read does: the engine then locates,
    reads answer kinds and the page's records one call after another."""
    monkeypatch.setattr(store, "locate_whole", lambda *a: None)


def test_locate_whole_is_locate_with_the_record_and_its_answer_kinds(kinds_mem: Memory) -> None:
    store = store_of(kinds_mem)
    ns = kinds_mem.namespace
    chunks = [h.chunk_id for h in store.keyword_candidates(ns, '"trip"', None, 50)]
    assert len(chunks) == 10  # six of u's texts say "trip", and four of v's
    every = store.locate_whole(ns, chunks, None)
    assert set(every) == set(chunks)
    assert {c: w.located for c, w in every.items()} == store.locate(ns, chunks, None)
    records = {c: w.record() for c, w in every.items()}
    assert all(every[c].located[:2] == (r.id, r.version) for c, r in records.items())
    ids = [r.id for r in records.values()]
    assert {r.id: r for r in records.values()} == {r.id: r for r in store.get_records(ns, ids)}
    assert {tuple(r.tags) for r in records.values()} == {(), ("travel", 'été "quoted"')}
    stored = store.answer_kinds(ns, ids)
    assert {w.located[0]: w.kinds for w in every.values()} == {r: stored.get(r, 0) for r in ids}
    by_text = {records[c].text: w.kinds for c, w in every.items() if records[c].user_id == "u"}
    assert by_text[TEXTS[0]] == PLACE | TIME and by_text[TEXTS[2]] == 0
    assert by_text[TEXTS[4]] & (PERSON | TIME) == PERSON | TIME
    # The filter applies as in ``locate``: another user's chunks are left out.
    only_u = store.locate_whole(ns, chunks, Cmp("str", "user_id", "$eq", "u"))
    assert {w.record().user_id for w in only_u.values()} == {"u"} and len(only_u) == 6
    assert store.locate_whole(ns, [], None) == {}
    assert store.locate_whole("elsewhere", chunks, None) == {}


@pytest.mark.parametrize("user", ["u", None])
def test_a_hybrid_search_reads_within_reach_in_one_statement(
    kinds_mem: Memory, monkeypatch: pytest.MonkeyPatch, user: str | None
) -> None:
    store = store_of(kinds_mem)
    names = ["locate", "answer_kinds", "get_records", "locate_whole"]
    calls = count_calls(monkeypatch, store, names)
    got = page(kinds_mem, user_id=user)
    assert calls == {"locate": 0, "answer_kinds": 0, "get_records": 0, "locate_whole": 1}
    # The page is the one the engine builds from the three reads, score parts and the
    # matched spans included, and the boost moved it: the place ranks first.
    fallback(monkeypatch, store)
    calls.update(dict.fromkeys(names, 0))
    assert page(kinds_mem, user_id=user) == got
    assert calls["answer_kinds"] == 1 and calls["get_records"] == 1
    first = kinds_mem.get(got[0][0])
    assert first is not None and first.text == TEXTS[0]
    assert all(kinds_mem.get(rid) is not None for rid, *_ in got)


def test_a_candidate_the_whole_read_misses_is_ranked_as_never_found(
    kinds_mem: Memory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record deleted (or no longer passing the filter) between reading the candidates
    and reading them whole leaves the ranking, as when ``locate`` misses it."""
    store = store_of(kinds_mem)
    gone = page(kinds_mem, user_id="u")[0][0]
    real_whole = store.locate_whole

    def whole_hiding(namespace: str, chunk_ids: list[int], node: Any) -> Any:
        got = real_whole(namespace, chunk_ids, node)
        return {c: w for c, w in got.items() if w.located[0] != gone}

    monkeypatch.setattr(store, "locate_whole", whole_hiding)
    hidden = page(kinds_mem, user_id="u")
    assert gone not in [rid for rid, *_ in hidden] and len(hidden) == 5

    # The same page as with the record deleted, when nothing could have found it. (The
    # scores may move in their last digits: a delete changes SQLite's BM25 statistics.)
    monkeypatch.undo()
    kinds_mem.delete(gone)
    after = page(kinds_mem, user_id="u")
    assert [(r, h.vector_rank, h.keyword_rank, c) for r, _, h, c in after] == [
        (r, h.vector_rank, h.keyword_rank, c) for r, _, h, c in hidden
    ]
    assert [s for _, s, _, _ in after] == pytest.approx([s for _, s, _, _ in hidden], abs=1e-6)
