"""The alias step's rules, on plain values: which short names join which full name."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from engramdb.extract import alias_links
from engramdb.extract.names import TITLES, normalise


@dataclass
class Person:
    id: int
    name: str
    norm: str
    canonical_id: int | None = None
    pinned: bool = False


def _people(*names: str) -> list[Person]:
    return [Person(i, n, normalise(n)) for i, n in enumerate(names)]


def _joins(people: list[Person]) -> set[tuple[str, str]]:
    by_id = {p.id: p.name for p in people}
    return {(by_id[a], by_id[b]) for a, b, _ in alias_links(people)}


def test_short_forms_join_the_one_full_name_they_can_stand_for() -> None:
    people = _people("Bob Smith", "Bob", "Smith", "Mr. Smith", "Dr. Bob Smith", "Alice")
    assert _joins(people) == {
        ("Bob", "Bob Smith"),
        ("Smith", "Bob Smith"),
        ("Mr. Smith", "Bob Smith"),
        ("Dr. Bob Smith", "Bob Smith"),
    }


def test_an_ambiguous_or_titled_first_name_joins_nothing() -> None:
    people = _people("Bob Smith", "Bob Jones", "Bob", "Mr. Jones", "Mr. Bob")
    # "Bob" could be either; a title goes with a last name, so "Mr. Bob" stands for no one.
    assert _joins(people) == {("Mr. Jones", "Bob Jones")}


def test_joined_and_pinned_entities_are_left_alone() -> None:
    people = _people("Bob Smith", "Bob", "Smith")
    people[1].canonical_id = 0  # already joined
    people[2].pinned = True  # separated by hand
    assert alias_links(people) == []


def _reference(people: list[Person]) -> list[tuple[int, int, str]]:
    """The rules as the module's docstring states them, one person against every other."""

    def core(p: Person) -> tuple[bool, list[str]]:
        words = p.norm.split()
        kept = [w for w in words if w not in TITLES]
        return len(kept) < len(words), kept

    full = {}
    for p in people:
        titled, words = core(p)
        if p.canonical_id is None and not titled and len(words) >= 2:
            full[p.id] = words
    links = []
    for p in people:
        if p.canonical_id is not None or p.pinned or p.id in full:
            continue
        titled, words = core(p)
        if not words:
            continue
        if len(words) >= 2:
            matches = [i for i, w in full.items() if w == words]
        elif titled:
            matches = [i for i, w in full.items() if w[-1] == words[0]]
        else:
            matches = [i for i, w in full.items() if words[0] in (w[0], w[-1])]
        if len(matches) == 1:
            name = next(q.name for q in people if q.id == matches[0])
            links.append((p.id, matches[0], f"{p.name!r} can only be {name!r} in this scope"))
    return links


@pytest.mark.parametrize("seed", range(12))
def test_the_indexed_step_plans_what_the_rules_plan_on_large_scopes(seed: int) -> None:
    rng = random.Random(seed)
    firsts = [f"first{i}" for i in range(rng.choice([3, 30, 300]))]
    lasts = [f"last{i}" for i in range(rng.choice([3, 30, 300]))] + firsts[:2]
    names = []
    for _ in range(rng.choice([20, 200, 800])):
        r = rng.random()
        if r < 0.35:
            names.append(f"{rng.choice(firsts)} {rng.choice(lasts)}")
        elif r < 0.45:
            names.append(f"Mr. {rng.choice(lasts)}")
        elif r < 0.5:
            names.append(f"Dr. {rng.choice(firsts)} {rng.choice(lasts)}")
        elif r < 0.55:
            names.append(f"{rng.choice(firsts)} {rng.choice(firsts)} {rng.choice(lasts)}")
        else:
            names.append(rng.choice(firsts + lasts))
    people = _people(*names, "Zed Quinn", "Zed")  # at least one join in every scope
    for p in people[:-2]:
        p.pinned = rng.random() < 0.05
        p.canonical_id = 0 if rng.random() < 0.1 else None
    planned = alias_links(people)
    assert planned == _reference(people)
    assert (people[-1].id, people[-2].id) in {(a, b) for a, b, _ in planned}
