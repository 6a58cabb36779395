"""``Archive.update_records``: many updates in one transaction, each as ``update_record``
would apply it, and each left alone (None) when its record changed, vanished or its new
text would duplicate another record's, without refusing the rest of the batch.

Consolidation writes its merge survivors through it; these tests hold both stores to the
contract directly.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from engramdb import HashEmbedder, Memory, Settings
from engramdb.engine.validation import content_hash
from engramdb.stores.base import Archive
from engramdb.stores.prepared import RecordChanges, RecordUpdate
from engramdb.timeutil import to_us


@pytest.fixture
def bmem(store_url: str) -> Iterator[Memory]:
    m = Memory(store_url, embedder=HashEmbedder(384), settings=Settings())
    yield m
    m.close()


def _archive(mem: Memory) -> Archive:
    store = mem._engine.store
    assert isinstance(store, Archive)
    return store


def test_updates_of_one_shape_each_get_their_own_values(bmem: Memory) -> None:
    """Same statement, many rows (PostgreSQL pipelines them): each answer is its own row's."""
    recs = [r.record for r in bmem.add([{"text": f"note {i}", "user_id": "u"} for i in range(7)])]
    assert all(r is not None for r in recs)
    ids = [r.id for r in recs if r is not None]
    updates = [
        RecordUpdate(rid, RecordChanges(add_tags=[f"t{i}"], importance=i / 10), 1)
        for i, rid in enumerate(ids)
    ]
    updates.insert(3, RecordUpdate(ids[0], RecordChanges(add_tags=["again"]), 1))

    after = _archive(bmem).update_records(bmem.namespace, updates)

    expect = [(rid, [f"t{i}"], i / 10) for i, rid in enumerate(ids)]
    got = [(r.id, r.tags, r.importance) for r in after if r is not None]
    assert got == expect and after[3] is None
    assert [(r.id, r.tags, r.importance) for r in bmem.get_many(ids)] == expect


def test_a_batch_applies_each_update_with_its_history(bmem: Memory) -> None:
    a, b, c = (
        r.record
        for r in bmem.add(
            [
                {"text": "alpha note", "user_id": "u", "tags": ["x"]},
                {"text": "beta note", "user_id": "u", "metadata": {"k": 1}},
                {"text": "gamma note", "user_id": "u", "importance": 0.2},
            ]
        )
    )
    assert a is not None and b is not None and c is not None
    when = to_us("2020-01-01T00:00:00+00:00", "occurred_at")
    updates = [
        RecordUpdate(a.id, RecordChanges(add_tags=["y"], remove_tags=["x"], op="merge"), 1),
        RecordUpdate(b.id, RecordChanges(metadata_json=json.dumps({"k": 1, "j": 2})), 1),
        RecordUpdate(c.id, RecordChanges(importance=0.9, occurred_at=when, op="merge"), None),
    ]

    after = _archive(bmem).update_records(bmem.namespace, updates)

    assert [r.id if r else None for r in after] == [a.id, b.id, c.id]
    assert all(r is not None and r.version == 2 for r in after)
    assert bmem.get(a.id).tags == ["y"]
    assert bmem.get(b.id).metadata == {"k": 1, "j": 2}
    got = bmem.get(c.id)
    assert got.importance == 0.9 and got.occurred_at is not None and got.occurred_at.year == 2020
    assert [h.op for h in bmem.history(a.id)] == ["add", "merge"]
    assert [h.op for h in bmem.history(b.id)] == ["add", "update"]
    assert bmem.history(c.id)[-1].after is not None
    assert bmem.history(c.id)[-1].after["importance"] == 0.9


def test_changed_vanished_and_colliding_records_are_left_alone(bmem: Memory) -> None:
    a, b, c, d = (
        r.record
        for r in bmem.add(
            [
                {"text": "first note", "user_id": "u"},
                {"text": "second note", "user_id": "u"},
                {"text": "third note", "user_id": "u"},
                {"text": "fourth note", "user_id": "u"},
            ]
        )
    )
    assert a is not None and b is not None and c is not None and d is not None
    bmem.update(a.id, add_tags=["moved-on"])  # now at version 2
    bmem.delete(b.id)
    # c's new text is d's: the dedup key of the scope refuses it, and only it.
    clash = RecordChanges(text=d.text, content_hash=content_hash(d.text))
    updates = [
        RecordUpdate(a.id, RecordChanges(add_tags=["stale"]), 1),
        RecordUpdate(b.id, RecordChanges(add_tags=["gone"]), 1),
        RecordUpdate(c.id, clash, 1),
        RecordUpdate(d.id, RecordChanges(add_tags=["kept"]), 1),
        RecordUpdate(d.id, RecordChanges(add_tags=["twice"]), 1),
    ]

    after = _archive(bmem).update_records(bmem.namespace, updates)

    assert [r.id if r else None for r in after] == [None, None, None, d.id, None]
    assert bmem.get(a.id).tags == ["moved-on"]
    assert bmem.get(c.id).text == "third note" and bmem.get(c.id).version == 1
    assert bmem.get(d.id).tags == ["kept"] and bmem.get(d.id).version == 2
    assert [h.op for h in bmem.history(c.id)] == ["add"]
    assert _archive(bmem).update_records(bmem.namespace, []) == []
