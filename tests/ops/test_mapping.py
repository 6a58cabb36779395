"""The mapping file: parsing, field lookup, metadata rules and every accepted date shape."""

from __future__ import annotations

import datetime as dt

import pytest

from engramdb import ValidationError
from engramdb.ops.mapping import (
    SkipItem,
    apply_mapping,
    fields_seen,
    missing_fields,
    parse_mapping,
    parse_time,
)

T0 = 1_700_000_000 * 1_000_000  # 2023-11-14T22:13:20Z


@pytest.mark.parametrize(
    "value",
    [
        "2023-11-14T22:13:20Z",
        "2023-11-14T22:13:20+00:00",
        "2023-11-14 22:13:20",
        "2023-11-14T23:13:20+01:00",
        1_700_000_000,
        1_700_000_000.0,
        "1700000000",
        1_700_000_000_000,  # milliseconds
        dt.datetime(2023, 11, 14, 22, 13, 20),
        dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC),
        {"__datatype__": "timestamp", "value": {"_seconds": 1_700_000_000, "_nanoseconds": 0}},
        {"_seconds": 1_700_000_000, "_nanoseconds": 0},
        {"seconds": 1_700_000_000, "nanos": 0},
        {"timestampValue": "2023-11-14T22:13:20Z"},
    ],
)
def test_every_date_shape_reads_as_the_same_instant(value: object) -> None:
    assert parse_time(value) == T0


def test_a_naive_time_is_in_the_mappings_timezone() -> None:
    berlin = parse_mapping({"text": "t", "timezone": "Europe/Berlin"}).timezone
    assert parse_time("2023-11-14 23:13:20", berlin) == T0
    assert parse_time("2023-11-14T22:13:20Z", berlin) == T0  # an explicit zone wins


@pytest.mark.parametrize("value", ["yesterday", "2023-13-45", True, [1], {"x": 1}, float("nan")])
def test_bad_dates_are_refused_with_the_value_shown(value: object) -> None:
    with pytest.raises(ValueError):
        parse_time(value)


def test_parse_mapping_refuses_what_it_cannot_use() -> None:
    with pytest.raises(ValidationError, match="'text'"):
        parse_mapping({"id": "id"})
    with pytest.raises(ValidationError, match="unknown key"):
        parse_mapping({"text": "t", "colour": "c"})
    with pytest.raises(ValidationError, match="timezone"):
        parse_mapping({"text": "t", "timezone": "Mars/Olympus"})
    with pytest.raises(ValidationError, match="metadata"):
        parse_mapping({"text": "t", "metadata": 5})
    with pytest.raises(ValidationError, match="user_id"):
        parse_mapping({"text": "t", "user_id": 3})
    with pytest.raises(ValidationError, match="JSON object"):
        parse_mapping(["text"])


def test_apply_mapping_fields_metadata_and_constants() -> None:
    m = parse_mapping(
        {
            "text": "content",
            "id": "msg.id",
            "user_id": "user",
            "thread_id": "session_id",
            "type": {"value": "message"},
            "tags": "labels",
            "occurred_at": "ts",
            "metadata": ["role", "msg.lang"],
        }
    )
    fields = {
        "content": "hello there",
        "msg": {"id": 42, "lang": "en"},
        "user": "ana",
        "session_id": "s1",
        "labels": "a, b",
        "ts": "2023-11-14 22:13:20",
        "role": "user",
        "ignored": 1,
    }
    out = apply_mapping(m, fields, "7", None)
    assert out.source_id == "42"
    assert out.values == {
        "text": "hello there",
        "user_id": "ana",
        "thread_id": "s1",
        "type": "message",
        "tags": ["a", "b"],
        "occurred_at": T0,
        "metadata": {"role": "user", "lang": "en"},
    }
    star = parse_mapping({"text": "content", "user_id": "user", "metadata": "*"})
    meta = apply_mapping(star, {**fields, "$id": "x"}, "7", None).values["metadata"]
    assert "content" not in meta and "user" not in meta and "$id" not in meta
    assert meta["ignored"] == 1 and meta["msg"] == {"id": 42, "lang": "en"}
    obj = parse_mapping({"text": "memory", "metadata": "metadata"})
    assert apply_mapping(obj, {"memory": "m", "metadata": {"k": [1]}}, "0", None).values[
        "metadata"
    ] == {"k": [1]}


def test_items_that_cannot_be_migrated_say_why() -> None:
    m = parse_mapping({"text": "content", "id": "id", "occurred_at": "ts"})
    with pytest.raises(SkipItem, match="no text") as no_text:
        apply_mapping(m, {"id": "a", "content": "  "}, "0", None)
    assert no_text.value.source_id == "a"
    with pytest.raises(SkipItem, match="bad date in 'ts'"):
        apply_mapping(m, {"id": "b", "content": "x", "ts": "soon"}, "0", None)
    with pytest.raises(SkipItem, match="is a int"):
        apply_mapping(m, {"id": "c", "content": 5}, "0", None)


def test_missing_fields_names_what_no_item_holds() -> None:
    m = parse_mapping(
        {"text": "content", "user_id": "usr", "metadata": ["role", "mood"], "optional": ["mood"]}
    )
    seen = fields_seen(m, {"content": "x", "role": "user"})
    assert missing_fields(m, seen) == ["usr"]
