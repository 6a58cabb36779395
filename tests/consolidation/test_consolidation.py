"""Consolidation on every backend: merges and unmerge, expiry, retention, dry runs.

The hash embedder makes similarity a matter of shared words, so the texts below are
near-duplicates by construction: the same words with case or punctuation changed are
cosine 1.0, one word in twelve changed is about 0.91.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engramdb import HashEmbedder, Memory, NotFoundError, Settings

NURSE = "Alice lives in Lisbon and works as a nurse at the hospital"
NURSE_2 = "alice lives in lisbon, and works as a nurse at the hospital!!"
OLD = "2020-01-01T00:00:00+00:00"


def _open(url: str, **settings: Any) -> Memory:
    return Memory(url, embedder=HashEmbedder(384), settings=Settings(**settings))


@pytest.fixture
def cmem(store_url: str) -> Iterator[Memory]:
    """A Memory over a fresh store of each backend with the default consolidation settings."""
    m = _open(store_url)
    yield m
    m.close()


def _ids(mem: Memory, **kw: Any) -> set[str]:
    return {r.id for r in mem.list(limit=1000, **kw).records}


def _dump(mem: Memory, tmp: Path, name: str) -> list[Any]:
    """Every line of a full export (records with vectors and history, events, slots,
    archived records, tombstones), the header's time removed: the store row for row."""
    path = tmp / f"{name}.jsonl"
    mem.export(path)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    lines[0].pop("exported_at")
    return lines


def test_near_duplicates_merge_into_the_richer_text(cmem: Memory) -> None:
    a = cmem.add(NURSE, user_id="u", tags=["work"], occurred_at="2024-03-01T00:00:00Z")
    b = cmem.add(NURSE_2, user_id="u", tags=["home"], metadata={"src": "chat"}, occurred_at=OLD)
    other = cmem.add("Bob likes chess on Sundays", user_id="u")
    keep, gone = b[0].id, a[0].id  # the second text is longer: the richer one

    report = cmem.consolidate()

    assert [(m.survivor_id, m.merged_ids) for m in report.merges] == [(keep, [gone])]
    survivor = cmem.get(keep)
    assert survivor.text == NURSE_2
    assert survivor.tags == ["home", "work"]
    assert survivor.metadata == {"src": "chat"}
    assert survivor.occurred_at is not None and survivor.occurred_at.year == 2020
    # The merged record leaves search, list and count, and stays readable by id.
    assert _ids(cmem) == {keep, other[0].id}
    assert cmem.count() == 2
    assert gone not in {h.record.id for h in cmem.search("nurse Lisbon hospital").hits}
    assert cmem.get(gone).text == NURSE
    assert [h.op for h in cmem.history(gone)] == ["add", "merge"]
    assert cmem.history(gone)[-1].after == {"merged_into": keep}
    assert [h.op for h in cmem.history(keep)] == ["add", "merge"]
    [arch] = cmem.archived()
    assert (arch.record.id, arch.reason, arch.merged_into) == (gone, "merged", keep)
    # A second pass finds nothing left to do.
    again = cmem.consolidate()
    assert again.merges == [] and again.expired == [] and again.archived == []


def test_unmerge_brings_both_back_as_they_were(cmem: Memory) -> None:
    a = cmem.add(NURSE, user_id="u", tags=["work"], occurred_at="2024-03-01T00:00:00Z")[0]
    b = cmem.add(NURSE_2, user_id="u", tags=["home"], importance=0.4, occurred_at=OLD)[0]
    before = {r.id: r for r in (a.record, b.record)}
    cmem.consolidate()

    back = cmem.unmerge(a.id)  # by the merged-away id

    assert {r.id for r in back} == {a.id, b.id}
    assert _ids(cmem) == {a.id, b.id}
    for rid, rec in before.items():
        now = cmem.get(rid)
        assert (now.text, now.tags, now.occurred_at, now.importance) == (
            rec.text,
            rec.tags,
            rec.occurred_at,
            rec.importance,
        )
    assert [h.op for h in cmem.history(a.id)] == ["add", "merge", "unmerge"]
    assert cmem.history(b.id)[-1].op == "unmerge"
    assert cmem.archived() == []
    # The record is searchable again (its vectors came back with it).
    assert a.id in {h.record.id for h in cmem.search(NURSE, mode="vector").hits}
    with pytest.raises(NotFoundError):
        cmem.unmerge(a.id)


