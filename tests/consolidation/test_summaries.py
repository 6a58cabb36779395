"""Thread summaries and summarize_text: the extractive default and the HTTP summarizer.

The HTTP summarizer is tested against a small server started here that speaks the
OpenAI chat-completions protocol on a free loopback port (not against a real LLM).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from protocol_servers import OpenAIProtocolServer

from engramdb import ExtractionError, HashEmbedder, Memory, Settings, ValidationError
from engramdb.extract.summarize import ExtractiveSummarizer, split_sentences, textrank
from engramdb.models import ConsolidationReport, MemoryRecord

TURNS = [
    "I moved to Lisbon last year for a new job.",
    "The job is at a hospital near the river.",
    "Lisbon has great food and the hospital pays well.",
    "My sister visited me in Lisbon in May.",
    "We ate at a small place near the hospital.",
    "Yesterday it rained all day.",
]


def _open(url: str, **settings: Any) -> Memory:
    return Memory(url, embedder=HashEmbedder(384), settings=Settings(**settings))


def _turns(texts: list[str]) -> list[dict[str, str]]:
    return [{"role": "user", "content": t} for t in texts]


def _created_summary(m: Memory, report: ConsolidationReport, thread_id: str) -> MemoryRecord:
    """The one summary ``report`` created, of user u's six-turn thread ``thread_id``."""
    [action] = report.summaries
    assert (action.thread_id, action.user_id, action.turns, action.status) == (
        thread_id,
        "u",
        6,
        "created",
    )
    assert action.summary_id is not None
    summary = m.get(action.summary_id)
    assert summary.type == "summary" and summary.thread_id == thread_id
    return summary


def test_a_long_thread_gets_a_summary_record_linked_to_its_events(store_url: str) -> None:
    with _open(store_url, summarize_min_turns=5, summarize_sentences=2) as m:
        m.add_messages("t1", _turns(TURNS), user_id="u")
        m.add_messages("short", _turns(TURNS[:2]), user_id="u")
        summary = _created_summary(m, m.consolidate(), "t1")
        assert summary.user_id == "u"
        sentences = split_sentences([summary.text])
        assert len(sentences) == 2 and set(sentences) <= set(TURNS)
        events = m.events("t1")
        assert summary.metadata["summary_of_thread"] == "t1"
        assert summary.metadata["turns"] == 6
        assert summary.metadata["first_event"] == events[0].id
        assert summary.metadata["last_event"] == events[-1].id
        # Nothing new: nothing to do.
        assert m.consolidate().summaries == []
        # The thread grows: the same summary record is refreshed, its history keeps the old.
        m.add_messages("t1", _turns(["Next week I start a Portuguese course in Lisbon."]))
        [again] = m.consolidate().summaries
        assert (again.summary_id, again.status, again.turns) == (summary.id, "refreshed", 7)
        refreshed = m.get(summary.id)
        assert refreshed.metadata["turns"] == 7
        assert refreshed.metadata["last_event"] == m.events("t1")[-1].id
        assert m.history(summary.id)[-1].op == "update"
        assert m.count(type="summary") == 1


