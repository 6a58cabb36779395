"""Answer-kind ranking: a hybrid search lifts the records holding the kind of answer the
question asks for (a place for "where", a time for "when"), as extraction recorded them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from engramdb import HashEmbedder, Memory, Settings
from engramdb.extract.answer_types import (
    NUMBER,
    PERSON,
    PLACE,
    TIME,
    kinds_asked,
    kinds_of_labels,
)

# The decoy shares more of the question's words; the answer names a place.
DECOY = "she would go on the trip again"
ANSWER = "Her trip ended in Lisbon"
OTHER = "green tea tastes better cold"
FILLERS = [OTHER, "a short trip", "the trip was long and the trip was hard"]
QUERY = "Where did she go on her trip?"


def mem(store_url: str, weight: float | None = None) -> Memory:
    fields: dict[str, object] = {"extract": "inline"}
    if weight is not None:
        fields["answer_kind_weight"] = weight
    return Memory(store_url, embedder=HashEmbedder(384), settings=Settings(**fields))


def top(m: Memory, query: str, k: int = 3, **kw: object) -> list[str]:
    return [h.record.id for h in m.search(query, top_k=k, user_id="u", **kw)]


@pytest.mark.parametrize(
    ("question", "kinds"),
    [
        ("Where did Ana move last year?", PLACE),
        ("Which cities has John visited?", PLACE),
        ("When did she start the job?", TIME),
        ("What year did they marry?", TIME),
        ("How long has she been painting?", TIME),
        ("Who gave him the book?", PERSON),
        ("What are the names of his children?", PERSON),
        ("How many games did they win?", NUMBER | TIME),
        ("Where and when did they meet?", PLACE | TIME),
        ("What does Melanie like to paint?", 0),
        ("somewhere whenever", 0),  # words containing the rule words are not the words
    ],
)
def test_the_kinds_a_question_asks_for(question: str, kinds: int) -> None:
    assert kinds_asked(question) == kinds


def test_the_kinds_a_text_holds_come_from_its_entity_labels() -> None:
    assert kinds_of_labels(["GPE", "DATE", "ORG"]) == PLACE | TIME
    assert kinds_of_labels(["CARDINAL", "PERSON"]) == NUMBER | PERSON
    assert kinds_of_labels(["ORG", "NORP"]) == 0


def test_extraction_records_each_records_kinds_and_forgets_them_with_it(store_url: str) -> None:
    with mem(store_url) as m:
        moved, tea, met = m.add(
            [
                "We moved to Lisbon in 2019",
                OTHER,
                "I met Anna on Monday",
            ],
            user_id="u",
        )
        store = m._engine.store  # the derived rows under test
        ids = [moved.id or "", tea.id or "", met.id or ""]
        assert store.answer_kinds(m.namespace, ids) == {
            ids[0]: PLACE | TIME,
            ids[2]: PERSON | TIME,
        }
        # A changed text is extracted again: its kinds follow it.
        m.update(ids[0], text="We moved house")
        m.update(ids[1], text="Tom has drunk green tea since 2010")
        assert store.answer_kinds(m.namespace, ids) == {
            ids[1]: PERSON | TIME,
            ids[2]: PERSON | TIME,
        }
        m.delete(ids[2])
        assert store.answer_kinds(m.namespace, ids) == {ids[1]: PERSON | TIME}
        # Kinds are per namespace: another namespace's question reads none of these.
        assert store.answer_kinds("other", ids) == {}


def test_the_record_holding_the_asked_kind_gains_the_weight(store_url: str) -> None:
    with mem(store_url) as m:
        answer, decoy = (r.id for r in m.add([ANSWER, DECOY, *FILLERS], user_id="u")[:2])
    with mem(store_url, weight=0.0) as plain:
        before = {h.record.id: h.score for h in plain.search(QUERY, top_k=6, user_id="u").hits}
        assert max(before, key=lambda r: before[r]) == decoy
        plain_no_kind = top(plain, "What did she do on her trip?")
    with mem(store_url, weight=0.9) as ranked:
        hits = ranked.search(QUERY, top_k=6, user_id="u").hits
        after = {h.record.id: h.score for h in hits}
        assert hits[0].record.id == answer
        # Only the record naming a place gained, and by the weight exactly.
        assert after[answer] == pytest.approx(before[answer] + 0.9)
        assert {r: s for r, s in after.items() if r != answer} == pytest.approx(
            {r: s for r, s in before.items() if r != answer}
        )
        # The hit's parts still show each retriever's own score; only the fused one moved.
        assert hits[0].score == pytest.approx(hits[0].parts.fused)
        # Vector and keyword modes are the retrievers' own orders, left as they are.
        assert top(ranked, QUERY, mode="keyword")[0] == decoy
        # A question asking no kind the rules know ranks as without the boost.
        assert top(ranked, "What did she do on her trip?") == plain_no_kind


def test_extraction_switched_off_leaves_the_ranking_alone(store_url: str) -> None:
    with mem(store_url) as m:
        m.add([ANSWER, DECOY, *FILLERS], user_id="u")
    with mem(store_url, weight=0.9) as m:
        ranked = top(m, QUERY)
    settings = Settings(extract="off", answer_kind_weight=0.9)
    off = Memory(store_url, embedder=HashEmbedder(384), settings=settings)
    with off, mem(store_url, weight=0.0) as plain:
        assert top(off, QUERY) == top(plain, QUERY) != ranked


def test_a_page_is_the_head_of_a_longer_answer(store_url: str) -> None:
    """Only candidates the boost could lift into the page are read; the page stays exact."""
    with mem(store_url, weight=0.5) as m:
        m.add([ANSWER, DECOY, *FILLERS], user_id="u")
        m.add(
            [
                f"note {i} about the trip" + (f" to Porto on day {i}" if i % 3 else "")
                for i in range(14)
            ],
            user_id="u",
        )
        longest = top(m, QUERY, k=15)
        for k in (1, 2, 5, 10):
            assert top(m, QUERY, k=k) == longest[:k]
        first = m.search(QUERY, top_k=5, user_id="u")
        second = m.search(QUERY, top_k=5, user_id="u", cursor=first.next_cursor)
        assert [h.record.id for h in (*first.hits, *second.hits)] == longest[:10]


def test_an_upgraded_store_learns_the_kinds_of_its_records(tmp_path: Path) -> None:
    """Records extracted before revision 0023 are queued again by it."""
    db = tmp_path / "old.db"
    url = f"sqlite:///{db}"
    with mem(url) as m:
        ids = [r.id or "" for r in m.add([ANSWER, DECOY, *FILLERS], user_id="u")]
        assert m.entities("lisbon")
    with sqlite3.connect(db) as conn:  # as the store was at 0022, extracted
        conn.execute("DROP TRIGGER records_answer_kinds_delete")
        conn.execute("DROP TABLE record_answer_kinds")
        conn.execute("UPDATE alembic_version SET version_num = '0022'")
    with mem(url, weight=0.9) as m:
        # Inline extraction drains at the next write or entity read: queued, not yet read.
        assert m._engine.store.answer_kinds(m.namespace, ids) == {}
        assert top(m, QUERY)[0] == ids[1]
        m.entities(limit=1)
        assert m._engine.store.answer_kinds(m.namespace, ids) == {ids[0]: PLACE}
        assert top(m, QUERY)[0] == ids[0]
