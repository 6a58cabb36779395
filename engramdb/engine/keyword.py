"""Turning a free-text query into a safe FTS5 MATCH expression."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

_WORD = re.compile(r"\w+", re.UNICODE)
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "if",
        "of",
        "at",
        "by",
        "for",
        "with",
        "about",
        "to",
        "from",
        "in",
        "on",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "do",
        "does",
        "did",
        "doing",
        "have",
        "has",
        "had",
        "having",
        "i",
        "me",
        "my",
        "we",
        "our",
        "you",
        "your",
        "he",
        "him",
        "his",
        "she",
        "her",
        "it",
        "its",
        "they",
        "them",
        "their",
        "what",
        "which",
        "who",
        "whom",
        "this",
        "that",
        "these",
        "those",
        "am",
        "as",
        "until",
        "while",
        "into",
        "through",
        "during",
        "before",
        "after",
        "above",
        "below",
        "up",
        "down",
        "out",
        "off",
        "over",
        "under",
        "again",
        "then",
        "once",
        "here",
        "there",
        "when",
        "where",
        "why",
        "how",
        "all",
        "any",
        "both",
        "each",
        "few",
        "more",
        "most",
        "other",
        "some",
        "such",
        "no",
        "nor",
        "not",
        "only",
        "own",
        "same",
        "so",
        "than",
        "too",
        "very",
        "s",
        "t",
        "can",
        "will",
        "just",
        "don",
        "should",
        "now",
    ]
)


def match_expression(query: str, max_terms: int = 32) -> str:
    """Return an FTS5 query ORing the query's words, each quoted (never raw FTS syntax).

    Stop words are dropped unless nothing else is left. Quoting makes every caller string a
    literal phrase, so ``NEAR``, ``*``, ``"`` or column filters in the input have no effect.
    """
    words = [w.lower() for w in _WORD.findall(query)]
    kept = [w for w in words if w not in STOPWORDS] or words
    seen: list[str] = []
    for w in kept:
        if w not in seen:
            seen.append(w)
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in seen[:max_terms])


MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
CONTEXT_CHARS = 1000
DAY_US = 86_400_000_000


def date_words(when_us: int) -> str:
    """Return a UTC date in words (``"8 May 2023"``) so month and year names are searchable."""
    return _day_words(when_us // DAY_US)


@lru_cache(maxsize=4096)
def _day_words(day: int) -> str:
    """The words of one UTC day (days since the epoch): cached, as a batch of records
    mostly shares a few days and building the date costs a third of ``index_text``."""
    from engramdb.timeutil import from_us_req

    when = from_us_req(day * DAY_US)
    return f"{when.day} {MONTHS[when.month - 1]} {when.year}"


def index_text(own: str, when_us: int | None = None, context: Sequence[str] = ()) -> str:
    """Return the keyword-index text of one chunk (the stored text is never changed).

    The chunk's own words are written twice, so that a match in the chunk itself outweighs
    the same match in its context 2:1 under BM25; then the neighbouring turns of its thread
    (each cut to ``CONTEXT_CHARS``), which carry what a short reply ("yes, last week!") is
    about; then the date in words, which lets "what did she do in May 2023" match. Each
    part raised LoCoMo's keyword recall (docs/tuning.md).
    """
    parts = [own, own]
    parts.extend(c[:CONTEXT_CHARS] for c in context)
    if when_us is not None:
        parts.append(date_words(when_us))
    return "\n".join(parts)