def test_unmerge_by_survivor_id_undoes_its_latest_merge(cmem: Memory) -> None:
    a = cmem.add(NURSE, user_id="u")[0]
    b = cmem.add(NURSE_2, user_id="u")[0]
    cmem.consolidate()
    assert {r.id for r in cmem.unmerge(b.id)} == {a.id, b.id}
    assert cmem.count() == 2


def test_records_of_other_scopes_or_disagreeing_metadata_never_merge(cmem: Memory) -> None:
    cmem.add(NURSE, user_id="u1")
    cmem.add(NURSE_2, user_id="u2")
    cmem.add(NURSE, user_id="u3", type="fact")
    cmem.add(NURSE_2, user_id="u3", type="preference")
    cmem.add(NURSE, user_id="u4", metadata={"city": "Lisbon"})
    cmem.add(NURSE_2, user_id="u4", metadata={"city": "Porto"})
    cmem.add(NURSE, user_id="u5", thread_id="t1")
    cmem.add(NURSE_2, user_id="u5", thread_id="t2")
    cmem.add("Carol plays the violin in an orchestra", user_id="u6")
    cmem.add("Carol plays the cello in a quartet", user_id="u6")
    assert cmem.consolidate().merges == []
    assert cmem.count() == 10


def test_the_threshold_is_a_setting(store_url: str) -> None:
    with _open(store_url, consolidate_merge_threshold=0.9) as m:
        m.add(NURSE, user_id="u")
        m.add(NURSE.replace("hospital", "clinic"), user_id="u")  # cosine about 0.91
        assert len(m.consolidate(dry_run=True).merges) == 1
    with _open(store_url) as m:  # default 0.95
        assert m.consolidate(dry_run=True).merges == []


def test_conversation_turns_are_never_merged(cmem: Memory) -> None:
    cmem.add_messages("t", [{"role": "user", "content": "ok"}, {"role": "user", "content": "OK!"}])
    assert cmem.consolidate().merges == []
    assert cmem.count() == 2


def test_expired_records_are_deleted_with_history(cmem: Memory) -> None:
    gone = cmem.add("a temporary code 1234", expires_at=OLD)[0].id
    kept = cmem.add("a lasting fact", expires_at="2999-01-01T00:00:00Z")[0].id
    report = cmem.consolidate()
    assert [(a.record_id, a.reason) for a in report.expired] == [(gone, "expired")]
    assert _ids(cmem, include_expired=True) == {kept}
    assert [h.op for h in cmem.history(gone)] == ["add", "expire"]
    with pytest.raises(NotFoundError):
        cmem.get(gone)


def test_retention_archives_decayed_records_and_restore_brings_them_back(cmem: Memory) -> None:
    low_old = cmem.add("trivia about lunch", importance=0.05, occurred_at=OLD)[0].id
    high_old = cmem.add("Alice is allergic to nuts", importance=1.0, occurred_at=OLD)[0].id
    no_importance = cmem.add("an old note", occurred_at=OLD)[0].id
    low_young = cmem.add("trivia about dinner", importance=0.01)[0].id

    report = cmem.consolidate()

    # 0.05 * 0.5 ** (age / 30 days) after years is far below the floor 0.1; importance 1.0
    # after about 100 half-lives is too; a record without importance or younger than the
    # half-life never is.
    archived = {a.record_id for a in report.archived}
    assert low_old in archived and no_importance not in archived and low_young not in archived
    assert all(a.reason == "retention" and a.score is not None for a in report.archived)
    assert _ids(cmem) == {no_importance, low_young} | ({high_old} - archived)
    assert cmem.get(low_old).text == "trivia about lunch"
    assert cmem.history(low_old)[-1].op == "archive"

    restored = cmem.restore_archived(low_old)
    assert restored.text == "trivia about lunch" and restored.importance == 0.05
    assert low_old in _ids(cmem)
    assert cmem.history(low_old)[-1].op == "restore"
    with pytest.raises(NotFoundError):
        cmem.restore_archived(low_old)


def test_a_floor_of_zero_archives_nothing(store_url: str) -> None:
    with _open(store_url, consolidate_archive_floor=0.0) as m:
        m.add("trivia about lunch", importance=0.0, occurred_at=OLD)
        assert m.consolidate().archived == []


def test_scope_arguments_limit_the_pass(cmem: Memory) -> None:
    cmem.add(NURSE, user_id="u1")
    cmem.add(NURSE_2, user_id="u1")
    cmem.add(NURSE, user_id="u2")
    cmem.add(NURSE_2, user_id="u2")
    report = cmem.consolidate(user_id="u1")
    assert report.scanned == 2 and len(report.merges) == 1
    assert cmem.count(user_id="u2") == 2


