"""The batch log of a copy loaded by several connections resumes without loss or repeat.

Each round reads the source stream the way ``migrate`` does (after the plan's point,
stepping over its islands), cuts it into batches, and commits any subset of them (two
loaders and a kill can leave any batch uncommitted while later ones commit). Whatever the
subsets, once a round commits everything every record has been copied exactly once, and
the plan's record count always equals what was copied.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from engramdb.ops.batch_log import entry_key, entry_value, plan_resume, skip_islands

KEY = "migrate_from:sqlite:///src.db"


def _stream(n: int) -> list[dict[str, Any]]:
    return [{"namespace": "ab"[i * 2 // n], "id": f"r{i:04d}"} for i in range(n)]


def _key(item: dict[str, Any]) -> tuple[str, str]:
    return (item["namespace"], item["id"])


def _after(items: list[dict[str, Any]], after: tuple[str, str] | None) -> list[dict[str, Any]]:
    """What ``iter_all(after=...)`` yields: the items past ``after`` in source order."""
    if after is None:
        return items
    keys = [(it["namespace"], it["id"]) for it in items]
    return items[keys.index(after) + 1 :]


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(1, 60),
    batch_size=st.integers(1, 7),
    rounds=st.lists(st.lists(st.booleans(), max_size=30), max_size=5),
)
def test_any_commit_pattern_resumes_to_exactly_once(
    n: int, batch_size: int, rounds: list[list[bool]]
) -> None:
    items = _stream(n)
    log: dict[str, str] = {}
    copies: dict[tuple[str, str], int] = {}
    for commits in [*rounds, []]:  # the last round commits every batch (a run that ends)
        plan = plan_resume(log, KEY)
        assert plan.records == sum(copies.values())
        batches: list[tuple[Any, list[dict[str, Any]]]] = []
        for before, item in skip_islands(_after(items, plan.after), plan.after, plan.islands, _key):
            if not batches or len(batches[-1][1]) >= batch_size:
                batches.append((before, []))
            batches[-1][1].append(item)
        for number, (prev, batch) in enumerate(batches):
            if number < len(commits) and not commits[number]:
                continue  # this batch died with the run
            for it in batch:
                key = (it["namespace"], it["id"])
                copies[key] = copies.get(key, 0) + 1
            last = (batch[-1]["namespace"], batch[-1]["id"])
            log[entry_key(KEY, plan.next_seq + number)] = entry_value(prev, last, len(batch))
    assert copies == {(it["namespace"], it["id"]): 1 for it in items}
    final = plan_resume(log, KEY)
    assert final.after == (items[-1]["namespace"], items[-1]["id"])
    assert final.records == n


def test_a_hole_leaves_an_island_that_the_next_read_steps_over() -> None:
    items = _stream(9)
    keys = [(it["namespace"], it["id"]) for it in items]
    log = {  # batches of 3: the first and the third committed, the second did not
        entry_key(KEY, 0): entry_value(None, keys[2], 3),
        entry_key(KEY, 2): entry_value(keys[5], keys[8], 3),
        "migrate_from:other#batch:000000000": entry_value(None, keys[8], 9),  # not ours
    }
    plan = plan_resume(log, KEY)
    assert plan.after == keys[2]
    assert plan.islands == {keys[5]: keys[8]}
    assert plan.records == 6 and plan.next_seq == 3
    again = list(skip_islands(_after(items, plan.after), plan.after, plan.islands, _key))
    assert [(before, (it["namespace"], it["id"])) for before, it in again] == [
        (keys[2], keys[3]),
        (keys[3], keys[4]),
        (keys[4], keys[5]),
    ]
