"""Contract: the filter language on list, search, count and delete_all; valid_at; expiry."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from contract_helpers import all_records

from engramdb import LimitExceededError, Memory, ValidationError

ROWS: list[dict[str, Any]] = [
    {
        "text": "alpha note",
        "id": "r-alpha",
        "user_id": "alice",
        "type": "fact",
        "tags": ["work", "urgent"],
        "importance": 0.9,
        "metadata": {"n": 5, "flag": True, "project": {"stage": "done"}, "labels": ["x", "y"]},
        "occurred_at": "2024-01-10T00:00:00+00:00",
    },
    {
        "text": "beta note",
        "id": "r-beta",
        "user_id": "bob",
        "type": "preference",
        "tags": ["home"],
        "importance": 0.2,
        "metadata": {"n": 1, "flag": False, "project": {"stage": "draft"}},
        "occurred_at": "2024-02-10T00:00:00+00:00",
    },
    {
        "text": "gamma note",
        "id": "r-gamma",
        "user_id": "alice",
        "type": "fact",
        "tags": [],
        "metadata": {"n": 1.5, "flag": 1, "labels": ["y"]},
        "occurred_at": "2024-03-10T00:00:00+00:00",
    },
    {
        "text": "delta note",
        "id": "r-delta",
        "type": "semantic",
        "tags": ["work"],
        "importance": 0.5,
        "metadata": {"n": "5", "project": {"stage": None}},
        "occurred_at": "2024-04-10T00:00:00+00:00",
    },
]


@pytest.fixture
def data(mem: Memory) -> Memory:
    mem.add(ROWS)
    return mem


def ids(mem: Memory, filters: dict[str, Any]) -> set[str]:
    """The ids matching ``filters`` via list; count and search must agree."""
    listed = {r.id for r in all_records(mem, filters=filters)}
    assert mem.count(filters, include_expired=True) == len(listed)
    found = {
        h.record.id
        for h in mem.search("note", mode="vector", filters=filters, top_k=100, include_expired=True)
    }
    assert found == listed
    kw = {
        h.record.id
        for h in mem.search(
            "note", mode="keyword", filters=filters, top_k=100, include_expired=True
        )
    }
    assert kw == listed
    return listed


CASES: list[tuple[dict[str, Any], set[str]]] = [
    ({"user_id": "alice"}, {"r-alpha", "r-gamma"}),
    ({"user_id": None}, {"r-delta"}),
    ({"user_id": {"$ne": "alice"}}, {"r-beta", "r-delta"}),
    ({"user_id": {"$in": ["bob", "carol"]}}, {"r-beta"}),
    ({"user_id": {"$nin": ["bob"]}}, {"r-alpha", "r-gamma", "r-delta"}),
    ({"user_id": {"$exists": False}}, {"r-delta"}),
    ({"type": "fact", "user_id": "alice"}, {"r-alpha", "r-gamma"}),
    ({"id": "r-beta"}, {"r-beta"}),
    ({"importance": {"$gte": 0.5}}, {"r-alpha", "r-delta"}),
    ({"importance": {"$lt": 0.5}}, {"r-beta"}),
    ({"importance": {"$ne": 0.9}}, {"r-beta", "r-gamma", "r-delta"}),
    ({"importance": None}, {"r-gamma"}),
    ({"version": 1}, {"r-alpha", "r-beta", "r-gamma", "r-delta"}),
    ({"occurred_at": {"$gt": "2024-02-10T00:00:00Z"}}, {"r-gamma", "r-delta"}),
    ({"occurred_at": {"$gte": "2024-02-10T00:00:00Z"}}, {"r-beta", "r-gamma", "r-delta"}),
    (
        {"occurred_at": {"$lte": datetime(2024, 2, 10, tzinfo=UTC), "$gt": "2024-01-01T00:00Z"}},
        {"r-alpha", "r-beta"},
    ),
    ({"occurred_at": {"$lt": "2024-02-10T01:00:01+01:00"}}, {"r-alpha", "r-beta"}),
    ({"tags": "work"}, {"r-alpha", "r-delta"}),
    ({"tags": {"$contains": "urgent"}}, {"r-alpha"}),
    ({"tags": {"$contains": ["work", "urgent"]}}, {"r-alpha"}),
    ({"tags": {"$in": ["home", "urgent"]}}, {"r-alpha", "r-beta"}),
    ({"tags": {"$nin": ["work"]}}, {"r-beta", "r-gamma"}),
    ({"tags": {"$exists": False}}, {"r-gamma"}),
    ({"metadata.n": 5}, {"r-alpha"}),
    ({"metadata.n": "5"}, {"r-delta"}),
    ({"metadata.n": {"$gt": 1}}, {"r-alpha", "r-gamma"}),
    ({"metadata.n": {"$lte": 1.5}}, {"r-beta", "r-gamma"}),
    ({"metadata.n": {"$in": [1, "5"]}}, {"r-beta", "r-delta"}),
    ({"metadata.flag": True}, {"r-alpha"}),
    ({"metadata.flag": 1}, {"r-gamma"}),  # booleans are not numbers
    ({"metadata.flag": False}, {"r-beta"}),
    ({"metadata.flag": 0}, set()),
    ({"metadata.flag": {"$ne": True}}, {"r-beta", "r-gamma", "r-delta"}),
    ({"metadata.flag": {"$exists": True}}, {"r-alpha", "r-beta", "r-gamma"}),
    ({"metadata.project.stage": "done"}, {"r-alpha"}),
    ({"metadata.project.stage": {"$ne": "done"}}, {"r-beta", "r-gamma", "r-delta"}),
    ({"metadata.project.stage": None}, {"r-gamma", "r-delta"}),
    ({"metadata.project.stage": {"$nin": ["done", "draft"]}}, {"r-gamma", "r-delta"}),
    ({"metadata.labels": {"$contains": "y"}}, {"r-alpha", "r-gamma"}),
    ({"metadata.labels": {"$contains": "x"}}, {"r-alpha"}),
    ({"metadata.missing.deep": {"$exists": True}}, set()),
    ({"$or": [{"user_id": "bob"}, {"tags": "urgent"}]}, {"r-alpha", "r-beta"}),
    ({"$and": [{"type": "fact"}, {"importance": {"$gt": 0.1}}]}, {"r-alpha"}),
    ({"$not": {"user_id": "alice"}}, {"r-beta", "r-delta"}),
    ({"$not": {"importance": {"$gt": 0.4}}}, {"r-beta", "r-gamma"}),
    (
        {"$or": [{"$and": [{"type": "fact"}, {"$not": {"tags": "work"}}]}, {"metadata.n": "5"}]},
        {"r-gamma", "r-delta"},
    ),
    ({}, {"r-alpha", "r-beta", "r-gamma", "r-delta"}),
]


@pytest.mark.parametrize(("filters", "expected"), CASES, ids=[str(c[0]) for c in CASES])
def test_filter_semantics(data: Memory, filters: dict[str, Any], expected: set[str]) -> None:
    assert ids(data, filters) == expected


def test_time_fields_created_and_updated(data: Memory) -> None:
    stamp = datetime.now(UTC)
    data.update("r-beta", importance=0.3)
    assert ids(data, {"updated_at": {"$gte": stamp}}) == {"r-beta"}
    assert ids(data, {"created_at": {"$gte": stamp}}) == set()
    assert ids(data, {"version": {"$gt": 1}}) == {"r-beta"}


def test_delete_all_with_filter(data: Memory) -> None:
    assert data.delete_all({"metadata.flag": {"$exists": True}, "user_id": "alice"}) == 2
    assert {r.id for r in all_records(data)} == {"r-beta", "r-delta"}


@pytest.mark.parametrize(
    "bad",
    [
        {"user_id": {"$regex": "a.*"}},
        {"$nor": [{"user_id": "a"}]},
        {"nosuchfield": 1},
        {"metadata": {"a": 1}},
        {"metadata.a b": 1},
        {"metadata.": 1},
        {"metadata.a..b": 1},
        {"importance": {"$gt": True}},
        {"importance": {"$gt": "high"}},
        {"importance": {"$gt": float("nan")}},
        {"metadata.n": {"$gt": False}},
        {"metadata.n": {"$lt": "5"}},
        {"occurred_at": {"$gt": datetime(2024, 1, 1)}},
        {"occurred_at": {"$gt": "2024-01-01T00:00:00"}},
        {"occurred_at": {"$gt": "yesterday"}},
        {"occurred_at": {"$gt": 1700000000}},
        {"user_id": {"$gt": "a"}},
        {"user_id": 5},
        {"user_id": {"$in": "alice"}},
        {"tags": {"$contains": []}},
        {"tags": {"$contains": 3}},
        {"$and": []},
        {"$or": {"user_id": "a"}},
        {"metadata.n": {"$exists": 1}},
        {"metadata.n": {"$eq": [1, 2]}},
        {"metadata.n": {"$eq": {"a": 1}}},
        {"metadata.n": 2**64},
    ],
    ids=str,
)
def test_bad_filters_are_rejected_everywhere(data: Memory, bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        data.list(bad)
    with pytest.raises(ValidationError):
        data.count(bad)
    with pytest.raises(ValidationError):
        data.search("note", filters=bad)
    with pytest.raises(ValidationError):
        data.delete_all(bad)
    assert data.count() == 4


def test_filter_must_be_an_object(data: Memory) -> None:
    for bad in ([{"user_id": "a"}], "user_id = 'a'", 5):
        with pytest.raises(ValidationError):
            data.list(bad)  # type: ignore[arg-type]


def test_deep_and_wide_filters_hit_limits(data: Memory) -> None:
    deep: dict[str, Any] = {"user_id": "alice"}
    for _ in range(10_000):
        deep = {"$not": deep}
    with pytest.raises(LimitExceededError):
        data.count(deep)
    wide = {"$or": [{"metadata.n": i} for i in range(10_000)]}
    with pytest.raises(LimitExceededError) as err:
        data.count(wide)
    assert "max_filter_clauses" in str(err.value)


def test_valid_at(mem: Memory) -> None:
    mem.add(
        "lived in Paris", id="paris", valid_from="2010-01-01T00:00Z", valid_to="2015-01-01T00:00Z"
    )
    mem.add("lives in Rome", id="rome", valid_from="2015-01-01T00:00Z")
    mem.add("likes tea", id="tea")

    def at(t: str) -> set[str]:
        listed = {r.id for r in mem.list(valid_at=t)}
        assert mem.count(valid_at=t) == len(listed)
        found = {h.record.id for h in mem.search("lived lives likes", valid_at=t, mode="vector")}
        assert found == listed
        return listed

    assert at("2012-06-01T00:00:00Z") == {"paris", "tea"}
    assert at("2015-01-01T00:00:00Z") == {"rome", "tea"}  # valid_to is exclusive
    assert at("2009-01-01T00:00:00Z") == {"tea"}
    with pytest.raises(ValidationError):
        mem.list(valid_at="2012-06-01T00:00:00")
    with pytest.raises(ValidationError):
        mem.add("bad interval", valid_from="2020-01-01T00:00Z", valid_to="2019-01-01T00:00Z")


def test_record_disappears_when_it_expires_without_any_write(mem: Memory) -> None:
    """Expiry is a function of time, not of writes: nothing cached may outlive it."""
    soon = datetime.now(UTC) + timedelta(seconds=1.5)
    mem.add("ephemeral note about herons", id="eph", expires_at=soon)
    mem.add("lasting note about herons", id="keep")
    for mode in ("hybrid", "vector", "keyword"):
        assert {h.record.id for h in mem.search("herons note", mode=mode)} == {"eph", "keep"}
    time.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.2)
    for mode in ("hybrid", "vector", "keyword"):
        assert {h.record.id for h in mem.search("herons note", mode=mode)} == {"keep"}
    assert {r.id for r in mem.list()} == {"keep"}


def test_expired_records_hidden_unless_asked(mem: Memory) -> None:
    past = datetime.now(UTC) - timedelta(minutes=5)
    future = datetime.now(UTC) + timedelta(days=5)
    mem.add("expired fact about owls", id="old", expires_at=past)
    mem.add("current fact about owls", id="new", expires_at=future)
    mem.add("permanent fact about owls", id="perm")
    assert {r.id for r in mem.list()} == {"new", "perm"}
    assert {r.id for r in mem.list(include_expired=True)} == {"old", "new", "perm"}
    assert mem.count() == 2 and mem.count(include_expired=True) == 3
    for mode in ("hybrid", "vector", "keyword"):
        found = {h.record.id for h in mem.search("owls fact", mode=mode)}
        assert found == {"new", "perm"}
        everything = {h.record.id for h in mem.search("owls fact", mode=mode, include_expired=True)}
        assert everything == {"old", "new", "perm"}
    assert mem.get("old").id == "old"  # get by id still answers
    mem.update("old", clear=["expires_at"])
    assert mem.count() == 3
