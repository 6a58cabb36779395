"""Relations from dependency patterns over one parsed sentence (spaCy tokens).

Each pattern is a verb lemma (or a copula with a noun or adjective) and the preposition
that introduces its object; the subject is the verb's ``nsubj``/``nsubjpass`` (inherited
along a chain of conjoined verbs: "lives in Paris and works for Acme"), and conjoined
subjects or objects each get the relation. A negated verb states no relation. Both ends
must be named entities, except the object of ``likes``/``owns``/``part_of``, which may be a
plain noun ("likes sushi"): it becomes a ``CONCEPT`` entity, with a lower confidence.

Relation types (the library's vocabulary): ``works_for`` (works for/at, employed by,
employs), ``lives_in`` (lives in, resides in, moved to), ``located_in`` (located/based/
headquartered in), ``part_of`` (is part of / a member of, belongs to), ``knows`` (knows,
met, friends with), ``related_to`` (related to, married to), ``likes`` (likes, loves,
enjoys, prefers), ``owns`` (owns, possesses).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

Token = Any  # spacy.tokens.Token (spaCy is imported lazily, never at module load)

# lemma -> (prepositions introducing the object, or None for a direct object; type; confidence)
VERB_PATTERNS: dict[str, list[tuple[frozenset[str] | None, str, float]]] = {
    "work": [(frozenset({"for", "at"}), "works_for", 0.9)],
    "live": [(frozenset({"in", "at"}), "lives_in", 0.9)],
    "reside": [(frozenset({"in", "at"}), "lives_in", 0.85)],
    "move": [(frozenset({"to"}), "lives_in", 0.8)],
    "relocate": [(frozenset({"to"}), "lives_in", 0.8)],
    "locate": [(frozenset({"in", "at"}), "located_in", 0.85)],
    "base": [(frozenset({"in", "at"}), "located_in", 0.8)],
    "headquarter": [(frozenset({"in", "at"}), "located_in", 0.85)],
    "belong": [(frozenset({"to"}), "part_of", 0.75)],
    "know": [(None, "knows", 0.85)],
    "meet": [(None, "knows", 0.75)],
    "befriend": [(None, "knows", 0.8)],
    "marry": [(None, "related_to", 0.85)],
    "like": [(None, "likes", 0.85)],
    "love": [(None, "likes", 0.85)],
    "enjoy": [(None, "likes", 0.8)],
    "prefer": [(None, "likes", 0.8)],
    "adore": [(None, "likes", 0.8)],
    "own": [(None, "owns", 0.85)],
    "possess": [(None, "owns", 0.8)],
}
# copula + this attribute/complement + preposition: "is part of", "is related to"
COPULA_PATTERNS: dict[str, tuple[str, str, float]] = {
    "part": ("of", "part_of", 0.85),
    "member": ("of", "part_of", 0.8),
    "friend": ("with", "knows", 0.8),
    "friends": ("with", "knows", 0.8),
    "related": ("to", "related_to", 0.8),
    "married": ("to", "related_to", 0.85),
}
CONCEPT_OK = frozenset({"likes", "owns", "part_of"})
SUBJECT_DEPS = frozenset({"nsubj", "nsubjpass"})


def _with_conjuncts(token: Token) -> Iterator[Token]:
    yield token
    for child in token.children:
        if child.dep_ == "conj":
            yield from _with_conjuncts(child)


def _subjects(verb: Token) -> list[Token]:
    found = [c for c in verb.children if c.dep_ in SUBJECT_DEPS]
    if not found and verb.dep_ in ("conj", "xcomp") and verb.head is not verb:
        return _subjects(verb.head)
    return [t for s in found for t in _with_conjuncts(s)]


def _prep_objects(head: Token, preps: frozenset[str]) -> list[Token]:
    out: list[Token] = []
    for child in head.children:
        if child.dep_ in ("prep", "agent") and child.lower_ in preps:
            for obj in child.children:
                if obj.dep_ == "pobj":
                    out.extend(_with_conjuncts(obj))
    return out


def _negated(verb: Token) -> bool:
    return any(c.dep_ == "neg" for c in verb.children)


def find_relations(
    sentence: Any, endpoint: Callable[[Token, bool], int | None]
) -> list[tuple[int, int, str, float]]:
    """Relations stated in one sentence: ``(source, target, type, confidence)``.

    ``endpoint(token, concept_ok)`` returns the index of the entity that a token names (or,
    with ``concept_ok``, a concept entity made for a plain noun), or None.
    """
    out: list[tuple[int, int, str, float]] = []

    def add(subj: Token, obj: Token, type_: str, conf: float, reverse: bool = False) -> None:
        concept = type_ in CONCEPT_OK
        a = endpoint(obj if reverse else subj, False)
        b = endpoint(subj if reverse else obj, concept)
        if a is not None and b is not None and a != b:
            out.append((a, b, type_, conf))

    for tok in sentence:
        if tok.pos_ not in ("VERB", "AUX") or _negated(tok):
            continue
        lemma = tok.lemma_.lower()
        subjects = _subjects(tok)
        passive = any(c.dep_ == "nsubjpass" for c in tok.children)
        if lemma == "employ":
            if passive:
                for obj in _prep_objects(tok, frozenset({"by"})):
                    for s in subjects:
                        add(s, obj, "works_for", 0.85)
            else:
                for obj in (c for c in tok.children if c.dep_ == "dobj"):
                    for o in _with_conjuncts(obj):
                        for s in subjects:
                            add(s, o, "works_for", 0.85, reverse=True)
            continue
        if lemma == "be":
            for attr in tok.children:
                pattern = COPULA_PATTERNS.get(attr.lower_)
                if pattern is None or attr.dep_ not in ("attr", "acomp"):
                    continue
                prep, type_, conf = pattern
                for obj in _prep_objects(attr, frozenset({prep})):
                    for s in subjects:
                        add(s, obj, type_, conf)
            continue
        for preps, type_, conf in VERB_PATTERNS.get(lemma, []):
            if preps is None:
                objects = [o for c in tok.children if c.dep_ == "dobj" for o in _with_conjuncts(c)]
            else:
                objects = _prep_objects(tok, preps)
            for obj in objects:
                for s in subjects:
                    add(s, obj, type_, conf)
    return out
