"""Contract: the record lifecycle every backend shares (add, get, list, update, delete...)."""

from __future__ import annotations

import unicodedata

import pytest
from contract_helpers import all_records, state

from engramdb import ConflictError, Memory, NotFoundError, ValidationError

MODES = ("hybrid", "vector", "keyword")


def test_add_then_get_returns_every_field(mem: Memory) -> None:
    res = mem.add(
        "Alice moved to Lisbon in 2021",
        user_id="alice",
        agent_id="planner",
        thread_id="t1",
        type="fact",
        metadata={"city": "Lisbon", "year": 2021, "nested": {"ok": True}},
        tags=["profile", "home"],
        source="chat",
        importance=0.75,
        occurred_at="2021-05-01T10:00:00+00:00",
    )
    assert [r.outcome for r in res] == ["written"]
    rec = mem.get(res[0].id)
    assert rec == res[0].record
    assert rec.text == "Alice moved to Lisbon in 2021"
    assert (rec.user_id, rec.agent_id, rec.thread_id, rec.type) == (
        "alice",
        "planner",
        "t1",
        "fact",
    )
    assert rec.metadata == {"city": "Lisbon", "year": 2021, "nested": {"ok": True}}
    assert rec.tags == ["home", "profile"]
    assert rec.source == "chat" and rec.importance == 0.75
    assert (
        rec.occurred_at is not None and rec.occurred_at.isoformat() == "2021-05-01T10:00:00+00:00"
    )
    assert rec.version == 1 and rec.namespace == mem.namespace
    assert rec.created_at is not None and rec.created_at.tzinfo is not None


def test_get_missing_raises_not_found(mem: Memory) -> None:
    with pytest.raises(NotFoundError):
        mem.get("01NOSUCHRECORD00000000000")


def test_get_many_keeps_order_and_skips_missing(mem: Memory) -> None:
    ids = [r.id for r in mem.add([f"note number {i}" for i in range(5)])]
    got = mem.get_many([ids[3], "missing-id", ids[0], ids[4]])
    assert [r.id for r in got] == [ids[3], ids[0], ids[4]]
    assert mem.get_many([]) == []


def test_list_keyset_paging_covers_every_record_once_in_order(mem: Memory) -> None:
    ids = []
    for b in range(3):
        ids += [r.id for r in mem.add([f"record {b}-{i} about things" for i in range(17)])]
    assert len(set(ids)) == 51
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = mem.list(limit=7, cursor=cursor)
        assert len(page) <= 7
        seen += [r.id for r in page]
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == 8  # 51 = 7*7 + 2
    assert seen == sorted(ids)  # ids are time-ordered: creation order, every record once
    assert seen == ids
    again = [r.id for r in all_records(mem)]
    assert again == seen  # deterministic
    desc: list[str] = []
    cursor = None
    while True:
        page = mem.list(limit=10, cursor=cursor, descending=True)
        desc += [r.id for r in page]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert desc == list(reversed(seen))


def test_list_exact_page_size_has_no_dangling_cursor(mem: Memory) -> None:
    mem.add([f"item {i}" for i in range(10)])
    page = mem.list(limit=10)
    assert len(page) == 10 and page.next_cursor is None


def test_count(mem: Memory) -> None:
    assert mem.count() == 0
    mem.add(["one thing", "two things"], user_id="u1")
    mem.add("three things", user_id="u2")
    assert mem.count() == 3
    assert mem.count(user_id="u1") == 2
    assert mem.count({"user_id": "u2"}) == 1


def test_update_bumps_version_and_checks_expected_version(mem: Memory) -> None:
    rid = mem.add("The sky is blue", user_id="u")[0].id
    r2 = mem.update(rid, importance=0.5)
    assert r2.version == 2 and r2.importance == 0.5
    r3 = mem.update(rid, metadata={"a": 1}, expected_version=2)
    assert r3.version == 3
    with pytest.raises(ConflictError):
        mem.update(rid, metadata={"a": 2}, expected_version=2)
    assert mem.get(rid).metadata == {"a": 1} and mem.get(rid).version == 3
    with pytest.raises(NotFoundError):
        mem.update("01NOSUCHRECORD00000000000", importance=0.1)


