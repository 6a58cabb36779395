"""Consolidation keeps thread context right.

Turns written with ``add(thread_id=..., occurred_at=...)`` are turns of their thread for
consolidation as for context: near-duplicate turns are not merged, so every turn keeps its
place and its neighbours. A turn that retention archives leaves its neighbours' keyword
text, and comes back into it when restored (as the write path re-indexes after a delete or
an update).

Each filler turn has one word no other turn has; with a window of one turn on each side,
a keyword search for that word finds the turn and exactly its neighbours.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from engramdb import HashEmbedder, Memory, Settings

NURSE = "Alice lives in Lisbon and works as a nurse at the hospital"
NURSE_2 = "alice lives in lisbon, and works as a nurse at the hospital!!"
T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def tmem(store_url: str) -> Iterator[Memory]:
    m = Memory(store_url, embedder=HashEmbedder(384), settings=Settings(context_window=1))
    yield m
    m.close()


def finds(mem: Memory, word: str) -> set[str]:
    page = mem.search(word, thread_id="t", mode="keyword", top_k=50)
    return {h.record.id for h in page.hits}


def _turns(mem: Memory, texts: list[str], **extra: dict[str, object]) -> list[str]:
    out = mem.add(
        [
            {
                "text": t,
                "thread_id": "t",
                "occurred_at": T0 + timedelta(minutes=i),
                **extra.get(t, {}),
            }
            for i, t in enumerate(texts)
        ]
    )
    return [r.id for r in out]


def test_near_duplicate_turns_written_by_add_are_not_merged(tmem: Memory) -> None:
    texts = ["kiwi opens the chat", NURSE, "mango in the middle", NURSE_2, "papaya closes it"]
    kiwi, first, mango, second, papaya = _turns(tmem, texts)
    # The same two texts outside a thread are near-duplicates that merge.
    loose, loose_2 = (r.id for r in tmem.add([{"text": NURSE}, {"text": NURSE_2}]))

    report = tmem.consolidate()

    assert [(m.survivor_id, m.merged_ids) for m in report.merges] == [(loose_2, [loose])]
    assert tmem.count(thread_id="t") == 5
    assert tmem.get(first).occurred_at == T0 + timedelta(minutes=1)
    assert finds(tmem, "kiwi") == {kiwi, first}
    assert finds(tmem, "mango") == {first, mango, second}
    assert finds(tmem, "papaya") == {second, papaya}


def test_retention_and_restore_reindex_the_thread_context(tmem: Memory) -> None:
    texts = ["kiwi opens the chat", "lime is next", "mango in the middle", "papaya closes it"]
    kiwi, lime, mango, papaya = _turns(tmem, texts, **{"lime is next": {"importance": 0.01}})
    assert finds(tmem, "kiwi") == {kiwi, lime}

    report = tmem.consolidate()

    assert [a.record_id for a in report.archived] == [lime]
    assert finds(tmem, "kiwi") == {kiwi, mango}
    assert finds(tmem, "mango") == {kiwi, mango, papaya}

    tmem.restore_archived(lime)

    assert finds(tmem, "kiwi") == {kiwi, lime}
    assert finds(tmem, "mango") == {lime, mango, papaya}
