"""The record row both stores select -> MemoryRecord: every column lands on its field."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import pytest

from engramdb.models import MemoryRecord
from engramdb.stores import rows
from engramdb.timeutil import from_us, from_us_req, to_us


def _row(meta: str = '{"k": [1, "x"]}', tags: object = '["a", "b"]') -> tuple[object, ...]:
    return (
        7,  # rid (internal, not a field)
        "rec-1",
        "ns",
        "user",
        "agent",
        "thread",
        "kind",
        "the text",
        "hash",
        meta,
        tags,
        "src",
        0.5,
        1_000_001,
        2_000_002,
        3_000_003,
        4_000_004,
        5_000_005,
        6_000_006,
        9,
        "ev-1",
    )


def test_every_column_lands_on_its_field() -> None:
    assert tuple(f.name for f in dataclasses.fields(MemoryRecord)) == rows._FIELD_ORDER
    rec = rows.row_to_record(("pad", *_row()), offset=1)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert rec == MemoryRecord(
        id="rec-1",
        namespace="ns",
        text="the text",
        type="kind",
        user_id="user",
        agent_id="agent",
        thread_id="thread",
        metadata={"k": [1, "x"]},
        tags=["a", "b"],
        source="src",
        importance=0.5,
        occurred_at=epoch + timedelta(seconds=1, microseconds=1),
        created_at=epoch + timedelta(seconds=2, microseconds=2),
        updated_at=epoch + timedelta(seconds=3, microseconds=3),
        valid_from=epoch + timedelta(seconds=4, microseconds=4),
        valid_to=epoch + timedelta(seconds=5, microseconds=5),
        expires_at=epoch + timedelta(seconds=6, microseconds=6),
        version=9,
        content_hash="hash",
        event_id="ev-1",
    )


def test_empty_scopes_and_json_and_equal_times() -> None:
    row = list(_row(meta="{}", tags="[]"))
    row[3:6] = ["", "", ""]
    row[15] = row[14]  # updated at its creation
    rec = rows.row_to_record(row)
    assert (rec.user_id, rec.agent_id, rec.thread_id) == (None, None, None)
    assert rec.metadata == {} and rec.tags == []
    assert rec.updated_at == rec.created_at
    assert rows.row_to_record(_row(tags=["from", "jsonb"])).tags == ["from", "jsonb"]


@pytest.mark.parametrize(
    "text", ['{"a": 1}', ' {"a": 1}', '{"a": 1}\n', '{"a": "é\\u00e9", "b": [null, true, 1.5]}']
)
def test_metadata_decodes_as_json_loads_does(text: str) -> None:
    assert rows.row_to_record(_row(meta=text)).metadata == json.loads(text)


@pytest.mark.parametrize("text", ['{"a": 1} trailing', '{"a": 1', ""])
def test_metadata_that_json_loads_rejects_is_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError):
        rows.row_to_record(_row(meta=text))


@pytest.mark.parametrize(
    "value",
    [0, 1, -1, 1_796_428_244_869_290, -62_135_596_800_000_000, 253_402_300_799_999_999],
)
def test_microseconds_convert_exactly(value: int) -> None:
    expected = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=value)
    assert from_us(value) == expected == from_us_req(value)
    assert to_us(expected, "t") == value
    assert from_us(None) is None
