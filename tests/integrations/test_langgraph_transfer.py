"""A thread's checkpoints travel with the store (export/import, backup/restore, migrate) and
show in its snapshot. On both backends."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.base.id import uuid6

from engramdb import HashEmbedder, Memory
from engramdb.errors import ValidationError
from engramdb.integrations.langgraph import EngramSaver


def run_thread(saver: EngramSaver, thread: str, steps: int, ns: str = "") -> list[str]:
    """Save ``steps`` checkpoints (a growing message list) with a pending write each;
    return their ids, oldest first."""
    config: dict[str, Any] = {"configurable": {"thread_id": thread, "checkpoint_ns": ns}}
    ids, prev = [], None
    for step in range(steps):
        cp = empty_checkpoint()
        cp["id"] = str(uuid6())
        cp["channel_values"] = {"messages": [f"turn {i}" for i in range(step + 1)], "step": step}
        version = saver.get_next_version(prev, None)
        prev = version
        cp["channel_versions"] = {"messages": version, "step": version}
        config = saver.put(config, cp, {"source": "loop", "step": step}, {"messages": version})
        saver.put_writes(config, [("messages", [f"pending {step}"])], task_id=f"task-{step}")
        ids.append(cp["id"])
    return ids


def state(saver: EngramSaver, thread: str) -> list[tuple[Any, ...]]:
    """Everything a resumed graph reads of a thread, checkpoint by checkpoint."""
    return [
        (
            t.config["configurable"]["checkpoint_id"],
            t.checkpoint["channel_values"],
            t.metadata,
            t.pending_writes,
            (t.parent_config or {}).get("configurable", {}).get("checkpoint_id"),
        )
        for t in saver.list({"configurable": {"thread_id": thread}})
    ]


def test_export_and_import_carry_checkpoints(mem: Memory, tmp_path: Path) -> None:
    saver = EngramSaver(mem)
    run_thread(saver, "t1", 4)
    run_thread(saver, "t2", 2, ns="child")
    before = {t: state(saver, t) for t in ("t1", "t2")}
    path = tmp_path / "out.jsonl"
    mem.export(path)
    kinds = [json.loads(line).get("table") for line in path.read_text().splitlines()[1:]]
    assert {"checkpoint", "blob", "write"} <= set(kinds)
    target = mem.with_namespace("restored")
    counts = target.import_(path)
    assert counts["checkpoint_rows"] == len([k for k in kinds if k])
    moved = EngramSaver(target)
    assert {t: state(moved, t) for t in ("t1", "t2")} == before
    assert target.import_(path)["checkpoint_rows"] == counts["checkpoint_rows"]  # idempotent
    assert {t: state(moved, t) for t in ("t1", "t2")} == before
    # The source namespace is untouched, and the new one resumes where the old one was.
    assert state(saver, "t1") == before["t1"]
    assert (
        moved.get_tuple({"configurable": {"thread_id": "t1"}}).checkpoint["channel_values"]["step"]
        == 3
    )


def test_a_bad_checkpoint_line_is_refused_before_anything_is_written(
    mem: Memory, tmp_path: Path
) -> None:
    run_thread(EngramSaver(mem), "t1", 1)
    path = tmp_path / "out.jsonl"
    mem.export(path)
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        obj = json.loads(line)
        if obj.get("table") == "checkpoint":
            obj["created_at"] = "yesterday"
            lines[i] = json.dumps(obj)
            bad = i + 1
    path.write_text("\n".join(lines) + "\n")
    target = mem.with_namespace("other")
    with pytest.raises(ValidationError, match=f"line {bad}: malformed checkpoint line"):
        target.import_(path)
    assert EngramSaver(target).get_tuple({"configurable": {"thread_id": "t1"}}) is None


def test_backup_and_restore_carry_checkpoints(mem: Memory, tmp_path: Path) -> None:
    saver = EngramSaver(mem)
    run_thread(saver, "t1", 3)
    before = state(saver, "t1")
    mem.backup(tmp_path / "store.bak")
    saver.delete_thread("t1")
    assert state(saver, "t1") == []
    mem.restore(tmp_path / "store.bak")
    assert state(EngramSaver(mem), "t1") == before


def test_snapshot_lists_the_threads_newest_checkpoints(mem: Memory) -> None:
    saver = EngramSaver(mem)
    mem.log_event("t1", "message", {"role": "user", "content": "hello"}, actor="user")
    ids = run_thread(saver, "t1", 12)
    run_thread(saver, "other", 1)
    snap = mem.snapshot("t1")
    assert [c.checkpoint_id for c in snap.checkpoints] == ids[::-1][:10]
    assert snap.checkpoints[0].metadata["step"] == 11
    assert snap.checkpoints[0].parent_id == ids[-2]
    assert ids[-1] in snap.text and "step=11" in snap.text and "hello" in snap.text
    as_dict = snap.to_dict()
    assert as_dict["checkpoints"][0]["checkpoint_id"] == ids[-1]
    json.dumps(as_dict)  # JSON-ready
    assert mem.snapshot("nobody").checkpoints == []


@pytest.mark.postgres
def test_migrate_carries_checkpoints(tmp_path: Path, postgres_url: str) -> None:
    from engramdb.ops.migrate import migrate_store

    src = f"sqlite:///{tmp_path / 'src.db'}"
    with Memory(src, embedder=HashEmbedder(384)) as mem:
        mem.add("a record so the store has one")
        saver = EngramSaver(mem)
        run_thread(saver, "t1", 3)
        before = state(saver, "t1")
    report = migrate_store(src, postgres_url)
    assert report["checkpoint_rows_copied"] > 0
    with Memory(postgres_url, embedder=HashEmbedder(384)) as mem:
        assert state(EngramSaver(mem), "t1") == before


async def test_rest_snapshot_and_the_client_carry_checkpoints(tmp_path: Path) -> None:
    import httpx

    from engramdb import Settings
    from engramdb.client.decode import DECODERS
    from engramdb.server import create_app

    key = "test-admin-key-0123456789abcdef"
    settings = Settings(url=f"sqlite:///{tmp_path / 'rest.db'}", admin_key=key)
    with Memory(settings=settings, embedder=HashEmbedder(64)) as mem:
        ids = run_thread(EngramSaver(mem.with_namespace("agents")), "t1", 3)
        transport = httpx.ASGITransport(app=create_app(mem))
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://engram.test",
            headers={"Authorization": f"Bearer {key}"},
        ) as client:
            got = await client.get("/v1/namespaces/agents/threads/t1/snapshot")
    assert got.status_code == 200
    body = got.json()
    assert [c["checkpoint_id"] for c in body["checkpoints"]] == ids[::-1]
    assert body["checkpoints"][0]["metadata"] == {"source": "loop", "step": 2}
    snap = DECODERS["snapshot"](body)
    assert [c.checkpoint_id for c in snap.checkpoints] == ids[::-1]
