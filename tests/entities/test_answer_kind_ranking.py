"""Answer-kind ranking: a hybrid search lifts the records holding the kind of answer the
question asks for (a place for "where", a time for "when"), as extraction recorded them, and
lowers the records that are themselves questions."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import psycopg
import pytest

from engramdb import HashEmbedder, Memory, Settings
from engramdb.extract.answer_types import (
    NUMBER,
    PERSON,
    PLACE,
    QUESTION,
    TIME,
    is_question,
    kinds_asked,
    kinds_held,
    kinds_of_labels,
)

# The decoy shares more of the question's words; the answer names a place.
DECOY = "she would go on the trip again"
ANSWER = "Her trip ended in Lisbon"
OTHER = "green tea tastes better cold"
FILLERS = [OTHER, "a short trip", "the trip was long and the trip was hard"]
QUERY = "Where did she go on her trip?"


def mem(
    store_url: str, weight: float | None = None, penalty: float | None = None, **extra: object
) -> Memory:
    fields: dict[str, object] = {"extract": "inline", **extra}
    if weight is not None:
        fields["answer_kind_weight"] = weight
    if penalty is not None:
        fields["question_penalty"] = penalty
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


@pytest.mark.parametrize(
    ("text", "asks"),
    [
        ("What are their names?", True),
        ("Congrats! How long have you had them?  \n", True),
        ("Is it? I think so.", False),  # the last sentence answers
        ("She asked me (why?) and left", False),
        ("", False),
    ],
)
def test_a_text_is_a_question_when_its_last_sentence_asks(text: str, asks: bool) -> None:
    assert is_question(text) is asks
    assert kinds_held(text, ["GPE"]) == PLACE | (QUESTION if asks else 0)


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
        m.update(ids[2], text="Did you meet Anna on Monday?")
        assert store.answer_kinds(m.namespace, ids)[ids[2]] == PERSON | TIME | QUESTION
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


ASKING = "Did she like the trip to the lake?"
STATED = "She liked the lake"


def test_a_record_that_asks_loses_the_penalty(store_url: str) -> None:
    query = "did she like the trip to the lake"
    with mem(store_url) as m:
        asking, stated = (r.id for r in m.add([ASKING, STATED, *FILLERS], user_id="u")[:2])
    with mem(store_url, penalty=0.0) as plain:
        before = {h.record.id: h.score for h in plain.search(query, top_k=6, user_id="u").hits}
        assert max(before, key=lambda r: before[r]) == asking
        sides = {mode: top(plain, query, k=6, mode=mode) for mode in ("keyword", "vector")}
    with mem(store_url, penalty=0.9) as ranked:
        after = {h.record.id: h.score for h in ranked.search(query, top_k=6, user_id="u").hits}
        assert max(after, key=lambda r: after[r]) == stated
        # Only the question lost, and by the penalty exactly.
        assert after[asking] == pytest.approx(before[asking] - 0.9)
        assert {r: s for r, s in after.items() if r != asking} == pytest.approx(
            {r: s for r, s in before.items() if r != asking}
        )
        # Keyword and vector modes keep their retriever's own order.
        assert {mode: top(ranked, query, k=6, mode=mode) for mode in sides} == sides
    settings = Settings(extract="off", question_penalty=0.9)
    with Memory(store_url, embedder=HashEmbedder(384), settings=settings) as off:
        assert top(off, query)[0] == asking


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
    """Only candidates the boost or the penalty could move past the page's last are read;
    the page stays exact."""
    with mem(store_url, weight=0.5) as m:
        m.add([ANSWER, DECOY, *FILLERS], user_id="u")
        m.add(
            [
                f"note {i} about the trip"
                + (f" to Porto on day {i}" if i % 3 else "")
                + ("?" if i % 4 == 1 else "")
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


def _run_sql(store_url: str, statements: list[str]) -> None:
    """Run statements on the store behind ``store_url``, outside engramdb."""
    if store_url.startswith("sqlite:///"):
        with sqlite3.connect(store_url.removeprefix("sqlite:///")) as conn:
            for statement in statements:
                conn.execute(statement)
        return
    with psycopg.connect(store_url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def test_an_upgraded_store_flags_its_extracted_questions_without_extracting_again(
    store_url: str,
) -> None:
    """Revision 0024 sets the question flag from the text of records extracted before it."""
    texts = [ASKING, STATED, "Where to?\n", "Is it? I think so."]
    with mem(store_url) as m:
        ids = [r.id or "" for r in m.add(texts, user_id="u")]
        store = m._engine.store
        assert store.answer_kinds(m.namespace, ids) == {ids[0]: QUESTION, ids[2]: QUESTION}
    # As the store was at 0023: extracted, with no question flags.
    _run_sql(
        store_url,
        [
            "UPDATE record_answer_kinds SET kinds = kinds & ~16",
            "UPDATE alembic_version SET version_num = '0023'",
        ],
    )
    with mem(store_url, penalty=0.9) as m:
        store = m._engine.store
        assert store.extraction_counts(m.namespace)["pending"] == 0  # nothing queued again
        assert store.answer_kinds(m.namespace, ids) == {ids[0]: QUESTION, ids[2]: QUESTION}
        assert top(m, "did she like the trip to the lake")[0] == ids[1]


def test_a_page_is_exact_when_questions_near_its_end_drop_out(store_url: str) -> None:
    """A question on the page may fall below the candidates just under it, and a question just
    under it may not rise: both are read, so every page is the head of the longest one."""
    query = "lake trip with friends"
    words = [
        "apple",
        "river",
        "stone",
        "cloud",
        "paper",
        "green",
        "music",
        "horse",
        "glass",
        "bread",
        "chair",
    ]
    # Scores fall with each added word; every even record asks.
    texts = [
        " ".join(["lake trip", *words[:i], "with friends" if i % 3 else "alone"])
        + ("?" if i % 2 == 0 else "")
        for i in range(12)
    ]
    # On SQLite the derived keyword index answers, so candidates come unlocated and the
    # search must choose which to locate (FTS5's candidates come located).
    extra = {"keyword_index_min_rows": 0} if store_url.startswith("sqlite") else {}
    with mem(store_url, weight=0.0, penalty=0.0, **extra) as m:
        m.add(texts, user_id="u")
        if extra:
            _wait_for_keyword_index(m)
        unpenalised = top(m, query, k=12)
    with mem(store_url, weight=0.0, penalty=0.1, **extra) as m:
        if extra:
            _wait_for_keyword_index(m)
        longest = top(m, query, k=12)
        assert longest != unpenalised  # the penalty reorders this page
        for k in range(1, 11):
            assert top(m, query, k=k) == longest[:k], k


def _wait_for_keyword_index(m: Memory) -> None:
    keywords = m._engine.store._keywords  # type: ignore[attr-defined]
    m.search("lake", mode="keyword", user_id="u")  # the first search starts its build
    deadline = time.monotonic() + 60
    while keywords._index is None:
        assert time.monotonic() < deadline, "the keyword index was never built"
        time.sleep(0.02)
