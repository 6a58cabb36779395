"""Contract: records added by ``add`` with a thread get the thread context of messages.

A turn's keyword text carries its ``context_window`` neighbouring turns, ordered by
occurrence time within the thread (insertion order for equal times), whichever verb wrote
them: ``add`` one at a time, ``add`` in a batch of dicts, or ``add_messages``. Each turn
here has one word no other turn has, so a keyword search for that word finds the turn and
exactly the turns whose window holds it. The window is one turn on each side.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from engramdb import HashEmbedder, Memory, Settings

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def tmem(store_url: str) -> Iterator[Memory]:
    """A Memory whose turns see one neighbour on each side."""
    m = Memory(store_url, embedder=HashEmbedder(384), settings=Settings(context_window=1))
    yield m
    m.close()


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def finds(mem: Memory, word: str, thread: str = "t") -> set[str]:
    """Ids of the records of ``thread`` whose keyword text holds ``word``."""
    page = mem.search(word, thread_id=thread, mode="keyword", top_k=50)
    return {h.record.id for h in page.hits}


def add_one(mem: Memory, text: str, minutes: int, thread: str = "t") -> str:
    rid = mem.add(text, thread_id=thread, occurred_at=at(minutes))[0].id
    assert rid is not None
    return rid


def test_single_adds_index_their_neighbours(tmem: Memory) -> None:
    a = add_one(tmem, "we should visit the aquarium", 0)
    b = add_one(tmem, "saturday works for me", 1)
    c = add_one(tmem, "bring the tickets please", 2)
    assert finds(tmem, "aquarium") == {a, b}
    assert finds(tmem, "saturday") == {a, b, c}
    assert finds(tmem, "tickets") == {b, c}
    # Context stays in the index: the stored text is what was given.
    assert tmem.get(b).text == "saturday works for me"


def test_a_batch_of_dicts_gets_context_per_thread(tmem: Memory) -> None:
    out = tmem.add(
        [
            {"text": "alpha opens thread one", "thread_id": "one", "occurred_at": at(0)},
            {"text": "bravo opens thread two", "thread_id": "two", "occurred_at": at(0)},
            {"text": "charlie follows in one", "thread_id": "one", "occurred_at": at(1)},
            {"text": "delta without a thread", "occurred_at": at(1)},
            {"text": "echo follows in two", "thread_id": "two", "occurred_at": at(1)},
        ]
    )
    a, b, c, d, e = (r.id for r in out)
    assert finds(tmem, "alpha", "one") == {a, c}
    assert finds(tmem, "charlie", "one") == {a, c}
    assert finds(tmem, "bravo", "two") == {b, e}
    # Nothing crosses threads, and a record without a thread gets no context.
    assert finds(tmem, "bravo", "one") == set()
    page = tmem.search("alpha", mode="keyword", top_k=50)
    assert d not in {h.record.id for h in page.hits}


def test_turns_arriving_out_of_order_are_placed_by_occurrence_time(tmem: Memory) -> None:
    first = add_one(tmem, "kiwi was said first", 0)
    third = add_one(tmem, "mango was said third", 20)
    assert finds(tmem, "mango") == {first, third}
    # The middle turn arrives last: it sits between the two, which no longer see each other.
    second = add_one(tmem, "papaya was said second", 10)
    assert finds(tmem, "papaya") == {first, second, third}
    assert finds(tmem, "mango") == {second, third}
    assert finds(tmem, "kiwi") == {first, second}
    # A batch arriving out of order, and before every stored turn.
    early = tmem.add(
        [
            {"text": "plum came later", "thread_id": "t", "occurred_at": at(-5)},
            {"text": "cherry came earliest", "thread_id": "t", "occurred_at": at(-10)},
        ]
    )
    plum, cherry = (r.id for r in early)
    assert finds(tmem, "cherry") == {cherry, plum}
    assert finds(tmem, "plum") == {cherry, plum, first}
    assert finds(tmem, "kiwi") == {plum, first, second}


def test_equal_times_keep_insertion_order(tmem: Memory) -> None:
    a = add_one(tmem, "lemon at noon", 0)
    b = add_one(tmem, "lime at noon", 0)
    out = tmem.add(
        [
            {"text": "orange at noon", "thread_id": "t", "occurred_at": at(0)},
            {"text": "grape at noon", "thread_id": "t", "occurred_at": at(0)},
        ]
    )
    c, d = (r.id for r in out)
    assert finds(tmem, "lemon") == {a, b}
    assert finds(tmem, "lime") == {a, b, c}
    assert finds(tmem, "orange") == {b, c, d}
    assert finds(tmem, "grape") == {c, d}


def test_an_update_reindexes_the_turn_and_its_neighbours(tmem: Memory) -> None:
    a = add_one(tmem, "first turn about sailing", 0)
    b = add_one(tmem, "second turn about rowing", 1)
    c = add_one(tmem, "third turn about diving", 2)
    tmem.update(b, text="second turn about climbing")
    assert finds(tmem, "rowing") == set()
    assert finds(tmem, "climbing") == {a, b, c}
    assert finds(tmem, "sailing") == {a, b}


def test_a_delete_joins_the_neighbours_it_separated(tmem: Memory) -> None:
    a = add_one(tmem, "north was first", 0)
    b = add_one(tmem, "east was second", 1)
    c = add_one(tmem, "south was third", 2)
    assert finds(tmem, "south") == {b, c}
    tmem.delete(b)
    assert finds(tmem, "east") == set()
    assert finds(tmem, "south") == {a, c}
    assert finds(tmem, "north") == {a, c}


def test_messages_and_added_turns_share_one_thread(tmem: Memory) -> None:
    a = add_one(tmem, "violin came by add", 0)
    msgs = tmem.add_messages(
        "t", [{"role": "user", "content": "cello came by add_messages", "occurred_at": at(1)}]
    )
    b = msgs[0].record
    assert b is not None
    c = add_one(tmem, "flute came by add again", 2)
    assert finds(tmem, "violin") == {a, b.id}
    assert finds(tmem, "cello") == {a, b.id, c}
    assert finds(tmem, "flute") == {b.id, c}


def test_facts_and_summaries_are_not_turns(tmem: Memory) -> None:
    a = add_one(tmem, "oak in the first turn", 0)
    fact = tmem.add("birch is a stated fact", thread_id="t", occurred_at=at(1), type="fact")[0]
    summary = tmem.add(
        "cedar sums the thread up", thread_id="t", occurred_at=at(1), type="summary"
    )[0]
    b = add_one(tmem, "pine in the second turn", 2)
    assert fact.id is not None and summary.id is not None
    # The fact and the summary neither give context to the turns nor take theirs.
    assert finds(tmem, "oak") == {a, b}
    assert finds(tmem, "birch") == {fact.id}
    assert finds(tmem, "cedar") == {summary.id}
    # Making a turn a fact takes it out of its neighbours' windows.
    c = add_one(tmem, "elm in the third turn", 3)
    assert finds(tmem, "pine") == {a, b, c}
    tmem.update(b, type="fact")
    assert finds(tmem, "elm") == {a, c}
