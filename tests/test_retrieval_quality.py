"""Retrieval quality: messages are found through their neighbouring turns and their date.

A hand-written conversation (three sessions, months apart) where some answers sit in turns
that do not repeat the question's words: "Yes! She's called Biscuit." is only about a dog
through the turn before it. The keyword index of a message holds its neighbours and its date
in words; the stored text stays exactly as given, and editing or deleting a turn re-indexes
its neighbours.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engramdb import Memory

SESSIONS: list[tuple[datetime, list[tuple[str, str]]]] = [
    (
        datetime(2024, 1, 9, 18, 30, tzinfo=UTC),
        [
            ("Priya", "Happy new year Tom! How were the holidays?"),
            ("Tom", "Quiet, mostly. I signed up for a half marathon in the spring."),
            ("Priya", "That's brave. Have you run that far before?"),
            ("Tom", "Never further than ten kilometres, so I need a proper plan."),
            ("Priya", "My sister uses a plan from a running club, I'll ask her."),
            ("Tom", "Thanks, that would help a lot."),
            ("Priya", "We're also thinking about getting a dog this year."),
            ("Tom", "Oh nice, what kind?"),
            ("Priya", "Probably a retired greyhound from the rescue shelter."),
            ("Tom", "They are supposed to be very calm at home."),
            ("Priya", "That's what convinced my partner."),
            ("Tom", "Keep me posted!"),
            ("Priya", "Will do, good luck with the training."),
        ],
    ),
    (
        datetime(2024, 3, 14, 12, 5, tzinfo=UTC),
        [
            ("Tom", "Long time! Did you end up adopting the greyhound from the shelter?"),
            ("Priya", "Yes! We brought her home on Saturday. She's called Biscuit."),
            ("Tom", "What a great name."),
            ("Priya", "She sleeps about twenty hours a day, it's hilarious."),
            ("Tom", "My training is going well, I did eighteen kilometres on Sunday."),
            ("Priya", "Wow, your knees must hate you."),
            ("Tom", "A bit. I bought new shoes which helped."),
            ("Priya", "Which ones?"),
            ("Tom", "The ones with the thick foam soles, they feel like pillows."),
            ("Priya", "I should get some for walking Biscuit."),
            ("Tom", "Also, work is sending me to Osaka in May for a conference."),
            ("Priya", "Lucky you, try the okonomiyaki there."),
            ("Tom", "Already on my list."),
        ],
    ),
    (
        datetime(2024, 6, 2, 9, 45, tzinfo=UTC),
        [
            ("Priya", "How was Japan?"),
            ("Tom", "Amazing, the food alone was worth the flight."),
            ("Priya", "And the race?"),
            ("Tom", "I ran the half marathon last weekend, finished in 1:52!"),
            ("Priya", "That's a great time for a first one."),
            ("Tom", "I was aiming for two hours, so I'm thrilled."),
            ("Priya", "Biscuit and I cheered from the sofa."),
            ("Tom", "Ha, I could feel the support."),
            ("Priya", "We also moved flats, we're near the river now."),
            ("Tom", "Is it quieter than the old place?"),
            ("Priya", "Much, and there is a park for the dog right opposite."),
            ("Tom", "Perfect for a greyhound."),
            ("Priya", "She mostly naps there too."),
        ],
    ),
]


def ingest(mem: Memory, thread: str) -> dict[str, str]:
    """Add each session with its own add_messages call; return text -> record id."""
    ids = {}
    for when, turns in SESSIONS:
        messages = [
            {"role": who, "content": text, "occurred_at": when + timedelta(minutes=i)}
            for i, (who, text) in enumerate(turns)
        ]
        for (_, text), res in zip(turns, mem.add_messages(thread, messages), strict=True):
            assert res.record is not None
            ids[text] = res.record.id
    return ids


def top_ids(mem: Memory, query: str, mode: str = "hybrid", k: int = 5) -> list[str]:
    """Record ids of the top ``k`` hits in the thread."""
    page = mem.search(query, thread_id="chat", top_k=k, mode=mode)  # type: ignore[arg-type]
    return [h.record.id for h in page.hits]


@pytest.mark.model
def test_evidence_found_through_neighbour_and_date(model_mem: Memory) -> None:
    """Answers that only make sense with the turn before, or the date, are in the top 5."""
    ids = ingest(model_mem, "chat")
    biscuit = ids["Yes! We brought her home on Saturday. She's called Biscuit."]
    finish = ids["I ran the half marathon last weekend, finished in 1:52!"]
    # "adopt", "shelter" and "greyhound" are only in the question turn before the answer.
    assert biscuit in top_ids(model_mem, "What is the name of the greyhound Priya adopted?")
    assert biscuit in top_ids(model_mem, "Which dog did Priya adopt from the shelter?", "keyword")
    # "June 2024" is in no turn's text, only in the date the finish was told on.
    hits = top_ids(model_mem, "How long did Tom's half marathon take in June 2024?")
    assert finish in hits


def test_stored_text_exact_and_neighbours_reindexed(mem: Memory) -> None:
    """Context goes to the index only; edits and deletes correct the neighbours' index."""
    text = "Sounds good,  Saturday works — see you there 🙂"
    first = mem.add_messages("plans", [{"role": "ana", "content": "Let's visit the aquarium"}])
    # A later call: the new turn gets the earlier turn as context, and the earlier turn the new.
    second = mem.add_messages(
        "plans",
        [{"role": "ben", "content": text}, {"role": "ana", "content": "Bring the tickets"}],
    )
    a = first[0].record
    b = second[0].record
    c = second[1].record
    assert a is not None and b is not None and c is not None
    assert mem.get(b.id).text == text
    assert b.id in top_ids_in(mem, "aquarium")
    assert a.id in top_ids_in(mem, "tickets")
    # A hit shows the matching span of the stored text, never the index text.
    for h in mem.search("aquarium", thread_id="plans", mode="keyword").hits:
        assert h.chunk in h.record.text and "\n" not in h.chunk

    mem.update(a.id, text="Let's visit the planetarium")
    assert mem.get(b.id).text == text
    assert b.id not in top_ids_in(mem, "aquarium")
    assert b.id in top_ids_in(mem, "planetarium")

    mem.delete(a.id)
    assert top_ids_in(mem, "planetarium") == []
    assert mem.get(b.id).text == text


def top_ids_in(mem: Memory, query: str) -> list[str]:
    """Keyword-mode hits in the 'plans' thread."""
    page = mem.search(query, thread_id="plans", top_k=10, mode="keyword")
    return [h.record.id for h in page.hits]