def test_turns_written_by_add_are_summarized_in_the_order_they_occurred(
    store_url: str,
) -> None:
    t0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
    with _open(store_url, summarize_min_turns=5, summarize_sentences=2) as m:
        ids: dict[int, str] = {}
        for i in (3, 0, 5, 1, 4, 2):  # one turn per call, out of order
            at = t0 + timedelta(minutes=i)
            ids[i] = m.add(TURNS[i], thread_id="t", user_id="u", occurred_at=at)[0].id
        # Statements derived from the thread are no turns: not summarized, still merged.
        facts = [
            m.add(text, type="fact", thread_id="t", user_id="u")[0].id
            for text in ("The user lives in Lisbon.", "the user lives in lisbon!!")
        ]

        report = m.consolidate()

        assert [(x.survivor_id, x.merged_ids) for x in report.merges] == [(facts[1], [facts[0]])]
        summary = _created_summary(m, report, "t")
        assert set(split_sentences([summary.text])) <= set(TURNS)
        meta = summary.metadata
        assert (meta["turns"], meta["first_record"], meta["last_record"]) == (6, ids[0], ids[5])
        assert meta["first_event"] is None and meta["last_event"] is None
        assert m.consolidate().summaries == []
        # A message of the same thread is one more turn: the summary is refreshed.
        m.add_messages("t", _turns(["Next week I start a Portuguese course in Lisbon."]))
        [again] = m.consolidate().summaries
        assert (again.summary_id, again.status, again.turns) == (summary.id, "refreshed", 7)
        meta = m.get(summary.id).metadata
        [event] = m.events("t")
        assert (meta["first_record"], meta["last_event"]) == (ids[0], event.id)
        assert meta["last_record"] == m.list(type="message").records[0].id


def test_textrank_prefers_the_central_sentence() -> None:
    # Three sentences share a topic, one is an outlier: the outlier ranks last.
    emb = HashEmbedder(384)
    texts = [
        "Lisbon hospital job pays well",
        "the hospital job in Lisbon",
        "Lisbon job at the hospital",
        "rain",
    ]
    rank = textrank(np.asarray(emb.embed(texts)))
    assert int(np.argmin(rank)) == 3
    summary = ExtractiveSummarizer(lambda t: np.asarray(emb.embed(t))).summarize(TURNS, 1)
    assert summary in TURNS and "rained" not in summary


def test_summarize_text_uses_the_extractive_summarizer(tmp_path: Any) -> None:
    with _open(f"sqlite:///{tmp_path / 's.db'}") as m:
        out = m.summarize_text(" ".join(TURNS), max_sentences=2)
        assert len(split_sentences([out])) == 2 and set(split_sentences([out])) <= set(TURNS)
        assert m.summarize_text("One short sentence here.") == "One short sentence here."
        with pytest.raises(ValidationError):
            m.summarize_text("   ")
        with pytest.raises(ValidationError):
            m.summarize_text("text", max_sentences=0)


def _summary_of(body: dict[str, Any]) -> str:
    """The canned summary: how many lines the user message held."""
    return f"A summary of {body['messages'][1]['content'].count(chr(10)) + 1} lines."


@pytest.fixture
def chat() -> Iterator[OpenAIProtocolServer]:
    s = OpenAIProtocolServer()
    s.chat_answer = _summary_of
    yield s
    s.close()


def test_the_http_summarizer_speaks_the_openai_protocol(
    tmp_path: Any, chat: OpenAIProtocolServer
) -> None:
    settings = {
        "summarizer_url": chat.base_url,
        "summarizer_model": "tiny",
        "summarizer_api_key": "k-123",
        "summarize_min_turns": 3,
    }
    with _open(f"sqlite:///{tmp_path / 'h.db'}", **settings) as m:
        m.add_messages("t", _turns(TURNS[:4]))
        [action] = m.consolidate().summaries
        assert action.text == "A summary of 4 lines."
        assert m.get(action.summary_id or "").metadata["summarizer"] == "http"
        req = chat.requests[-1]
        assert req["path"] == "/v1/chat/completions"
        assert req["body"]["model"] == "tiny" and req["auth"] == "Bearer k-123"
        assert [msg["role"] for msg in req["body"]["messages"]] == ["system", "user"]
        assert m.summarize_text("Some text of mine.") == "A summary of 1 lines."
        chat.mode = "error"
        with pytest.raises(ExtractionError, match="summarizer"):
            m.summarize_text("Some text of mine.")


def test_an_unreachable_summarizer_is_an_error_naming_it(tmp_path: Any) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    m = _open(f"sqlite:///{tmp_path / 'u.db'}", summarizer_url=url)
    with m, pytest.raises(ExtractionError, match=str(port)):
        m.summarize_text("Some text of mine.")
