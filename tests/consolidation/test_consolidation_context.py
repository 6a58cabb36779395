"""Consolidation keeps thread context right: a turn's keyword text names its current
neighbours after a merge takes one out and moves the survivor to the earlier time, and
again after the merge is undone (as the write path does after a delete or an update).

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


def test_a_merge_and_its_undo_reindex_the_thread_context(tmem: Memory) -> None:
    texts = ["kiwi opens the chat", NURSE, "mango in the middle", NURSE_2, "papaya closes it"]
    out = tmem.add(
        [
            {"text": t, "thread_id": "t", "occurred_at": T0 + timedelta(minutes=i)}
            for i, t in enumerate(texts)
        ]
    )
    kiwi, first, mango, second, papaya = (r.id for r in out)
    assert finds(tmem, "papaya") == {second, papaya}

    report = tmem.consolidate()

    # The longer text survives and takes the earlier time: kiwi, survivor, mango, papaya.
    assert [(m.survivor_id, m.merged_ids) for m in report.merges] == [(second, [first])]
    assert tmem.get(second).occurred_at == T0 + timedelta(minutes=1)
    assert finds(tmem, "kiwi") == {kiwi, second}
    assert finds(tmem, "mango") == {second, mango, papaya}
    assert finds(tmem, "papaya") == {mango, papaya}

    tmem.unmerge(first)

    # Back as written: kiwi, first, mango, second, papaya.
    assert finds(tmem, "kiwi") == {kiwi, first}
    assert finds(tmem, "mango") == {first, mango, second}
    assert finds(tmem, "papaya") == {second, papaya}
