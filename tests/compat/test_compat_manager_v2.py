"""MemoryManager v2 style, run as the teams' code runs it: the code below the marker is the
teams' usage, unchanged but for the import line, on real SQLite files and on PostgreSQL
(its DSN in the asyncpg spelling the teams copy from SQLAlchemy settings)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engramdb import AsyncMemory, ValidationError

# --- the teams' code: only this import line changed --------------------------------------
from engramdb.compat import (
    AuditEvent,
    MemoryRecord,
    create_dev_memory_manager,
    create_production_memory_manager,
)


async def remember_conversation(mm, user_id: str, thread_id: str, turns: list[str]) -> list[str]:
    results = await mm.awrite(
        [
            MemoryRecord(user_id=user_id, text=t, type="episodic", source="chat", tags=["turn"])
            for t in turns
        ]
    )
    ids = [r.id for r in results]
    await mm.alog_audit(
        AuditEvent(
            user_id=user_id,
            thread_id=thread_id,
            source="chat-api",
            action="memory.write",
            payload={"ids": ids, "count": len(ids)},
        )
    )
    await mm.aset_rmt(thread_id, {"goal": "plan a trip", "step": 2})
    return ids


async def answer(mm, user_id: str, question: str) -> list[str]:
    memories = await mm.aretrieve(question, user_id=user_id, topk=3)
    return [m.text for m in memories]


async def readiness(mm) -> bool:
    health = await mm.health_check()
    return all(health.values())


# -----------------------------------------------------------------------------------------

TURNS = [
    "I am flying to Lisbon on the 3rd of May",
    "My partner is vegetarian so book restaurants with good veggie options",
    "Budget for the hotel is 150 euros a night",
]


async def _the_teams_flow(mm) -> None:
    assert await readiness(mm)
    ids = await remember_conversation(mm, "alice", "trip-1", TURNS)
    assert len(ids) == 3 and all(ids)
    found = await answer(mm, "alice", "hotel budget per night euros")
    assert found[0] == TURNS[2]
    assert await answer(mm, "bob", "hotel budget per night euros") == []  # scoped to the user
    snap = await mm.asnapshot_thread("trip-1")
    assert snap.slots == {"goal": "plan a trip", "step": 2}
    [event] = snap.events
    assert (event.action, event.source, event.user_id) == ("memory.write", "chat-api", "alice")
    assert event.payload == {"ids": ids, "count": 3}
    assert "memory.write" in str(snap) and "plan a trip" in str(snap)
    stats = await mm.aconsolidate()
    assert stats["records"] == 3 and stats["changed"] is False


async def test_production_manager_from_engram_url_on_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "prod.db"
    monkeypatch.setenv("ENGRAM_URL", f"sqlite:///{db}")
    monkeypatch.setenv("ENGRAM_EMBEDDER", "hash")
    mm = await create_production_memory_manager(namespace="support")  # awaited, as some do
    await _the_teams_flow(mm)
    await mm.aclose()
    async with AsyncMemory(f"sqlite:///{db}", embedder="hash", namespace="support") as mem:
        assert await mem.count() == 3  # the data is engramdb's, readable by the library


async def test_one_bad_record_gets_its_own_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENGRAM_EMBEDDER", "hash")
    mm = create_dev_memory_manager(path=tmp_path / "dev.db")
    results = await mm.awrite(
        [MemoryRecord(user_id="u", text="fine"), MemoryRecord(user_id="u", text="   ")]
    )
    assert [r.ok for r in results] == [True, False]
    assert results[1].error and "text" in results[1].error
    await mm.aclose()


def test_no_store_configured_names_the_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ENGRAM_URL", "POSTGRES_DSN", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValidationError, match="ENGRAM_URL, POSTGRES_DSN, DATABASE_URL"):
        create_production_memory_manager(namespace="x")


@pytest.mark.postgres
@pytest.mark.parametrize("variable", ["POSTGRES_DSN", "DATABASE_URL"])
async def test_production_manager_from_a_sqlalchemy_dsn_on_postgres(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.delenv("ENGRAM_URL", raising=False)
    monkeypatch.delenv("POSTGRES_DSN", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    spelling = "postgresql+asyncpg://" if variable == "POSTGRES_DSN" else "postgresql+psycopg://"
    monkeypatch.setenv(variable, spelling + postgres_url.split("://", 1)[1])
    monkeypatch.setenv("ENGRAM_EMBEDDER", "hash")
    mm = create_production_memory_manager(namespace="support")
    await _the_teams_flow(mm)
    await mm.aclose()


async def test_aconsolidate_runs_the_real_consolidation(tmp_path: Path) -> None:
    mm = create_dev_memory_manager(path=tmp_path / "c.db", embedder="hash")
    text = "Alice lives in Lisbon and works as a nurse at the hospital"
    first = await mm.memory.add(text, user_id="alice")
    await mm.memory.add(text.lower() + "!", user_id="alice")
    planned = await mm.aconsolidate(dry_run=True)
    assert planned["consolidated"] == 1 and planned["changed"] is False
    assert planned["records"] == 2
    done = await mm.aconsolidate()
    assert done["changed"] is True and done["records"] == 1
    assert done["report"]["merges"][0]["merged_ids"] == [first[0].id]
    await mm.aclose()
