"""Facts over time from add_messages: fact records linked to their source, valid from when
they began, closed (never deleted) by a newer contradicting fact, answered by valid_at."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from protocol_servers import OpenAIProtocolServer

from engramdb import HashEmbedder, Memory, Settings
from engramdb.models import MemoryRecord


def at(year: int, month: int = 6) -> datetime:
    return datetime(year, month, 1, tzinfo=UTC)


@pytest.fixture
def fmem(store_url: str) -> Iterator[Memory]:
    settings = Settings(facts="patterns", extract="off")
    m = Memory(store_url, embedder=HashEmbedder(384), settings=settings)
    yield m
    m.close()


def say(mem: Memory, text: str, when: datetime, thread: str = "chat") -> str:
    out = mem.add_messages(
        thread, [{"role": "user", "content": text, "occurred_at": when}], user_id="ana"
    )
    assert out[0].record is not None
    return out[0].record.id


def facts(mem: Memory, **filters: Any) -> list[MemoryRecord]:
    return list(mem.list(filters={"type": "fact", **filters}, limit=100))


def lives_at(mem: Memory, when: datetime) -> list[str]:
    page = mem.search("where does the user live", type="fact", valid_at=when, user_id="ana")
    return [
        h.record.metadata["object"]
        for h in page.hits
        if h.record.metadata["relation"] == "lives_in"
    ]


def test_a_statement_becomes_a_fact_linked_to_its_source(fmem: Memory) -> None:
    source = say(fmem, "I moved to Lisbon last year.", at(2024, 3))
    [fact] = facts(fmem)
    assert fact.text == "user lives in Lisbon"
    assert fact.user_id == "ana" and fact.thread_id == "chat"
    assert fact.valid_from == datetime(2023, 1, 1, tzinfo=UTC) and fact.valid_to is None
    meta = fact.metadata
    assert (meta["subject"], meta["relation"], meta["object"]) == ("user", "lives_in", "Lisbon")
    assert meta["source_record"] == source
    events = fmem.events("chat")
    assert meta["source_event"] == events[0].id
    # The message stays a turn of the thread; the fact is not one.
    assert {r.type for r in fmem.list(limit=10)} == {"message", "fact"}


def test_a_newer_fact_closes_the_older_one(fmem: Memory) -> None:
    say(fmem, "I live in Porto.", at(2021))
    say(fmem, "Hello again!", at(2022))
    say(fmem, "I moved to Lisbon.", at(2023))
    porto, lisbon = sorted(facts(fmem), key=lambda f: f.valid_from or at(1970))
    assert porto.metadata["object"] == "Porto" and lisbon.metadata["object"] == "Lisbon"
    assert porto.valid_to == lisbon.valid_from == at(2023)
    assert lisbon.valid_to is None
    # Where did she live in 2022? And now?
    assert lives_at(fmem, at(2022)) == ["Porto"]
    assert lives_at(fmem, at(2024)) == ["Lisbon"]
    assert lives_at(fmem, at(2020)) == []
    # The old fact is kept, with its history: closing is an update.
    assert [h.op for h in fmem.history(porto.id)][-1] == "update"


def test_a_fact_told_late_is_closed_by_the_newer_one(fmem: Memory) -> None:
    say(fmem, "I moved to Lisbon in 2023.", at(2024))
    say(fmem, "I lived in Porto back in 2019.", at(2024, 7), thread="older")
    by_object = {f.metadata["object"]: f for f in facts(fmem)}
    assert by_object["Porto"].valid_to == by_object["Lisbon"].valid_from == at(2023, 1)
    assert by_object["Lisbon"].valid_to is None
    assert lives_at(fmem, at(2021)) == ["Porto"]


def test_restating_and_many_valued_relations(fmem: Memory) -> None:
    say(fmem, "I live in Berlin.", at(2022))
    say(fmem, "As I said, I live in Berlin.", at(2023))
    assert [f.metadata["object"] for f in facts(fmem)] == ["Berlin"]
    say(fmem, "I love sushi.", at(2023))
    say(fmem, "I love ramen.", at(2024))
    likes = facts(fmem, **{"metadata.relation": "likes"})
    assert sorted(f.metadata["object"] for f in likes) == ["ramen", "sushi"]
    assert all(f.valid_to is None for f in likes)


def test_the_assistants_first_person_is_not_the_user(fmem: Memory) -> None:
    fmem.add_messages(
        "chat",
        [{"role": "assistant", "content": "I live in Dublin.", "occurred_at": at(2024)}],
        user_id="ana",
    )
    assert facts(fmem) == []
    say(fmem, "I live in Dublin too.", at(2024))  # the user's own words are a fact
    assert [f.text for f in facts(fmem)] == ["user lives in Dublin"]


def test_users_facts_are_kept_apart(fmem: Memory) -> None:
    say(fmem, "I live in Porto.", at(2021))
    fmem.add_messages(
        "b",
        [{"role": "user", "content": "I moved to Oslo.", "occurred_at": at(2023)}],
        user_id="bo",
    )
    assert lives_at(fmem, at(2024)) == ["Porto"]


def test_facts_are_off_by_default(store_url: str) -> None:
    with Memory(store_url, embedder=HashEmbedder(384)) as m:
        say(m, "I moved to Lisbon last year.", at(2024))
        assert facts(m) == []


# ------------------------------------------------------------ the OpenAI-compatible extractor


@pytest.fixture
def chat() -> Iterator[OpenAIProtocolServer]:
    server = OpenAIProtocolServer()
    yield server
    server.close()


def answer_with(chat: OpenAIProtocolServer, answer: Any) -> None:
    """Make the server's chat completions carry ``answer`` as their JSON content."""
    chat.chat_answer = lambda body: json.dumps(answer)


