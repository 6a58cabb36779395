"""Entity-aware ranking: a hybrid search lifts the records that mention the entities the
query names, matched against the namespace's known names without parsing the query."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from engramdb import HashEmbedder, Memory, Settings
from engramdb.engine import entity_ranking

# The decoy repeats the query's words; the answer only shares the name with it.
DECOY = "where does she work these days, where does she work now, where"
ANSWER = "John is employed by Microsoft in Seattle"
QUERY = "Where does John work these days?"


def ranked_mem(store_url: str, on: bool) -> Memory:
    settings = Settings(
        extract="inline", entity_ranking=on, entity_ranking_weight=1.0, answer_kind_weight=0.0
    )
    return Memory(store_url, embedder=HashEmbedder(384), settings=settings)


@pytest.fixture
def ids(store_url: str) -> Iterator[tuple[str, str]]:
    with ranked_mem(store_url, False) as m:
        out = m.add([ANSWER, DECOY, "Tom likes green tea in the morning"], user_id="u")
        yield out[0].id or "", out[1].id or ""


def top(mem: Memory, query: str) -> list[str]:
    return [h.record.id for h in mem.search(query, top_k=3, user_id="u")]


def test_the_record_naming_the_querys_entity_ranks_first(
    store_url: str, ids: tuple[str, str]
) -> None:
    answer, decoy = ids
    with ranked_mem(store_url, False) as plain:
        assert top(plain, QUERY)[0] == decoy
    with ranked_mem(store_url, True) as ranked:
        assert top(ranked, QUERY)[0] == answer
        # Vector and keyword modes are the retrievers' own orders, left as they are.
        kw = ranked.search(QUERY, top_k=3, user_id="u", mode="keyword")
        assert kw.hits[0].record.id == decoy
        no_name = top(ranked, "where does she work these days")
    with ranked_mem(store_url, False) as plain:
        # A query naming no known entity ranks as without entities.
        assert top(plain, "where does she work these days") == no_name


def test_query_entities_match_names_and_aliases_case_and_accents_aside(
    store_url: str, ids: tuple[str, str]
) -> None:
    with ranked_mem(store_url, True) as m:
        ranker = m._engine._searcher.ranker  # the engine's part under test
        john = m.entities("john")[0].id
        microsoft = m.entities("microsoft")[0].id
        assert ranker.query_entities(m.namespace, "what did JOHN say?") == {john}
        assert ranker.query_entities(m.namespace, "John's job at microsoft.") == {
            john,
            microsoft,
        }
        assert ranker.query_entities(m.namespace, "nobody known here") == frozenset()


def test_names_learned_after_the_first_search_are_matched(
    store_url: str, monkeypatch: pytest.MonkeyPatch, ids: tuple[str, str]
) -> None:
    monkeypatch.setattr(entity_ranking, "NAMES_TTL_S", 0.0)
    with ranked_mem(store_url, True) as m:
        ranker = m._engine._searcher.ranker
        assert ranker.query_entities(m.namespace, "Where is Lisbon?") == frozenset()
        m.add("Ana moved to Lisbon", user_id="u")
        lisbon = m.entities("lisbon")[0].id
        assert ranker.query_entities(m.namespace, "Where is Lisbon?") == {lisbon}


def test_other_namespaces_entities_are_not_matched(store_url: str, ids: tuple[str, str]) -> None:
    with ranked_mem(store_url, True) as m:
        other = m.with_namespace("other")
        other.add("John works for Google", user_id="u")
        mine = m.entities("john")[0].id
        theirs = other.entities("john")[0].id
        ranker = m._engine._searcher.ranker
        assert ranker.query_entities(m.namespace, QUERY) == {mine}
        assert ranker.query_entities("other", QUERY) == {theirs}


def test_a_page_is_the_head_of_a_longer_answer(store_url: str, ids: tuple[str, str]) -> None:
    """Only candidates a boost could lift into the page are read; the page is still exact."""
    with ranked_mem(store_url, True) as m:
        m.add([f"John and the note number {i} about work" for i in range(12)], user_id="u")
        longest = [h.record.id for h in m.search(QUERY, top_k=15, user_id="u")]
        for k in (1, 2, 5, 10):
            assert [h.record.id for h in m.search(QUERY, top_k=k, user_id="u")] == longest[:k]
        first = m.search(QUERY, top_k=5, user_id="u")
        second = m.search(QUERY, top_k=5, user_id="u", cursor=first.next_cursor)
        assert [h.record.id for h in (*first.hits, *second.hits)] == longest[:10]
