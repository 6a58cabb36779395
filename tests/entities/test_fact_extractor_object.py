"""A caller's own fact extractor: ``Memory(..., facts=obj)`` takes any object implementing
the FactExtractor protocol (as ``embedder=`` takes an Embedder), refuses anything else
before the store opens, and a misbehaving one never fails ``add_messages``."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engramdb import (
    AsyncMemory,
    Fact,
    FactExtractor,
    FactInput,
    HashEmbedder,
    Memory,
    Settings,
    ValidationError,
)
from engramdb.models import MemoryRecord

_WORKS = re.compile(r"\bI work (?:at|for) (\w+)")


class KeywordFacts:
    """A deterministic extractor: "I work at X" -> (user, works_for, X), from when it was said.

    Not derived from any engramdb class: the protocol is all it implements. It remembers
    every batch it was given so the test can check what the engine handed it.
    """

    def __init__(self) -> None:
        self.seen: list[list[FactInput]] = []

    def extract(self, messages: list[FactInput]) -> list[list[Fact]]:
        self.seen.append(list(messages))
        out: list[list[Fact]] = []
        for m in messages:
            found = _WORKS.search(m.text) if m.role == "user" else None
            out.append(
                [Fact("user", "works_for", found.group(1), m.occurred_at, m.text, 0.9)]
                if found
                else []
            )
        return out


class WrongShape:
    """Implements the protocol's method but answers with the wrong shape."""

    def extract(self, messages: list[FactInput]) -> list[list[Fact]]:
        return []  # one list per message was due


def at(year: int) -> datetime:
    return datetime(year, 6, 1, tzinfo=UTC)


def facts(mem: Memory) -> list[MemoryRecord]:
    return list(mem.list(filters={"type": "fact"}, limit=100))


def test_a_custom_extractor_object_makes_the_facts(store_url: str) -> None:
    extractor = KeywordFacts()
    assert isinstance(extractor, FactExtractor)
    # The setting is off: the object passed in is what turns facts on.
    with Memory(store_url, embedder=HashEmbedder(384), facts=extractor) as mem:
        assert mem.settings.facts == "off"
        mem.add_messages(
            "chat",
            [
                {"role": "user", "content": "I work at Initech.", "occurred_at": at(2020)},
                {"role": "assistant", "content": "I work at OpenShop.", "occurred_at": at(2020)},
            ],
            user_id="ana",
        )
        mem.add_messages(
            "chat",
            [{"role": "user", "content": "I work at Globex now.", "occurred_at": at(2023)}],
            user_id="ana",
        )
        # The engine handed it the messages as written: text, role and time.
        assert [[(m.text, m.role) for m in batch] for batch in extractor.seen] == [
            [("I work at Initech.", "user"), ("I work at OpenShop.", "assistant")],
            [("I work at Globex now.", "user")],
        ]
        assert extractor.seen[1][0].occurred_at == int(at(2023).timestamp() * 1_000_000)
        by_object = {f.metadata["object"]: f for f in facts(mem)}
        assert set(by_object) == {"Initech", "Globex"}
        # Its facts go through the same rules as the built-in ones: the newer closes the older.
        assert by_object["Initech"].valid_to == by_object["Globex"].valid_from == at(2023)
        page = mem.search("where does the user work", type="fact", valid_at=at(2021))
        assert [h.record.text for h in page.hits] == ["user works for Initech"]


async def test_async_memory_takes_the_extractor_too(tmp_path: Path) -> None:
    extractor = KeywordFacts()
    url = f"sqlite:///{tmp_path / 'a.db'}"
    async with await AsyncMemory.open(url, embedder=HashEmbedder(384), facts=extractor) as mem:
        await mem.add_messages(
            "chat", [{"role": "user", "content": "I work for Hooli."}], user_id="bo"
        )
        found = await mem.list(filters={"type": "fact"})
        assert [r.text for r in found.records] == ["user works for Hooli"]
    assert len(extractor.seen) == 1


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (object(), "got a object without one"),
        (lambda messages: [], "got a function without one"),
        ("spacy", "got 'spacy'"),
        (42, "got a int without one"),
    ],
)
def test_anything_else_is_refused_before_the_store_opens(
    tmp_path: Path, value: Any, named: str
) -> None:
    path = tmp_path / "never.db"
    with pytest.raises(ValidationError, match="FactExtractor") as err:
        Memory(f"sqlite:///{path}", embedder=HashEmbedder(384), facts=value)
    assert named in str(err.value)
    assert err.value.details.get("field") == "facts"
    assert not path.exists()


def test_a_name_overrides_the_setting(tmp_path: Path) -> None:
    settings = Settings(facts="patterns", extract="off")
    url = f"sqlite:///{tmp_path / 'n.db'}"
    with Memory(url, embedder=HashEmbedder(384), settings=settings, facts="off") as mem:
        mem.add_messages("chat", [{"role": "user", "content": "I moved to Lisbon."}])
        assert facts(mem) == []
        assert mem.count() == 1


def test_a_wrong_answer_is_logged_and_the_messages_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    with Memory(url, embedder=HashEmbedder(384), facts=WrongShape()) as mem:
        with caplog.at_level(logging.ERROR, logger="engramdb.facts"):
            out = mem.add_messages("chat", [{"role": "user", "content": "I work at Initech."}])
        assert [r.outcome for r in out] == ["written"]
        assert facts(mem) == [] and mem.count() == 1
    assert any("list of 1 lists" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)