def test_the_llm_extractor_speaks_the_protocol(store_url: str, chat: OpenAIProtocolServer) -> None:
    settings = Settings(
        facts="openai",
        facts_llm_url=chat.base_url,
        facts_llm_model="tiny",
        facts_llm_api_key="sk-local",
        extract="off",
    )
    with Memory(store_url, embedder=HashEmbedder(384), settings=settings) as m:
        answer_with(
            chat,
            {
                "facts": [
                    {
                        "message": 0,
                        "subject": "user",
                        "relation": "lives_in",
                        "object": "Porto",
                        "since": "2019-01-01",
                    },
                    {
                        "message": 1,
                        "subject": "user",
                        "relation": "lives_in",
                        "object": "Lisbon",
                        "since": "2023-01-01T00:00:00+00:00",
                    },
                    {"message": 7, "subject": "user", "relation": "lives_in", "object": "Nowhere"},
                    {"message": 0, "subject": "user", "relation": "hates", "object": "rain"},
                ]
            },
        )
        m.add_messages(
            "llm",
            [
                {"role": "user", "content": "I grew up in Porto", "occurred_at": at(2024)},
                {"role": "user", "content": "now I am in Lisbon", "occurred_at": at(2024, 7)},
            ],
            user_id="ana",
        )
        [req] = chat.requests
        assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer sk-local"
        assert req["body"]["model"] == "tiny"
        prompt = req["body"]["messages"][-1]["content"]
        assert "[0]" in prompt and "I grew up in Porto" in prompt and "now I am in Lisbon" in prompt
        # Out-of-range messages and unknown relations are dropped, not guessed.
        assert sorted(f.metadata["object"] for f in facts(m)) == ["Lisbon", "Porto"]
        assert lives_at(m, at(2020)) == ["Porto"]
        assert lives_at(m, at(2024)) == ["Lisbon"]
        # A failing endpoint never fails add_messages: the turn is stored without facts.
        chat.mode = "error"
        out = m.add_messages("llm", [{"role": "user", "content": "I moved to Oslo"}], user_id="ana")
        assert out[0].outcome == "written"
        assert len(facts(m)) == 2


def test_fact_records_are_queued_and_extracted_like_any_add(store_url: str) -> None:
    """add_messages wakes extraction for its messages, then again for the facts it wrote."""
    from engramdb.extract.facts import FactInput, PatternFactExtractor

    mem = Memory(
        store_url,
        embedder=HashEmbedder(384),
        settings=Settings(facts="patterns", extract="inline"),
    )
    pending_during_facts: list[int] = []

    class Watching(PatternFactExtractor):
        """The real pattern extractor, noting what was still queued when it ran."""

        def extract(self, messages: list[FactInput]) -> list[list[Any]]:
            pending_during_facts.append(mem.stats()["entities"]["pending"])
            return super().extract(messages)

    try:
        mem._engine._writer.facts.extractor = Watching(8)  # noqa: SLF001 - our own double
        say(mem, "I moved to Lisbon last year.", at(2024))
        # The message was extracted before the facts were worked out ...
        assert pending_during_facts == [0]
        assert [f.text for f in facts(mem)] == ["user lives in Lisbon"]
        # ... and the fact record was extracted too, with no later write and no entity read
        # (stats counts the tables, it does not catch up).
        stats = mem.stats()["entities"]
        assert (stats["pending"], stats["failed"], stats["mentions"]) == (0, 0, 2)
        lisbon = [e for e in mem.entities() if e.name == "Lisbon"]
        assert [e.mention_count for e in lisbon] == [2]
    finally:
        mem.close()