def _planted(mem: Memory) -> None:
    mem.add(NURSE, user_id="u", tags=["a"], occurred_at="2024-03-01T00:00:00Z")
    mem.add(NURSE_2, user_id="u", tags=["b"], occurred_at=OLD)
    mem.add("a temporary code 1234", user_id="u", expires_at=OLD)
    mem.add("trivia about lunch", user_id="u", importance=0.05, occurred_at=OLD)
    mem.add_messages(
        "long",
        [
            {"role": "user", "content": f"Turn {i}: we talked about topic {i % 4}."}
            for i in range(6)
        ],
        user_id="u",
    )


def test_dry_run_reports_the_plan_and_changes_nothing(tmp_path: Path, store_url: str) -> None:
    with _open(store_url, summarize_min_turns=5) as m:
        _planted(m)
        before = _dump(m, tmp_path, "before")
        dry = m.consolidate(dry_run=True)
        assert _dump(m, tmp_path, "after") == before
        if store_url.startswith("sqlite"):
            assert _sqlite_rows(store_url) == _sqlite_rows(store_url)
        real = m.consolidate()
    assert dry.dry_run and not real.dry_run
    assert dry.merges == real.merges
    assert dry.expired == real.expired
    assert [a.record_id for a in dry.archived] == [a.record_id for a in real.archived]
    assert [(s.thread_id, s.turns, s.text) for s in dry.summaries] == [
        (s.thread_id, s.turns, s.text) for s in real.summaries
    ]
    assert (len(dry.merges), len(dry.expired), len(dry.archived), len(dry.summaries)) == (
        1,
        1,
        1,
        1,
    )


def test_dry_run_leaves_every_sqlite_table_row_for_row(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'dry.db'}"
    with _open(url, summarize_min_turns=5) as m:
        _planted(m)
        before = _sqlite_rows(url)
        m.consolidate(dry_run=True)
        assert _sqlite_rows(url) == before
        m.consolidate()
        assert _sqlite_rows(url) != before


def _sqlite_rows(url: str) -> dict[str, list[Any]]:
    import sqlite3

    conn = sqlite3.connect(f"file:{url.removeprefix('sqlite:///')}?mode=ro", uri=True)
    try:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
                "AND name NOT LIKE '%fts%' AND name NOT IN ('meta', 'namespace_generations')"
            )
        ]
        return {t: sorted(map(repr, conn.execute(f"SELECT * FROM {t}"))) for t in tables}
    finally:
        conn.close()


def test_archived_records_survive_export_and_import(tmp_path: Path, store_url: str) -> None:
    with _open(store_url) as m:
        a = m.add(NURSE, user_id="u")[0].id
        m.add(NURSE_2, user_id="u")
        m.consolidate()
        path = tmp_path / "out.jsonl"
        m.export(path)
        kinds = [json.loads(line).get("kind") for line in path.read_text().splitlines()]
        assert kinds.count("archived") == 1
    target = _open(f"sqlite:///{tmp_path / 'copy.db'}")
    with target:
        counts = target.import_(path)
        assert counts["archived"] == 1
        assert target.count() == 1
        assert target.get(a).text == NURSE
        assert {r.id for r in target.unmerge(a)} >= {a}
        assert target.count() == 2


def test_forget_erases_archived_records(cmem: Memory) -> None:
    a = cmem.add(NURSE, user_id="u")[0].id
    cmem.add(NURSE_2, user_id="u")
    cmem.consolidate()
    cmem.forget(user_id="u")
    with pytest.raises(NotFoundError):
        cmem.get(a)
    assert cmem.archived() == []


def test_a_record_changed_since_the_plan_is_left_alone(cmem: Memory) -> None:
    from engramdb.stores.base import Archive, ArchiveItem

    store = cmem._engine.store
    assert isinstance(store, Archive)
    rec = cmem.add("a note that changes", user_id="u")[0].record
    cmem.update(rec.id, add_tags=["changed"])  # now at version 2
    stale = ArchiveItem(rec.id, rec.version, "archive", reason="retention", image="{}")
    assert store.archive_records(cmem.namespace, [stale]) == []
    assert cmem.count() == 1 and store.archived(cmem.namespace, [rec.id]) == []
    fresh = ArchiveItem(rec.id, rec.version + 1, "archive", reason="retention", image="{}")
    assert store.archive_records(cmem.namespace, [fresh]) == [rec.id]
    assert cmem.count() == 0
