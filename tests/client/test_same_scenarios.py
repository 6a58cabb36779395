"""One set of scenarios, run against embedded ``Memory``, ``Client`` over HTTP and
``ZmqClient`` over ZeroMQ (both to a real ``engramdb serve`` process), and their asyncio
twins: the same results, of the same types, and the same exceptions.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engramdb import HashEmbedder, Memory, Settings
from engramdb.errors import (
    ConflictError,
    LimitExceededError,
    NotFoundError,
    NotSupportedError,
    PermissionDeniedError,
    ValidationError,
)
from engramdb.models import (
    AddResult,
    Entity,
    EntityGraph,
    Event,
    HistoryEntry,
    MemoryRecord,
    Mention,
    RecordPage,
    Relation,
    SearchHit,
    SearchPage,
    Slots,
    Snapshot,
)


def test_add_get_and_the_record_round_trip(face: Any) -> None:
    when = datetime(2021, 5, 1, 12, 30, tzinfo=UTC)
    [result] = face.add(
        "Alice moved to Lisbon in 2021",
        user_id="alice",
        tags=["profile", "city"],
        metadata={"source": "chat", "n": 3},
        importance=0.5,
        occurred_at=when,
    )
    assert isinstance(result, AddResult) and result.outcome == "written"
    rec = face.get(result.id)
    assert isinstance(rec, MemoryRecord)
    assert rec == result.record
    assert (rec.namespace, rec.text, rec.user_id) == (face.namespace, result.record.text, "alice")
    assert sorted(rec.tags) == ["city", "profile"] and rec.metadata == {"source": "chat", "n": 3}
    assert rec.occurred_at == when and rec.created_at is not None and rec.version == 1
    again = face.add("Alice moved to Lisbon in 2021", user_id="alice")
    assert again[0].outcome == "deduplicated" and again[0].id == rec.id


def test_a_stale_expected_version_raises_conflict(face: Any) -> None:
    rid = face.add("the sky is blue")[0].id
    updated = face.update(rid, text="the sky is grey", expected_version=1)
    assert isinstance(updated, MemoryRecord) and updated.version == 2
    with pytest.raises(ConflictError) as caught:
        face.update(rid, text="the sky is green", expected_version=1)
    assert "version" in caught.value.message
    assert face.get(rid).text == "the sky is grey"


def test_a_missing_record_raises_not_found(face: Any) -> None:
    with pytest.raises(NotFoundError):
        face.get("no-such-record")
    with pytest.raises(NotFoundError):
        face.update("no-such-record", text="x")
    with pytest.raises(NotFoundError):
        face.delete("no-such-record")
    rid = face.add("short lived")[0].id
    assert face.delete(rid) is None
    with pytest.raises(NotFoundError):
        face.get(rid)
    ops = [(h.op, h.version) for h in face.history(rid)]
    assert ops == [("add", 1), ("delete", 2)]
    assert all(isinstance(h, HistoryEntry) for h in face.history(rid))


def test_bad_input_raises_the_same_error_class(face: Any) -> None:
    with pytest.raises(LimitExceededError):
        face.add("x" * (64 * 1024))
    with pytest.raises(ValidationError):
        face.delete_all()  # no filter and not all=True
    with pytest.raises(ValidationError):
        face.search("anything", top_k=0)
    results = face.add(["a good one", {"text": "   "}], on_error="skip")
    assert [r.outcome for r in results] == ["written", "rejected"]
    assert results[1].error


def test_search_list_count_and_paging(face: Any) -> None:
    face.add(
        [
            {"text": "Bob likes green tea", "user_id": "bob", "tags": ["drink"]},
            {"text": "Bob plays the cello", "user_id": "bob"},
            {"text": "Carol likes black coffee", "user_id": "carol", "tags": ["drink"]},
        ]
    )
    page = face.search("green tea", mode="keyword", user_id="bob")
    assert isinstance(page, SearchPage) and isinstance(page.hits[0], SearchHit)
    assert page.hits[0].record.text == "Bob likes green tea"
    assert page.hits[0].parts.keyword_rank == 1
    assert {h.record.user_id for h in face.search("likes", top_k=10)} <= {"bob", "carol"}
    assert face.count() == 3 and face.count(user_id="bob") == 2
    assert face.count({"tags": {"$contains": "drink"}}) == 2
    first = face.list(limit=2)
    assert isinstance(first, RecordPage) and len(first) == 2 and first.next_cursor
    rest = face.list(limit=2, cursor=first.next_cursor)
    assert [r.text for r in [*first, *rest]] == [
        "Bob likes green tea",
        "Bob plays the cello",
        "Carol likes black coffee",
    ]
    assert face.delete_all(user_id="carol") == 1 and face.count() == 2
    assert face.get_many([first[1].id, "missing", first[0].id]) == [first[1], first[0]]


def test_threads_events_and_slots(face: Any) -> None:
    results = face.add_messages(
        "t1", [{"role": "user", "content": "book a table"}, {"role": "assistant", "content": "ok"}]
    )
    assert [r.outcome for r in results] == ["written", "written"]
    event = face.log_event("t1", "tool_call", {"tool": "booking", "seats": 2}, actor="agent")
    assert isinstance(event, Event) and event.payload == {"tool": "booking", "seats": 2}
    events = face.events("t1")
    assert [e.action for e in events][-1] == "tool_call" and len(events) == 3
    slots = face.set_slots("t1", {"step": "confirm"})
    assert isinstance(slots, Slots) and slots.version == 1
    with pytest.raises(ConflictError):
        face.set_slots("t1", {"step": "pay"}, expected_version=0)
    assert face.set_slots("t1", {"step": "pay"}, expected_version=1).version == 2
    assert face.get_slots("t1").values == {"step": "pay"}
    snap = face.snapshot("t1")
    assert isinstance(snap, Snapshot) and len(snap.events) == 3 and "pay" in snap.text


def test_namespaces_forget_stats_and_health(face: Any) -> None:
    face.add("Dave's number is 555", user_id="dave")
    face.add("Erin likes jazz", user_id="erin")
    assert face.namespaces()[face.namespace] == 2
    erased = face.forget(user_id="dave")
    assert erased["records"] == 1 and face.count() == 1
    stats = face.stats()
    assert stats["namespace"] == face.namespace and stats["namespace_stats"]["records"] == 1
    assert face.health()["status"] == "ok"
    other = face.with_namespace(face.namespace + "x")
    if hasattr(face, "_engine"):  # embedded: another namespace is simply empty
        assert other.count() == 0
        with pytest.raises(NotFoundError):
            other.get(face.list()[0].id)
    else:  # remote with a namespace key: another namespace is refused, its data never shown
        with pytest.raises(PermissionDeniedError):
            other.count()
        with pytest.raises(PermissionDeniedError):
            other.get(face.list()[0].id)


def test_entities_relations_and_aliases(face: Any, tmp_path: Path) -> None:
    if isinstance(face, Memory):  # the tests run embedded Memory without extraction
        face = Memory(
            f"sqlite:///{tmp_path / 'entities.db'}",
            namespace=face.namespace,
            embedder=HashEmbedder(),
            settings=Settings(extract="background"),
        )
        with face:
            _entity_scenario(face)
    else:
        _entity_scenario(face)


def _entity_scenario(face: Any) -> None:
    texts = ["Bob Smith is employed by Google.", "Mr. Smith lives in Paris.", "Bob likes sushi."]
    added = face.add(texts, user_id="u1")
    people = face.entities(user_id="u1", type="PERSON")
    assert [e.name for e in people] == ["Bob Smith"] and isinstance(people[0], Entity)
    bob = people[0]
    assert sorted(bob.aliases) == ["Bob", "Mr. Smith"] and bob.mention_count == 3
    assert bob.mentions is None
    one = face.entity(bob.id)
    assert one.mentions is not None and all(isinstance(m, Mention) for m in one.mentions)
    assert {m.record_id for m in one.mentions} == {r.id for r in added}
    graph = face.relations(bob.id)
    assert isinstance(graph, EntityGraph) and all(isinstance(r, Relation) for r in graph.relations)
    assert {r.type for r in graph.relations} == {"works_for", "lives_in", "likes"}
    only = face.relations(bob.id, depth=2, types=["lives_in"])
    assert [r.type for r in only.relations] == ["lives_in"]
    about = face.records_about(bob.id, limit=2)
    assert len(about) == 2 and all(isinstance(r, MemoryRecord) for r in about)
    log = face.entity_history(bob.id)
    assert {(x["name"], x["op"]) for x in log} == {("Mr. Smith", "link"), ("Bob", "link")}
    mr = next(x["entity_id"] for x in log if x["name"] == "Mr. Smith")
    separated = face.unlink_entity(mr)
    assert isinstance(separated, Entity) and separated.aliases == []
    assert [x["op"] for x in face.entity_history(mr)] == ["link", "unlink"]
    with pytest.raises(ValidationError):
        face.unlink_entity(mr)
    with pytest.raises(NotFoundError):
        face.entity(2**62)
    with pytest.raises(ValidationError):
        face.relations(bob.id, depth=4)
    with pytest.raises(ValidationError):
        face.entity(0)
    page = face.search("Google", user_id="u1", include_entities=True, top_k=3)
    hit = next(h for h in page if "Google" in h.record.text)
    assert isinstance(hit.entities, EntityGraph)
    assert {e.name for e in hit.entities.entities} >= {"Bob Smith", "Google"}
    assert all(h.entities is None for h in face.search("Google", user_id="u1", top_k=3))


def test_unknown_arguments_fail_like_the_library(face: Any) -> None:
    with pytest.raises(TypeError):
        face.add("text", colour="red")
    if not hasattr(face, "_engine"):  # a remote face: the vector stays local
        with pytest.raises(NotSupportedError):
            face.search("x", query_vector=[0.1] * 384)


async def test_the_async_faces(async_face: Any) -> None:
    [result] = await async_face.add("Frank moved to Oslo", user_id="frank")
    rec = await async_face.get(result.id)
    assert rec == result.record
    with pytest.raises(ConflictError):
        await async_face.update(rec.id, text="Frank moved to Bergen", expected_version=7)
    with pytest.raises(NotFoundError):
        await async_face.get("no-such-record")
    hits = await async_face.search("Oslo", mode="keyword")
    assert [h.record.id for h in hits] == [rec.id]
    assert (await async_face.get_slots("t")).version == 0
    found = await async_face.entities(user_id="frank")
    assert isinstance(found, list) and all(isinstance(e, Entity) for e in found)


def test_consolidate_unmerge_and_summaries(face: Any) -> None:
    """Consolidation through each face: the same plan, the same undo."""
    nurse = "Alice lives in Lisbon and works as a nurse at the hospital"
    a = face.add(nurse, user_id="u", tags=["x"])[0].id
    b = face.add(nurse.lower() + "!!", user_id="u", tags=["y"])[0].id
    dry = face.consolidate(dry_run=True)
    assert dry.dry_run and [(m.survivor_id, m.merged_ids) for m in dry.merges] == [(b, [a])]
    assert face.count() == 2
    done = face.consolidate(user_id="u")
    assert done.merges == dry.merges and not done.dry_run
    assert face.count() == 1 and face.get(a).text == nurse
    assert face.get(b).tags == ["x", "y"]
    [arch] = face.archived()
    assert (arch.record.id, arch.reason, arch.merged_into) == (a, "merged", b)
    assert {r.id for r in face.unmerge(a)} == {a, b}
    assert face.count() == 2 and face.get(b).tags == ["y"]
    with pytest.raises(NotFoundError):
        face.restore_archived(a)
    assert face.summarize_text("One sentence here. Another one there.", max_sentences=1)
