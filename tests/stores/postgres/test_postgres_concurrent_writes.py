"""PostgreSQL under concurrent writers: one row per text, one winner per compare-and-set."""

from __future__ import annotations

import threading

import pytest
from pg_store_helpers import open_memory

from engramdb import Memory
from engramdb.errors import ConflictError

pytestmark_pg = pytest.mark.postgres


@pytestmark_pg
def test_concurrent_adds_of_one_text_dedupe_to_one_record(postgres_url: str) -> None:
    mems = [open_memory(postgres_url) for _ in range(4)]
    ids: list[str | None] = []
    barrier = threading.Barrier(len(mems))

    def add(m: Memory) -> None:
        barrier.wait()
        ids.append(m.add("the same words at once", user_id="u")[0].id)

    threads = [threading.Thread(target=add, args=(m,)) for m in mems]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert len(ids) == 4 and len(set(ids)) == 1
        assert mems[0].count() == 1
    finally:
        for m in mems:
            m.close()


@pytestmark_pg
def test_slot_compare_and_set_has_one_winner(pg: Memory) -> None:
    wins: list[int] = []
    conflicts: list[int] = []
    barrier = threading.Barrier(6)

    def cas(i: int) -> None:
        barrier.wait()
        try:
            pg.set_slots("t", {"owner": i}, expected_version=0)
            wins.append(i)
        except ConflictError:
            conflicts.append(i)

    threads = [threading.Thread(target=cas, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(wins) == 1 and len(conflicts) == 5
    slots = pg.get_slots("t")
    assert slots.version == 1 and slots.values == {"owner": wins[0]}
