"""Backend factory style, run as the teams' code runs it (only the import line changed): the
async verbs, and the ``_sync`` twins from plain code and from inside a running event loop."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engramdb import ValidationError

# --- the teams' code: only this import line changed --------------------------------------
from engramdb.compat import MemoryManager


@dataclass
class ChatTurn:
    content: str
    user_id: str
    session_id: str
    timestamp: datetime
    role: str = "user"
    metadata: dict[str, Any] = field(default_factory=dict)


def store_turns_from_a_worker(turns: list[ChatTurn]) -> list[str]:
    manager = MemoryManager(db_path=None)  # backend from MEMORY_BACKEND_TYPE
    manager.initialize_sync()
    try:
        return [manager.add_memory_item_sync(t) for t in turns]
    finally:
        manager.close_sync()


async def chat_endpoint(manager: MemoryManager, user_id: str, session_id: str, text: str) -> dict:
    await manager.add_memory_item(
        {
            "content": text,
            "user_id": user_id,
            "session_id": session_id,
            "timestamp": datetime(2026, 5, 1, 12, 0, tzinfo=UTC),
            "metadata": {"role": "user", "channel": "web"},
        }
    )
    related = await manager.search_memory_items(text, user_id=user_id, limit=3)
    history = await manager.get_session_history(session_id)
    return {"related": [r["content"] for r in related], "turns": len(history)}


# -----------------------------------------------------------------------------------------

TURNS = [
    ChatTurn("I need to renew my passport", "u1", "s1", datetime(2026, 4, 1, tzinfo=UTC)),
    ChatTurn("The appointment is on Tuesday at 10", "u1", "s1", datetime(2026, 4, 2, tzinfo=UTC)),
]


@pytest.fixture
def sqlite_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'legacy-app.db'}"
    monkeypatch.setenv("MEMORY_BACKEND_TYPE", "sqlite")
    monkeypatch.setenv("ENGRAM_URL", url)
    monkeypatch.setenv("ENGRAM_EMBEDDER", "hash")
    return url


def test_sync_twins_without_an_event_loop(sqlite_backend: str) -> None:
    ids = store_turns_from_a_worker(TURNS)
    assert len(ids) == 2
    manager = MemoryManager(sqlite_backend)
    manager.initialize_sync()
    history = manager.get_session_history_sync("s1")
    assert [h["content"] for h in history] == [t.content for t in TURNS]
    assert history[0]["metadata"] == {"role": "user"}
    assert history[0]["timestamp"] == TURNS[0].timestamp
    assert manager.delete_memory_item_sync(ids[0]) is True
    assert manager.get_memory_item_sync(ids[0]) is None
    manager.close_sync()


async def test_async_verbs_and_sync_twins_inside_a_running_loop(sqlite_backend: str) -> None:
    manager = MemoryManager()
    await manager.initialize()
    out = await chat_endpoint(manager, "u2", "s9", "book a table for two on friday")
    assert out == {"related": ["book a table for two on friday"], "turns": 1}
    # a _sync twin called from async code (an old helper inside a FastAPI handler)
    mid = manager.add_memory_item_sync(
        {"text": "call the dentist", "user_id": "u2", "session_id": "s9"}
    )
    assert (await manager.get_memory_item(mid))["content"] == "call the dentist"
    assert all((await manager.health_check()).values())
    await manager.close()
    assert asyncio.get_running_loop().is_running()


def test_backend_names_and_bad_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENGRAM_URL", raising=False)
    monkeypatch.setenv("POSTGRES_DSN", "postgresql+asyncpg://app@db:5432/app")
    assert MemoryManager("postgres").url == "postgresql+asyncpg://app@db:5432/app"
    assert (
        MemoryManager("sqlite", db_path=tmp_path / "x.db").url == f"sqlite:///{tmp_path / 'x.db'}"
    )
    assert MemoryManager("memory").url == ":memory:"
    with pytest.raises(ValidationError, match="unknown memory backend 'mongo'"):
        MemoryManager("mongo")
    manager = MemoryManager("memory", embedder="hash")
    manager.initialize_sync()
    with pytest.raises(ValidationError, match="item 0 has no text or content"):
        manager.add_memory_item_sync({"user_id": "u"})
    manager.close_sync()


@pytest.mark.postgres
def test_postgres_backend_from_postgres_dsn(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ENGRAM_URL", raising=False)
    monkeypatch.setenv("MEMORY_BACKEND_TYPE", "postgres")
    monkeypatch.setenv("POSTGRES_DSN", "postgresql+psycopg://" + postgres_url.split("://", 1)[1])
    monkeypatch.setenv("ENGRAM_EMBEDDER", "hash")
    ids = store_turns_from_a_worker(TURNS)
    manager = MemoryManager()
    manager.initialize_sync()
    hits = manager.search_memory_items_sync("renew my passport", user_id="u1", limit=1)
    assert [h["id"] for h in hits] == [ids[0]]
    manager.close_sync()
