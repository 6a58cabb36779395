"""Semantics with the real model: paraphrased questions find the right memory in the top 3.

The questions avoid the memories' keywords on purpose, so the keyword side alone cannot
answer them; hybrid must still rank the right memory in the top 3. Vector mode is measured
too and reported in the assertion message.
"""

from __future__ import annotations

import pytest

from engramdb import Memory

pytestmark = pytest.mark.model

MEMORIES = {
    "allergy": "Maria is allergic to peanuts and carries an EpiPen.",
    "move": "Alice relocated from Berlin to Lisbon in the spring of 2021.",
    "car": "Tom drives an electric Tesla Model 3 that he bought last year.",
    "tea": "Bob cannot stand coffee; he drinks green tea every morning.",
    "dog": "The family has a golden retriever named Biscuit.",
    "job": "Priya works as a nurse in the pediatric ward of the city hospital.",
    "wedding": "Sam and Lee got married on a beach in Crete last June.",
    "vegan": "Jonas stopped eating meat, eggs and dairy three years ago.",
    "marathon": "Elena finished the Boston Marathon in just under four hours.",
    "guitar": "Kenji has been taking classical guitar lessons on Saturdays.",
    "flight": "The team's flight to Tokyo departs on March 3 at 9:40 pm.",
    "password": "The wifi network in the office is called Orion-5G.",
    "birthday": "Grandma turns ninety on the 14th of November.",
    "budget": "The marketing budget for Q3 was cut by twenty percent.",
    "sleep": "Omar struggles with insomnia and rarely sleeps more than five hours.",
}

QUESTIONS = [
    ("Which food could give Maria a dangerous reaction?", "allergy"),
    ("Where does Alice live now?", "move"),
    ("What kind of vehicle does Tom own?", "car"),
    ("What hot beverage does Bob prefer when he wakes up?", "tea"),
    ("What pet do they have at home?", "dog"),
    ("What is Priya's profession?", "job"),
    ("Where did the couple hold their ceremony?", "wedding"),
    ("Does Jonas follow a plant-based diet?", "vegan"),
    ("How long did Elena take to run 42 kilometres?", "marathon"),
    ("Which instrument is Kenji learning?", "guitar"),
    ("When does the trip to Japan leave?", "flight"),
    ("How old will grandmother be this autumn?", "birthday"),
    ("Who has trouble getting enough rest at night?", "sleep"),
]


def _rank(mem: Memory, question: str, rid: str, mode: str) -> int | None:
    hits = mem.search(question, mode=mode, top_k=5)  # type: ignore[arg-type]
    ids = [h.record.id for h in hits]
    return ids.index(rid) + 1 if rid in ids else None


def test_paraphrased_questions_find_the_memory(model_mem: Memory) -> None:
    keys = list(MEMORIES)
    res = model_mem.add([MEMORIES[k] for k in keys], user_id="u")
    ids = {k: r.id or "" for k, r in zip(keys, res, strict=True)}
    report = []
    misses = {"hybrid": [], "vector": []}  # type: dict[str, list[str]]
    for question, key in QUESTIONS:
        ranks = {}
        for mode in ("hybrid", "vector"):
            ranks[mode] = _rank(model_mem, question, ids[key], mode)
            if ranks[mode] is None or ranks[mode] > 3:  # type: ignore[operator]
                misses[mode].append(question)
        report.append(f"{key}: hybrid={ranks['hybrid']} vector={ranks['vector']}")
    summary = "\n".join(report)
    print(summary)
    assert misses["hybrid"] == [], summary
    assert misses["vector"] == [], summary


def test_scoping_still_applies_with_the_model(model_mem: Memory) -> None:
    model_mem.add("Maria is allergic to peanuts.", user_id="maria")
    model_mem.add("Bob loves peanut butter sandwiches.", user_id="bob")
    hits = model_mem.search("what food is dangerous for her?", user_id="maria")
    assert [h.record.user_id for h in hits] == ["maria"]
