"""Answer types: the kinds of answer a text holds, and the kind a question asks for.

A classic question-answering signal: "where …" is answered by a text naming a place, "when
…" by one naming a time, "who …" by one naming a person, "how many …" by one giving a
number. Extraction records, per record, which of these kinds its own text holds (from the
NLP pipeline's named-entity labels, including dates and numbers, which are not kept as
entities); search asks the question's kinds with a few word rules (no parsing, so it costs
microseconds) and ranks higher the candidates that hold one (:mod:`engramdb.engine.answer_ranking`).

One more flag says the text itself is a question: a turn that asks ("what are their
names?") shares the words of a later question about the same thing but holds none of its
answer, so hybrid search ranks such records a little lower.

Kinds are bit flags, so a record's kinds are one small integer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

PERSON = 1
PLACE = 2
TIME = 4
NUMBER = 8
#: Not a kind of answer: the text is itself a question (see :func:`is_question`).
QUESTION = 16

#: spaCy entity label -> the kind of answer it is.
LABEL_KINDS = {
    "PERSON": PERSON,
    "GPE": PLACE,
    "LOC": PLACE,
    "FAC": PLACE,
    "DATE": TIME,
    "TIME": TIME,
    "CARDINAL": NUMBER,
    "QUANTITY": NUMBER,
    "MONEY": NUMBER,
    "PERCENT": NUMBER,
}

# The question words of each kind. A "how many years" question is answered by a number or
# a date ("for three years", "since 2019"), so the number rule accepts both; "how long" is
# answered by a duration, which the pipeline labels a date.
_RULES = (
    (
        re.compile(
            r"\b(where|cit(?:y|ies)|countr(?:y|ies)|places?|locations?|states?)\b", re.IGNORECASE
        ),
        PLACE,
    ),
    (re.compile(r"\b(who|whom|whose|names?)\b", re.IGNORECASE), PERSON),
    (
        re.compile(
            r"\b(when|(?:what|which) (?:year|month|day|date|time)|how long)\b",
            re.IGNORECASE,
        ),
        TIME,
    ),
    (re.compile(r"\bhow (?:many|much|old)\b", re.IGNORECASE), NUMBER | TIME),
)


def kinds_of_labels(labels: Iterable[str]) -> int:
    """The kinds of answer held by a text whose named entities carry these labels."""
    kinds = 0
    for label in labels:
        kinds |= LABEL_KINDS.get(label, 0)
    return kinds


def is_question(text: str) -> bool:
    """Whether a text is a question: its last sentence ends with a question mark.

    The whitespace trimmed is the one revision 0024 trims in SQL, so the flag it sets on
    records extracted before it is the flag extraction sets now.
    """
    return text.rstrip(" \t\r\n").endswith("?")


def kinds_held(text: str, labels: Iterable[str]) -> int:
    """A text's flags: the kinds of answer its entity labels hold, and whether it asks."""
    return kinds_of_labels(labels) | (QUESTION if is_question(text) else 0)


def kinds_asked(question: str) -> int:
    """The kinds of answer a question asks for (0: none the rules know)."""
    kinds = 0
    for rule, kind in _RULES:
        if rule.search(question):
            kinds |= kind
    return kinds
