"""Names: the form used for matching, and the alias step that joins a person's names.

Pure functions, no I/O. An entity keeps its name as written ("Mr. Smith"); ``normalise``
gives the key it is matched by (case, accents, punctuation and a leading "the" do not make
two entities). ``alias_links`` joins the short forms of a person's name ("Bob", "Smith",
"Mr. Smith") to the one full name of that user's memories they can stand for, and only
when there is exactly one: two "Bob …" in one scope leave "Bob" alone.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Protocol


class ScopeEntity(Protocol):
    """What the alias step reads of an entity (the stores' ``ScopeEntity`` rows)."""

    id: int
    name: str
    norm: str
    canonical_id: int | None
    pinned: bool


TITLES = frozenset(
    {"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "professor", "sir", "madam", "lady", "lord"}
)
_PUNCT = re.compile(r"[^\w\s&+-]", re.UNICODE)
_SPACE = re.compile(r"\s+")


def normalise(name: str) -> str:
    """The matching key of a name: lower case, no accents or punctuation, no leading "the".

    Example: ``normalise("The  Acme Corp.") == "acme corp"``.
    """
    text = unicodedata.normalize("NFKD", name)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    text = re.sub(r"['’]s\b", "", text)
    text = _SPACE.sub(" ", _PUNCT.sub(" ", text)).strip()
    if text.startswith("the "):
        text = text[4:]
    return text


def _core(norm: str) -> tuple[bool, list[str]]:
    """(has a title, the name's words without titles)."""
    words = norm.split()
    core = [w for w in words if w not in TITLES]
    return len(core) < len(words), core


def alias_links(people: Sequence[ScopeEntity]) -> list[tuple[int, int, str]]:
    """Plan the joins of one user's PERSON entities: ``(entity, canonical, reason)``.

    A full name (two words or more, no title) is canonical. A one-word name joins the only
    full name whose first or last word it is; a titled one ("Mr. Smith") the only full name
    ending with it; a titled full name ("Dr. Bob Smith") the only same full name without
    the title. Entities already joined, or separated by hand (``pinned``), are left alone.
    """
    full: dict[int, list[str]] = {}
    for e in people:
        titled, core = _core(e.norm)
        if e.canonical_id is None and not titled and len(core) >= 2:
            full[e.id] = core
    # The full names indexed by what a short form may match (all its words, its last word,
    # its first or last word), so a scope of n people costs one pass, not n × n: the step
    # runs in the write transaction of every extraction batch that finds a person.
    by_words: dict[tuple[str, ...], list[int]] = {}
    by_last: dict[str, list[int]] = {}
    by_end: dict[str, list[int]] = {}
    for i, words in full.items():
        by_words.setdefault(tuple(words), []).append(i)
        by_last.setdefault(words[-1], []).append(i)
        for word in dict.fromkeys((words[0], words[-1])):
            by_end.setdefault(word, []).append(i)
    names = {p.id: p.name for p in people}
    links: list[tuple[int, int, str]] = []
    for e in people:
        if e.canonical_id is not None or e.pinned or e.id in full:
            continue
        titled, core = _core(e.norm)
        if not core:
            continue
        if len(core) >= 2:
            matches = by_words.get(tuple(core), [])
        elif titled:
            matches = by_last.get(core[0], [])
        else:
            matches = by_end.get(core[0], [])
        if len(matches) == 1:
            target = matches[0]
            links.append((e.id, target, f"{e.name!r} can only be {names[target]!r} in this scope"))
    return links