def test_update_metadata_replaces(mem: Memory) -> None:
    rid = mem.add("config note", metadata={"a": 1, "b": {"c": 2}})[0].id
    mem.update(rid, metadata={"z": "new"})
    assert mem.get(rid).metadata == {"z": "new"}


def test_update_tags_add_and_remove(mem: Memory) -> None:
    rid = mem.add("tagged note", tags=["a", "b"])[0].id
    rec = mem.update(rid, add_tags=["c", "a"], remove_tags=["b"])
    assert rec.tags == ["a", "c"]
    rec = mem.update(rid, remove_tags=["missing"])
    assert rec.tags == ["a", "c"]
    assert mem.get(rid).tags == ["a", "c"]
    assert mem.count(tags=["c"]) == 1 and mem.count(tags=["b"]) == 0


def test_update_text_reembeds_and_changes_search(mem: Memory) -> None:
    rid = mem.add("penguins live in antarctica", user_id="u")[0].id
    mem.add("giraffes have long necks", user_id="u")
    for mode in MODES:
        assert mem.search("penguins", mode=mode, user_id="u").hits[0].record.id == rid
    old = mem.search("penguins antarctica", mode="vector", user_id="u").hits[0]
    assert old.record.id == rid and old.parts.vector is not None and old.parts.vector > 0.4
    rec = mem.update(rid, text="volcanoes erupt molten lava")
    assert rec.text == "volcanoes erupt molten lava" and rec.version == 2
    for mode in ("vector", "keyword"):
        hits = mem.search("volcanoes lava", mode=mode, user_id="u")
        assert hits.hits[0].record.id == rid
    assert all(h.record.id != rid for h in mem.search("penguins", mode="keyword", user_id="u"))
    scores = {
        h.record.id: h.parts.vector
        for h in mem.search("penguins antarctica", mode="vector", user_id="u")
    }
    assert scores[rid] is not None and scores[rid] < 0.2  # the old vector is gone


def test_update_text_to_duplicate_in_scope_is_conflict(mem: Memory) -> None:
    a = mem.add("first text", user_id="u")[0].id
    mem.add("second text", user_id="u")
    with pytest.raises(ConflictError):
        mem.update(a, text="second   text")
    assert mem.get(a).text == "first text" and mem.get(a).version == 1


def test_delete_removes_everywhere_and_keeps_history(mem: Memory) -> None:
    keep = mem.add("zebras are striped animals", user_id="u")[0].id
    rid = mem.add("zebras eat grass on the savanna", user_id="u", tags=["z"])[0].id
    mem.update(rid, importance=0.9)
    mem.delete(rid)
    with pytest.raises(NotFoundError):
        mem.get(rid)
    assert mem.get_many([rid]) == []
    assert rid not in [r.id for r in all_records(mem)]
    assert mem.count() == 1
    for mode in MODES:
        ids = [h.record.id for h in mem.search("zebras grass savanna", mode=mode, top_k=50)]
        assert rid not in ids and keep in ids
    hist = mem.history(rid)
    assert [h.op for h in hist] == ["add", "update", "delete"]
    assert hist[-1].after is None
    assert (
        hist[-1].before is not None and hist[-1].before["text"] == "zebras eat grass on the savanna"
    )
    assert hist[-1].before["importance"] == 0.9
    with pytest.raises(NotFoundError):
        mem.delete(rid)
    assert mem.doctor()["ok"]


def test_delete_all_needs_a_filter_or_all(mem: Memory) -> None:
    mem.add(["a note", "b note"], user_id="u1")
    mem.add("c note", user_id="u2")
    with pytest.raises(ValidationError):
        mem.delete_all()
    with pytest.raises(ValidationError):
        mem.delete_all({})
    assert mem.count() == 3
    assert mem.delete_all(user_id="u1") == 2
    assert mem.count() == 1
    assert mem.delete_all(all=True) == 1
    assert mem.count() == 0


