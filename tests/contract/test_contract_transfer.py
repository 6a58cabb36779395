"""Contract: export/import, backup/restore, re-embedding and doctor."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from contract_helpers import all_records

from engramdb import (
    EmbedderMismatchError,
    HashEmbedder,
    Memory,
    NotFoundError,
    Settings,
    ValidationError,
)


def _fill(mem: Memory) -> list[str]:
    ids = [
        r.id or ""
        for r in mem.add(
            [
                {"text": "Alice lives in Lisbon", "user_id": "alice", "tags": ["home"]},
                {"text": "Bob prefers green tea", "user_id": "bob", "type": "preference"},
                {
                    "text": "The launch is on Friday",
                    "metadata": {"project": {"stage": "beta"}, "n": 3},
                    "importance": 0.8,
                    "occurred_at": "2024-05-01T12:00:00.123456+00:00",
                    "valid_from": "2024-01-01T00:00:00+00:00",
                },
            ]
        )
    ]
    mem.update(ids[0], add_tags=["profile"], text="Alice lives in Porto now")
    gone = mem.add("a record that is deleted", user_id="alice", id="gone-1")[0].id or ""
    mem.update(gone, add_tags=["doomed"])
    mem.delete(gone)
    mem.add_messages("chat", [{"role": "user", "content": "hello there"}])
    mem.set_slots("chat", {"mood": "happy"})
    return ids


def _search(mem: Memory, query: str) -> list[tuple[str, float]]:
    return [(h.record.id, round(h.score, 5)) for h in mem.search(query, top_k=20)]


def test_export_import_round_trip(mem: Memory, tmp_path: Path, store_url: str) -> None:
    ids = _fill(mem)
    path = tmp_path / "export.jsonl"
    assert mem.export(path) == 4
    with Memory(
        f"sqlite:///{tmp_path / 'copy.db'}", embedder=HashEmbedder(384), settings=Settings()
    ) as copy:
        counts = copy.import_(path)
        assert counts["written"] == 4 and counts["conflicts"] == 0
        assert counts["events"] == 1 and counts["slots"] == 1
        before = [r.to_dict() for r in all_records(mem)]
        after = [r.to_dict() for r in all_records(copy)]
        assert after == before
        for rid in ids:
            assert [h.to_dict() for h in copy.history(rid)] == [
                {**h.to_dict(), "seq": c.seq}
                for h, c in zip(mem.history(rid), copy.history(rid), strict=True)
            ]
        for query in ("Alice Porto", "tea", "launch Friday", "hello"):
            assert _search(copy, query) == _search(mem, query)
        assert [e.to_dict() | {"seq": 0} for e in copy.events("chat")] == [
            e.to_dict() | {"seq": 0} for e in mem.events("chat")
        ]
        assert copy.get_slots("chat").values == {"mood": "happy"}
        # The deleted record's history (its tombstone) travels too: nothing is lost. Two
        # stored rows (update, delete): the add is derived from the first before-image.
        assert counts["deleted_history"] == 2
        assert [h.to_dict() | {"seq": 0} for h in copy.history("gone-1")] == [
            h.to_dict() | {"seq": 0} for h in mem.history("gone-1")
        ]
        assert [h.op for h in copy.history("gone-1")] == ["add", "update", "delete"]
        again = copy.import_(path)
        assert again["written"] == 0 and again["unchanged"] == 4 and again["conflicts"] == 0
        assert again["deleted_history"] == 0  # idempotent
        assert len(copy.history("gone-1")) == 3
        assert copy.count(include_expired=True) == 4
        assert copy.doctor()["ok"]


def test_import_into_other_namespace(mem: Memory, tmp_path: Path) -> None:
    _fill(mem)
    path = tmp_path / "e.jsonl"
    mem.export(path)
    target = mem.with_namespace("restored")
    target.import_(path)
    assert target.count(include_expired=True) == mem.count(include_expired=True)
    assert {r.text for r in all_records(target)} == {r.text for r in all_records(mem)}


def test_emptied_slots_travel_with_their_version(mem: Memory, tmp_path: Path) -> None:
    # Removing every slot leaves a thread with a version and no values; that is data too.
    mem.set_slots("t2", {"x": 1})
    emptied = mem.set_slots("t2", {"x": None})
    assert emptied.values == {}
    path = tmp_path / "e.jsonl"
    mem.export(path)
    target = mem.with_namespace("restored")
    assert target.import_(path)["slots"] == 1
    got = target.get_slots("t2")
    assert (got.values, got.version) == ({}, emptied.version)


_BAD_LINES: list[tuple[dict[str, Any], str]] = [
    (
        {"kind": "event", "namespace": "default", "thread_id": "chat", "action": "x", "ts": 1},
        "id None is invalid",
    ),
    (
        {
            "kind": "event",
            "id": "e1",
            "namespace": "default",
            "thread_id": "chat",
            "action": "x",
            "payload": "words",
            "ts": 1,
        },
        "payload must be a JSON object",
    ),
    (
        {
            "kind": "event",
            "id": "e1",
            "namespace": "default",
            "thread_id": "chat",
            "action": "x",
            "ts": "yesterday",
        },
        "ts must be an integer",
    ),
    (
        {"kind": "slots", "namespace": "default", "version": 1, "updated_at": 1, "values": {}},
        "thread_id is required",
    ),
    (
        {
            "kind": "slots",
            "namespace": "default",
            "thread_id": "t",
            "version": 1,
            "updated_at": 1,
            "values": ["mood"],
        },
        "slots must be a non-empty object",
    ),
    (
        {
            "kind": "slots",
            "namespace": "default",
            "thread_id": "t",
            "version": True,
            "updated_at": 1,
            "values": {},
        },
        "version must be an integer",
    ),
]


@pytest.mark.parametrize(("bad", "says"), _BAD_LINES)
def test_a_malformed_event_or_slots_line_is_refused_before_anything_is_written(
    mem: Memory, tmp_path: Path, bad: dict[str, Any], says: str
) -> None:
    _fill(mem)
    path = tmp_path / "e.jsonl"
    mem.export(path)
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines, json.dumps(bad)]) + "\n")
    target = mem.with_namespace("restored")
    with pytest.raises(ValidationError) as err:
        target.import_(path)
    assert f"line {len(lines) + 1}: malformed {bad['kind']} line" in err.value.message
    assert says in err.value.message
    assert target.count(include_expired=True) == 0
    assert target.events("chat") == [] and target.get_slots("chat").values == {}


def test_a_bad_line_after_written_batches_says_how_many_records_went_in(
    mem: Memory, tmp_path: Path
) -> None:
    mem.add([{"text": f"note number {i}", "user_id": "u"} for i in range(300)])
    mem.add_messages("chat", [{"role": "user", "content": "hello there"}])
    path = tmp_path / "e.jsonl"
    mem.export(path)
    lines = path.read_text().splitlines()
    bad = {"kind": "event", "namespace": "default", "thread_id": "chat", "action": "x"}
    path.write_text("\n".join([*lines, json.dumps(bad)]) + "\n")
    target = mem.with_namespace("restored")
    with pytest.raises(ValidationError) as err:
        target.import_(path)
    # 256 records went in as one batch before the bad line was read; the rest did not.
    assert err.value.details["written"] == 256
    assert "the 256 new records on the lines before it were imported" in err.value.message
    assert target.count() == 256 and target.events("chat") == []
    path.write_text("\n".join(lines) + "\n")  # the fixed file
    again = target.import_(path)
    assert (again["written"], again["unchanged"], again["events"]) == (45, 256, 1)
    assert target.count() == 301


def test_backup_restore(mem: Memory, tmp_path: Path) -> None:
    ids = _fill(mem)
    before = [r.to_dict() for r in all_records(mem)]
    backup = tmp_path / "backup.db"
    mem.backup(backup)
    mem.delete(ids[1])
    mem.add("written after the backup")
    mem.restore(backup)
    assert [r.to_dict() for r in all_records(mem)] == before
    assert ids[1] in [h.record.id for h in mem.search("green tea", mode="vector")]
    assert "written after the backup" not in {h.record.text for h in mem.search("written after")}
    assert mem.doctor()["ok"]
    with pytest.raises(NotFoundError):
        mem.restore(tmp_path / "missing.db")


def test_reembed_switches_embedder(store_url: str) -> None:
    with Memory(store_url, embedder=HashEmbedder(384), settings=Settings()) as mem:
        _fill(mem)
        n = mem.reembed(HashEmbedder(64))
        assert n >= 4
        assert mem.embedder.dim == 64
        hits = mem.search("green tea", mode="vector")
        assert hits.hits[0].record.text == "Bob prefers green tea"
        assert hits.hits[0].parts.vector == pytest.approx(
            float(
                HashEmbedder(64).embed(["green tea"], query=True)[0]
                @ HashEmbedder(64).embed(["Bob prefers green tea"])[0]
            ),
            abs=1e-5,
        )
        assert mem.doctor()["ok"]
    with pytest.raises(EmbedderMismatchError) as err:
        Memory(store_url, embedder=HashEmbedder(384), settings=Settings())
    assert "hash-64" in str(err.value)
    with Memory(store_url, embedder=HashEmbedder(64), settings=Settings()) as again:
        assert again.search("Lisbon Porto", mode="keyword").hits


def test_doctor_ok_and_reopen_keeps_everything(store_url: str) -> None:
    with Memory(store_url, embedder=HashEmbedder(384), settings=Settings()) as mem:
        _fill(mem)
        report = mem.doctor()
        assert report["ok"] and report["problems"] == []
        assert report["chunks"] == report["keyword_rows"] == report["vector_rows"]
        before = [r.to_dict() for r in all_records(mem)]
        hits = _search(mem, "Alice Porto tea")
    with Memory(store_url, embedder=HashEmbedder(384), settings=Settings()) as mem:
        assert [r.to_dict() for r in all_records(mem)] == before
        assert _search(mem, "Alice Porto tea") == hits
        assert mem.doctor()["ok"]
        assert mem.health()["status"] == "ok"
