"""Contract: conversations, events, snapshots, slots, forget and namespaces."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from contract_helpers import all_records

from engramdb import ConflictError, Memory, NotFoundError, ValidationError

TURNS = [
    {"role": "user", "content": "I am planning a trip to Japan in April."},
    {"role": "assistant", "content": "Cherry blossoms peak in early April in Tokyo."},
    {"role": "user", "content": "Book me a ryokan in Kyoto, please."},
]


def test_add_messages_logs_events_in_order_and_links_records(mem: Memory) -> None:
    res = mem.add_messages("trip", TURNS, user_id="alice")
    assert [r.outcome for r in res] == ["written"] * 3
    events = mem.events("trip")
    assert [e.payload["content"] for e in events] == [t["content"] for t in TURNS]
    assert [e.actor for e in events] == ["user", "assistant", "user"]
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    assert all(e.action == "message" and e.user_id == "alice" for e in events)
    records = [mem.get(r.id or "") for r in res]
    assert [r.event_id for r in records] == [e.id for e in events]
    assert all(r.type == "message" and r.thread_id == "trip" for r in records)
    assert [r.metadata["role"] for r in records] == ["user", "assistant", "user"]
    hits = mem.search("ryokan Kyoto", thread_id="trip", mode="keyword")
    assert hits.hits[0].record.text == TURNS[2]["content"]


def test_add_messages_without_remember_only_logs(mem: Memory) -> None:
    mem.add_messages("t", TURNS, remember=False)
    assert len(mem.events("t")) == 3
    assert mem.count() == 0


def test_add_messages_bad_turn_stores_nothing(mem: Memory) -> None:
    bad = [*TURNS[:2], {"role": "user", "content": ""}]
    with pytest.raises(ValidationError):
        mem.add_messages("t", bad)
    with pytest.raises(ValidationError):
        mem.add_messages("t", [{"role": "user", "content": "x", "secret": 1}])
    assert mem.events("t") == [] and mem.count() == 0


def test_log_event_and_events_since_and_limit(mem: Memory) -> None:
    first = mem.log_event("t", "tool_call", {"tool": "search", "args": {"q": "x"}}, actor="agent")
    time.sleep(0.01)
    mid = datetime.now(UTC)
    time.sleep(0.01)
    second = mem.log_event("t", "tool_result", {"ok": True}, user_id="u")
    third = mem.log_event("t", "note", None)
    mem.log_event("other", "note", {"x": 1})
    events = mem.events("t")
    assert [e.id for e in events] == [first.id, second.id, third.id]
    assert events[0].payload == {"tool": "search", "args": {"q": "x"}}
    assert events[0].actor == "agent" and events[1].user_id == "u" and events[2].payload == {}
    assert [e.id for e in mem.events("t", since=mid)] == [second.id, third.id]
    assert [e.id for e in mem.events("t", limit=2)] == [first.id, second.id]
    assert mem.events("nobody") == []
    with pytest.raises(ValidationError):
        mem.events("t", since="2024-01-01T00:00:00")  # naive
    with pytest.raises(ValidationError):
        mem.log_event("t", "", {})


def test_snapshot_has_text_and_data(mem: Memory) -> None:
    mem.add_messages("trip", TURNS)
    mem.log_event("trip", "booked", {"hotel": "Ryokan Sakura"})
    mem.set_slots("trip", {"destination": "Kyoto", "nights": 3})
    snap = mem.snapshot("trip")
    assert snap.thread_id == "trip" and snap.namespace == mem.namespace
    assert len(snap.events) == 4 and snap.slots.values == {"destination": "Kyoto", "nights": 3}
    for t in TURNS:
        assert t["content"] in snap.text
    assert "Ryokan Sakura" in snap.text and "destination" in snap.text and "Kyoto" in snap.text
    assert snap.text.index("Japan in April") < snap.text.index("ryokan in Kyoto")
    assert snap.to_dict()["slots"]["version"] == 1


def test_slots_compare_and_set_and_none_deletes(mem: Memory) -> None:
    empty = mem.get_slots("t")
    assert empty.values == {} and empty.version == 0
    s1 = mem.set_slots("t", {"a": 1, "b": {"c": [1, 2]}}, expected_version=0)
    assert s1.version == 1 and s1.values == {"a": 1, "b": {"c": [1, 2]}}
    with pytest.raises(ConflictError):
        mem.set_slots("t", {"a": 2}, expected_version=0)
    s2 = mem.set_slots("t", {"a": None, "d": "x"}, expected_version=1)
    assert s2.version == 2 and s2.values == {"b": {"c": [1, 2]}, "d": "x"}
    assert mem.get_slots("t").values == s2.values
    s3 = mem.set_slots("t", {"d": "y"})  # no expected_version: unconditional
    assert s3.version == 3
    assert mem.get_slots("other").version == 0
    with pytest.raises(ValidationError):
        mem.set_slots("t", {})
    with pytest.raises(ValidationError):
        mem.set_slots("t", {"bad": float("nan")})
    assert mem.get_slots("t").version == 3


def _populate(mem: Memory) -> dict[str, str]:
    ids = {
        "a1": mem.add("alice fact one", user_id="alice", thread_id="ta")[0].id or "",
        "a2": mem.add("alice fact two", user_id="alice")[0].id or "",
        "b1": mem.add("bob fact one", user_id="bob", thread_id="tb")[0].id or "",
        "b2": mem.add("bob fact two", user_id="bob", thread_id="ta")[0].id or "",
    }
    mem.update(ids["a1"], importance=0.5)
    mem.log_event("ta", "note", {"who": "alice"}, user_id="alice")
    mem.log_event("tb", "note", {"who": "bob"}, user_id="bob")
    mem.set_slots("ta", {"k": "alice"}, user_id="alice")
    mem.set_slots("tb", {"k": "bob"}, user_id="bob")
    return ids


def test_forget_user(mem: Memory) -> None:
    ids = _populate(mem)
    counts = mem.forget(user_id="alice")
    assert counts["records"] == 2 and counts["events"] == 1
    assert "bytes_freed" not in counts  # no rewrite without compact
    assert {r.id for r in all_records(mem)} == {ids["b1"], ids["b2"]}
    for key in ("a1", "a2"):
        with pytest.raises(NotFoundError):
            mem.get(ids[key])
        with pytest.raises(NotFoundError):
            mem.history(ids[key])
    assert mem.search("alice fact", user_id="alice").hits == []
    assert all(h.record.user_id == "bob" for h in mem.search("alice fact", top_k=50))
    assert [e.payload for e in mem.events("ta")] == []
    assert mem.get_slots("ta").values == {}
    assert mem.get_slots("tb").values == {"k": "bob"}
    assert len(mem.history(ids["b1"])) == 1
    assert mem.doctor()["ok"]


def test_forget_compact_rewrites_the_storage_and_keeps_the_rest(mem: Memory) -> None:
    ids = _populate(mem)
    filler = "words that take room on the pages " * 20
    mem.add([{"text": f"alice note {i} {filler}", "user_id": "alice"} for i in range(200)])
    with pytest.raises(ValidationError, match="compact"):
        mem.forget(user_id="alice", compact="yes")  # type: ignore[arg-type]
    assert mem.count(user_id="alice") == 202  # the refused call erased nothing
    counts = mem.forget(user_id="alice", compact=True)
    assert counts["records"] == 202 and counts["events"] == 1
    assert counts["bytes_freed"] > 0  # the rewritten storage is smaller
    assert {r.id for r in all_records(mem)} == {ids["b1"], ids["b2"]}
    # Every index still answers after the rewrite, for old records and new ones.
    assert {h.record.id for h in mem.search("bob fact", top_k=5)} == {ids["b1"], ids["b2"]}
    new = mem.add("carol fact after the rewrite", user_id="carol")[0].id
    assert [h.record.id for h in mem.search("carol fact", user_id="carol").hits] == [new]
    assert mem.get_slots("tb").values == {"k": "bob"}
    assert mem.doctor()["ok"]


def test_forget_thread(mem: Memory) -> None:
    ids = _populate(mem)
    mem.forget(thread_id="ta")
    assert {r.id for r in all_records(mem)} == {ids["a2"], ids["b1"]}
    assert mem.events("ta") == [] and len(mem.events("tb")) == 1
    assert mem.get_slots("ta").version == 0 and mem.get_slots("tb").version == 1


def test_forget_namespace_leaves_others(mem: Memory) -> None:
    other = mem.with_namespace("other")
    kept = other.add("other namespace fact", user_id="alice")[0].id
    other.log_event("ta", "note", {})
    other.set_slots("ta", {"k": 1})
    _populate(mem)
    with pytest.raises(ValidationError):
        mem.forget()
    mem.forget(namespace=True)
    assert mem.count(include_expired=True) == 0
    assert mem.events("ta") == [] and mem.get_slots("ta").version == 0
    assert other.get(kept or "").text == "other namespace fact"
    assert len(other.events("ta")) == 1 and other.get_slots("ta").values == {"k": 1}
    assert mem.namespace not in mem.namespaces()
    assert mem.namespaces()["other"] == 1


def test_namespaces_counts(mem: Memory) -> None:
    mem.add(["one", "two"])
    mem.with_namespace("b").add("three")
    mem.with_namespace("c").log_event("t", "x", {})
    assert mem.namespaces() == {mem.namespace: 2, "b": 1, "c": 0}
