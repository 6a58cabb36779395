"""Contract: inputs at the edges of their domain answer a clear error or a right result.

Each case here once gave a 5xx through REST (an OverflowError, an SQL error, an engine
limit); the library must refuse or answer it on every backend, with the store unchanged.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from contract_helpers import state

from engramdb import LimitExceededError, Memory, ValidationError
from engramdb.errors import StoreError
from engramdb.query.sql import INLINE_IN

PLUS_14 = timezone(timedelta(hours=14))
MINUS_14 = timezone(timedelta(hours=-14))
# Valid datetimes whose UTC instant falls outside year 1..9999.
OUT_OF_RANGE = [
    datetime(1, 1, 1, tzinfo=PLUS_14),
    datetime(9999, 12, 31, 23, 59, 59, tzinfo=MINUS_14),
]
# The extreme instants that are in range once converted to UTC.
IN_RANGE = [
    datetime(1, 1, 1, tzinfo=MINUS_14),
    datetime(9999, 12, 31, 23, 59, 59, tzinfo=PLUS_14),
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
]
TIME_FIELDS = ["occurred_at", "expires_at", "valid_from", "valid_to"]
HUGE = 10**30


@pytest.mark.parametrize("field", TIME_FIELDS)
@pytest.mark.parametrize("when", OUT_OF_RANGE, ids=["year0", "year10000"])
def test_a_time_outside_the_calendar_in_utc_is_a_validation_error(
    mem: Memory, field: str, when: datetime
) -> None:
    rid = mem.add("keep me", id="k")[0].id
    before = state(mem)
    with pytest.raises(ValidationError, match="outside the supported range") as err:
        mem.add("edge", **{field: when})
    assert err.value.details["field"] == field
    if field != "occurred_at":
        with pytest.raises(ValidationError, match="outside the supported range"):
            mem.update(rid, **{field: when})
    assert state(mem) == before


def test_times_at_the_calendar_edges_round_trip(mem: Memory) -> None:
    for when in IN_RANGE:
        rec = mem.add(f"edge {when.isoformat()}", occurred_at=when, valid_from=when)[0].record
        assert rec is not None and rec.occurred_at == when
        assert mem.get(rec.id).valid_from == when
        hits = mem.search(f"edge {when.isoformat()}", top_k=3, valid_at=when).hits
        assert rec.id in {h.record.id for h in hits}


@pytest.mark.parametrize("when", OUT_OF_RANGE, ids=["year0", "year10000"])
def test_out_of_range_times_in_reads_are_validation_errors(mem: Memory, when: datetime) -> None:
    mem.add("something")
    with pytest.raises(ValidationError):
        mem.search("something", valid_at=when)
    with pytest.raises(ValidationError):
        mem.count({"occurred_at": {"$gt": when.isoformat()}})
    with pytest.raises(ValidationError):
        mem.events("t", since=when)


@pytest.mark.parametrize(
    "flt",
    [
        {"version": HUGE},
        {"version": {"$gt": HUGE}},
        {"importance": {"$lt": -HUGE}},
        {"metadata.n": {"$gte": HUGE}},
        {"metadata.n": {"$in": [1, HUGE]}},
        {"created_at": {"$in": [HUGE]}},
    ],
)
def test_integers_past_64_bits_in_filters_are_validation_errors(
    mem: Memory, flt: dict[str, Any]
) -> None:
    with pytest.raises(ValidationError, match="64 bits|datetime"):
        mem.count(flt)


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.add("x", user_id="u\ud800"),
        lambda m: m.add("x", source="\udfff"),
        lambda m: m.add("x", tags=["a\ud800"]),
        lambda m: m.search("x", user_id="\ud800"),
        lambda m: m.count({"user_id": "\ud800"}),
        lambda m: m.count({"metadata.k": "\ud800"}),
        lambda m: m.count({"tags": {"$in": ["\ud800"]}}),
        lambda m: m.log_event("t", "\ud800"),
        lambda m: m.forget(user_id="\ud800"),
    ],
)
def test_lone_surrogates_are_validation_errors(mem: Memory, call: Any) -> None:
    with pytest.raises(ValidationError):
        call(mem)


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.add("x", user_id="alice\n"),
        lambda m: m.add("x", id="an-id\n"),
        lambda m: m.with_namespace("tenant\n"),
        lambda m: m.log_event("thread\n", "act"),
        lambda m: m.add("x", type="fact\n"),
        lambda m: m.count({"metadata.a\n": 1}),
    ],
)
def test_a_trailing_newline_never_passes_an_identifier_pattern(mem: Memory, call: Any) -> None:
    with pytest.raises(ValidationError):
        call(mem)


def test_empty_lists_are_answered(mem: Memory) -> None:
    mem.add("tagged", tags=["a"])
    assert mem.count(tags=[]) == 1  # no tag asked for: no tag constraint
    assert len(mem.search("tagged", tags=[]).hits) == 1
    assert mem.get_many([]) == []
    assert mem.count({"user_id": {"$in": []}}) == 0
    assert mem.count({"tags": {"$nin": []}}) == 1


def _seed(mem: Memory) -> list[str]:
    ids = []
    for i in range(6):
        rec = mem.add(
            f"record number {i}",
            user_id=f"u{i}",
            tags=[f"t{i}", "all"],
            importance=i / 10,
            metadata={"s": f"v{i}", "n": i, "b": i % 2 == 0},
        )[0]
        assert rec.id is not None
        ids.append(rec.id)
    mem.add("no user, no metadata")
    return ids


def _padded(values: list[Any], filler: Any, size: int) -> list[Any]:
    return values + [filler(i) for i in range(size - len(values))]


@pytest.mark.parametrize(
    "field,wanted,filler",
    [
        ("user_id", ["u1", "u3"], lambda i: f"nobody{i}"),
        ("tags", ["t1", "t3"], lambda i: f"nothing{i}"),
        ("metadata.s", ["v1", "v3"], lambda i: f"w{i}"),
        ("metadata.n", [1, 3], lambda i: 1000 + i),
        ("metadata.b", [False, "v1"], lambda i: f"w{i}"),
        ("importance", [0.1, 0.3], lambda i: 2.0 + i),
        ("user_id", [None, "u2"], lambda i: f"nobody{i}"),
        ("metadata.s", [None, "v2"], lambda i: f"w{i}"),
    ],
)
def test_an_in_list_at_its_limit_answers_like_a_short_one(
    mem: Memory, field: str, wanted: list[Any], filler: Any
) -> None:
    _seed(mem)
    limit = mem.settings.max_in_values
    assert limit > INLINE_IN  # the long form is the one under test
    long = _padded(wanted, filler, limit)
    for op in ("$in", "$nin"):
        short_n = mem.count({field: {op: wanted}}, include_expired=True)
        assert mem.count({field: {op: long}}, include_expired=True) == short_n
        page = mem.search("record number", top_k=20, filters={field: {op: long}})
        short = mem.search("record number", top_k=20, filters={field: {op: wanted}})
        assert {h.record.id for h in page.hits} == {h.record.id for h in short.hits}
    assert mem.count({field: {"$in": wanted}}) > 0


def test_in_lists_at_their_limit_in_every_clause_stay_within_engine_limits(mem: Memory) -> None:
    _seed(mem)
    s = mem.settings
    values = _padded(["u1"], lambda i: f"nobody{i}", s.max_in_values)
    tags = _padded(["t1"], lambda i: f"none{i}", s.max_in_values)
    branches = [{"user_id": {"$in": values}}] * (s.max_filter_clauses // 2 - 1)
    branches.append({"tags": {"$nin": tags}})
    flt = {"$or": branches}
    assert mem.count(flt) == 7
    with pytest.raises(LimitExceededError) as err:
        mem.count({"user_id": {"$in": [*values, "one too many"]}})
    assert err.value.details["limit"] == "max_in_values"
    with pytest.raises(LimitExceededError):
        mem.count({"tags": {"$contains": [f"x{i}" for i in range(s.max_in_values + 1)]}})


def test_tags_contains_a_long_list(mem: Memory) -> None:
    wanted = [f"tag{i}" for i in range(INLINE_IN + 4)]
    full = mem.add("all of them", tags=wanted)[0].id
    mem.add("some of them", tags=wanted[:-1])
    page = mem.list({"tags": {"$contains": wanted}})
    assert [r.id for r in page.records] == [full]
    assert mem.count({"tags": {"$contains": wanted + wanted[:3]}}) == 1


def test_get_many_past_its_limit_is_limit_exceeded(mem: Memory) -> None:
    with pytest.raises(LimitExceededError) as err:
        mem.get_many([f"id{i}" for i in range(mem.settings.max_top_k + 1)])
    assert err.value.details["limit"] == "max_top_k"


def test_negative_expected_version_is_a_validation_error(mem: Memory) -> None:
    rid = mem.add("versioned")[0].id
    assert rid is not None
    with pytest.raises(ValidationError) as err:
        mem.update(rid, importance=0.5, expected_version=-1)
    assert not isinstance(err.value, StoreError)
    with pytest.raises(ValidationError):
        mem.set_slots("t", {"a": 1}, expected_version=-1)
    with pytest.raises(ValidationError):
        mem.update(rid, importance=0.5, expected_version=2**70)


def test_forget_a_user_and_thread_that_share_a_name(mem: Memory) -> None:
    for name in ("same", "ns-edges"):
        scoped = mem.with_namespace("ns-edges")
        scoped.add("to forget", user_id=name, thread_id=name)
        scoped.set_slots(name, {"a": 1}, user_id=name)
        erased = scoped.forget(user_id=name, thread_id=name)
        assert erased["records"] == 1 and erased["slot_threads"] == 1
        assert scoped.count(include_expired=True) == 0
