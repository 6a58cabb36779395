"""Facts from conversation turns: who lives, works, likes or owns what, and since when.

An extractor turns the messages of one ``add_messages`` call into :class:`Fact` s. Two
implementations share the :class:`FactExtractor` interface:

* :class:`PatternFactExtractor` (the default, no model download): the spaCy pipeline of
  entity extraction, its sentence splitting and its dependency patterns
  (:mod:`engramdb.extract.relations`), with the speaker's first person ("I", "my wife and
  I") as a subject: "I moved to Lisbon last year" -> (user, lives_in, Lisbon), valid from
  the start of the year before the message.
* :class:`~engramdb.extract.fact_llm.OpenAIFactExtractor`: any OpenAI-compatible chat
  completions endpoint, asked for the same facts as JSON.

A leaf: imports only other leaves and its own package.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from engramdb.extract.entities import KEPT_TYPES, load_pipeline
from engramdb.extract.relations import find_relations

# The relations a fact may state; a subject holds one value of each at a time
# (a newer value closes the older one), except for the many-valued ones.
FACT_RELATIONS = (
    "works_for",
    "lives_in",
    "located_in",
    "part_of",
    "knows",
    "related_to",
    "likes",
    "owns",
)
SINGLE_VALUED = frozenset({"works_for", "lives_in"})
SPEAKER = "user"  # the subject of a first-person statement
FIRST_PERSON = frozenset({"i", "me", "we"})
# Roles whose "I" is not the user's: their first-person statements give no facts.
NOT_USER_ROLES = frozenset({"assistant", "system", "tool", "function"})
RELATION_WORDS = {
    "works_for": "works for",
    "lives_in": "lives in",
    "located_in": "is located in",
    "part_of": "is part of",
    "knows": "knows",
    "related_to": "is related to",
    "likes": "likes",
    "owns": "owns",
}
_YEAR = re.compile(r"\b(?:in|since|from)\s+((?:19|20)\d\d)\b", re.IGNORECASE)
_LAST_YEAR = re.compile(r"\blast year\b", re.IGNORECASE)
_YEARS_AGO = re.compile(r"\b(\d{1,2}|two|three|four|five) years ago\b", re.IGNORECASE)
_NUMBERS = {"two": 2, "three": 3, "four": 4, "five": 5}


@dataclass(frozen=True, slots=True)
class FactInput:
    """One message as an extractor reads it: its text, speaker role and time (epoch µs)."""

    text: str
    role: str
    occurred_at: int


@dataclass(frozen=True, slots=True)
class Fact:
    """A statement about a subject: ``(subject, relation, object)``, valid from a time.

    ``subject`` is :data:`SPEAKER` for the speaker's own statements, else a name as
    written; ``valid_from`` is epoch microseconds; ``evidence`` is the sentence stating it.
    """

    subject: str
    relation: str
    object: str
    valid_from: int
    evidence: str
    confidence: float

    def text(self) -> str:
        """The fact as a sentence: ``"user lives in Lisbon"``."""
        return f"{self.subject} {RELATION_WORDS.get(self.relation, self.relation)} {self.object}"


@runtime_checkable
class FactExtractor(Protocol):
    """Facts from messages: one list per message, in order. Must not change its input.

    Any object with this method can be passed as ``Memory(..., facts=obj)``; it is called
    from the thread of the ``add_messages`` call (several at once when callers write
    concurrently), so it must be safe to share between threads.
    """

    def extract(self, messages: list[FactInput]) -> list[list[Fact]]:
        """Return the facts each message states."""
        ...


def start_of_year(year: int) -> int:
    """Epoch microseconds of 1 January of ``year``, UTC."""
    return int(datetime(year, 1, 1, tzinfo=UTC).timestamp() * 1_000_000)


def since(sentence: str, occurred_at: int) -> int:
    """When a stated fact began: a year named in the sentence, "last year", "N years ago",
    or else the time it was said."""
    said = datetime.fromtimestamp(occurred_at / 1_000_000, tz=UTC)
    m = _YEAR.search(sentence)
    if m and int(m.group(1)) <= said.year:
        return start_of_year(int(m.group(1)))
    if _LAST_YEAR.search(sentence):
        return start_of_year(said.year - 1)
    m = _YEARS_AGO.search(sentence)
    if m:
        word = m.group(1).lower()
        n = int(word) if word.isdigit() else _NUMBERS[word]
        return start_of_year(said.year - n)
    return occurred_at


class PatternFactExtractor:
    """Facts from the relation patterns of entity extraction, the speaker as "I"."""

    def __init__(self, batch_size: int = 64) -> None:
        self.batch_size = batch_size
        self._lock = threading.Lock()

    def extract(self, messages: list[FactInput]) -> list[list[Fact]]:
        """Return the facts each message states (see the module docstring)."""
        nlp = load_pipeline()
        with self._lock:
            docs = list(nlp.pipe([m.text for m in messages], batch_size=self.batch_size))
        return [_facts(doc, m) for doc, m in zip(docs, messages, strict=True)]


def _facts(doc: Any, message: FactInput) -> list[Fact]:
    names: list[str] = []
    at_token: dict[int, int] = {}
    for span in doc.ents:
        if span.label_ in KEPT_TYPES:
            for i in range(span.start, span.end):
                at_token[i] = len(names)
            names.append(span.text)

    speaker = message.role.lower() not in NOT_USER_ROLES

    def endpoint(token: Any, concept_ok: bool) -> int | None:
        if token.lower_ in FIRST_PERSON:
            if not speaker:
                return None
            at_token[token.i] = len(names)
            names.append(SPEAKER)
            return at_token[token.i]
        found = at_token.get(token.i)
        if found is not None or not concept_ok or token.pos_ not in ("NOUN", "PROPN"):
            return found
        words = [c for c in token.lefts if c.dep_ == "compound"] + [token]
        at_token[token.i] = len(names)
        names.append(doc.text[words[0].idx : token.idx + len(token.text)])
        return at_token[token.i]

    out: list[Fact] = []
    for sent in doc.sents:
        for a, b, relation, conf in find_relations(sent, endpoint):
            if names[b] == SPEAKER:
                continue  # "Anna knows me": a statement about someone else
            evidence = sent.text.strip()
            out.append(
                Fact(
                    names[a],
                    relation,
                    names[b],
                    since(evidence, message.occurred_at),
                    evidence,
                    conf,
                )
            )
    return out