def test_add_history_holds_the_record_as_inserted(mem: Memory) -> None:
    """The add row's after-image is exactly the record the add returned, on every backend
    (SQLite derives it from the next change or the live record; it is not stored)."""
    results = mem.add(
        [
            {"text": "kept as is", "metadata": {"k": [1, 2]}, "tags": ["a"], "importance": 0.5},
            {"text": "changed later", "user_id": "u1"},
            {"text": "deleted later", "thread_id": "t1"},
        ]
    )
    inserted = {r.id: r.record.to_dict() for r in results if r.record is not None}
    kept, changed, deleted = (r.id for r in results)
    single = mem.add("added alone", agent_id="bot")[0]
    assert single.record is not None
    inserted[single.id] = single.record.to_dict()
    mem.update(changed, text="changed later, indeed", add_tags=["z"])
    mem.delete(deleted)
    for rid, image in inserted.items():
        first = mem.history(rid)[0]
        assert first.op == "add" and first.before is None
        assert first.after == image, rid
    assert mem.history(changed)[1].before == inserted[changed]
    assert mem.history(deleted)[-1].before == inserted[deleted]
    # The add entry is derived, not stored: only the update and the delete wrote rows.
    assert mem.stats()["namespace_stats"]["history"] == 2
    for rid, image in inserted.items():
        first = mem.history(rid)[0]
        assert first.version == 1 and first.at.isoformat() == image["created_at"]
        assert first.seq < min([h.seq for h in mem.history(rid)[1:]], default=1)


def test_history_records_each_change(mem: Memory) -> None:
    rid = mem.add("a versioned fact")[0].id
    mem.update(rid, text="a versioned fact, revised")
    mem.update(rid, add_tags=["x"])
    hist = mem.history(rid)
    assert [h.op for h in hist] == ["add", "update", "update"]
    assert [h.version for h in hist] == [1, 2, 3]
    assert hist[0].before is None and hist[0].after is not None
    assert hist[0].after["text"] == "a versioned fact"
    assert hist[1].before is not None and hist[1].before["text"] == "a versioned fact"
    assert hist[1].after is not None and hist[1].after["text"] == "a versioned fact, revised"
    assert hist[2].after is not None and hist[2].after["tags"] == ["x"]
    assert [h.seq for h in hist] == sorted(h.seq for h in hist)
    with pytest.raises(NotFoundError):
        mem.history("01NOSUCHRECORD00000000000")


# ------------------------------------------------------------------ dedup


def test_dedup_after_nfc_and_whitespace_normalisation(mem: Memory) -> None:
    composed = unicodedata.normalize("NFC", "Café in Zürich")
    decomposed = unicodedata.normalize("NFD", "Café  in\n Zürich ")
    assert composed != decomposed
    first = mem.add(composed, user_id="u")[0]
    second = mem.add(decomposed, user_id="u")[0]
    assert first.outcome == "written"
    assert second.outcome == "deduplicated" and second.deduplicated
    assert second.id == first.id
    assert mem.count() == 1
    assert mem.get(first.id).text == composed


@pytest.mark.parametrize(
    "other",
    [{"user_id": "v"}, {"thread_id": "t2"}, {"type": "preference"}, {"agent_id": "other"}],
)
def test_same_text_other_scope_is_distinct(mem: Memory, other: dict[str, str]) -> None:
    base = {"user_id": "u", "thread_id": "t1", "type": "fact", "agent_id": "a"}
    a = mem.add("shared sentence", **base)[0]  # type: ignore[arg-type]
    b = mem.add("shared sentence", **{**base, **other})[0]  # type: ignore[arg-type]
    assert a.outcome == b.outcome == "written"
    assert a.id != b.id and mem.count() == 2


def test_dedup_follows_updates_of_text_and_type(mem: Memory) -> None:
    """An update moves the record's dedup key: its new text and type dedupe, the old ones
    are free again."""
    a = mem.add("old words", user_id="u")[0].id
    mem.update(a, text="new words")
    again = mem.add("new  words", user_id="u")[0]
    assert again.outcome == "deduplicated" and again.id == a
    assert mem.add("old words", user_id="u")[0].outcome == "written"
    mem.update(a, type="preference")
    assert mem.add("new words", user_id="u")[0].outcome == "written"
    same = mem.add("new words", user_id="u", type="preference")[0]
    assert same.outcome == "deduplicated" and same.id == a
    assert mem.count() == 3 and mem.doctor()["ok"]


def test_dedup_within_one_batch(mem: Memory) -> None:
    res = mem.add(["same  thing", "same thing", "other thing"])
    assert [r.outcome for r in res] == ["written", "deduplicated", "written"]
    assert res[0].id == res[1].id and mem.count() == 2


def test_add_with_id_is_idempotent_and_conflicts_on_other_text(mem: Memory) -> None:
    first = mem.add("idempotent text", id="my-id-1")[0]
    assert first.outcome == "written" and first.id == "my-id-1"
    again = mem.add("idempotent text", id="my-id-1")[0]
    assert again.outcome == "unchanged" and again.id == "my-id-1"
    with pytest.raises(ConflictError):
        mem.add("a different text", id="my-id-1")
    assert mem.count() == 1 and mem.get("my-id-1").text == "idempotent text"


# ------------------------------------------------------------------ batches


def test_batch_abort_stores_nothing_and_names_the_index(mem: Memory) -> None:
    mem.add("already here")
    before = state(mem)
    items: list[str | dict[str, object]] = ["good one", "good two", {"text": "  "}, "good four"]
    with pytest.raises(ValidationError) as err:
        mem.add(items)
    assert err.value.details.get("index") == 2
    assert "item 2" in str(err.value)
    assert state(mem) == before


def test_batch_abort_on_conflict_stores_nothing(mem: Memory) -> None:
    mem.add("owner text", id="taken")
    before = state(mem)
    with pytest.raises(ConflictError) as err:
        mem.add(["fresh one", {"text": "another text", "id": "taken"}, "fresh three"])
    assert err.value.details.get("index") == 1
    assert state(mem) == before


def test_batch_skip_reports_rejected_and_stores_the_rest(mem: Memory) -> None:
    mem.add("owner text", id="taken")
    items: list[str | dict[str, object]] = [
        "good zero",
        {"text": ""},
        {"text": "bad importance", "importance": 7},
        {"text": "another text", "id": "taken"},
        "good four",
    ]
    res = mem.add(items, on_error="skip")
    assert [r.index for r in res] == [0, 1, 2, 3, 4]
    assert [r.outcome for r in res] == ["written", "rejected", "rejected", "rejected", "written"]
    assert res[1].error and "empty" in res[1].error
    assert res[2].error and "importance" in res[2].error
    assert res[3].error and "taken" in res[3].error
    assert all(r.record is None for r in res[1:4])
    texts = sorted(r.text for r in all_records(mem))
    assert texts == ["good four", "good zero", "owner text"]


def test_batch_item_dicts_override_defaults(mem: Memory) -> None:
    res = mem.add(
        [{"text": "mine", "user_id": "x", "tags": ["t"]}, "theirs"], user_id="d", tags=["dt"]
    )
    a, b = (mem.get(r.id or "") for r in res)
    assert (a.user_id, a.tags) == ("x", ["t"])
    assert (b.user_id, b.tags) == ("d", ["dt"])


def test_unknown_item_field_is_rejected(mem: Memory) -> None:
    with pytest.raises(ValidationError):
        mem.add([{"text": "x", "embedding": [1, 2]}])
    assert mem.count() == 0
