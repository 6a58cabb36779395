"""ChromaService style, run as the teams' code runs it (only the import line changed), on a
real SQLite file named by ENGRAM_URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from engramdb import AsyncMemory, ValidationError

# --- the teams' code: only this import line changed --------------------------------------
from engramdb.compat import MemoryService


class FactsStore:
    def __init__(self) -> None:
        self.memory_service = MemoryService()

    async def remember(self, user_id: str, fact: str) -> str:
        ids = await self.memory_service.add_memory(
            fact,
            collection="user_facts",
            metadata={"user_id": user_id, "source": "chat"},
            max_chunk_tokens=256,
        )
        return ids[0]

    async def recall(self, question: str) -> list[str]:
        results = await self.memory_service.retrieve_memories(
            question, collection="user_facts", top_k=3, score_threshold=0.2
        )
        return [r["text"] for r in results]

    async def correct(self, memory_id: str, fact: str) -> bool:
        return await self.memory_service.update_memory(
            memory_id, "user_facts", new_text=fact, new_metadata={"source": "correction"}
        )

    async def forget(self, memory_id: str) -> bool:
        return await self.memory_service.delete_memory(memory_id, "user_facts")


# -----------------------------------------------------------------------------------------


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    db = tmp_path / "chroma-replacement.db"
    monkeypatch.setenv("ENGRAM_URL", f"sqlite:///{db}")
    monkeypatch.setenv("ENGRAM_EMBEDDER", "hash")
    return db


async def test_the_teams_facts_store_works_unchanged(env: Path) -> None:
    store = FactsStore()
    tea = await store.remember("u1", "Alice drinks green tea every morning")
    await store.remember("u1", "Alice works as a nurse in Porto")
    assert (await store.recall("Alice drinks green tea every morning"))[0] == (
        "Alice drinks green tea every morning"
    )
    assert await store.correct(tea, "Alice switched from tea to black coffee")
    assert (await store.recall("Alice switched from tea to black coffee"))[0].startswith(
        "Alice switched"
    )
    assert await store.forget(tea)
    assert not await store.forget(tea)  # gone: False, as the original answered
    assert not await store.correct(tea, "x")
    await store.memory_service.close()
    async with AsyncMemory(f"sqlite:///{env}", namespace="user_facts", embedder="hash") as mem:
        [record] = (await mem.list()).records
        assert record.metadata == {"user_id": "u1", "source": "chat"}
        assert record.user_id == "u1"  # a user_id in metadata also scopes the record


async def test_score_threshold_is_the_similarity_threshold(env: Path) -> None:
    svc = MemoryService()
    await svc.add_memory("the quarterly report is due on friday", collection="work")
    await svc.add_memory("buy oat milk and bananas", collection="work")
    hits = await svc.retrieve_memories(
        "the quarterly report is due on friday", collection="work", top_k=5, score_threshold=0.99
    )
    assert [h["text"] for h in hits] == ["the quarterly report is due on friday"]
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert hits[0]["distance"] == pytest.approx(0.0, abs=1e-5)
    await svc.close()


async def test_collections_map_to_namespaces_or_types(env: Path) -> None:
    by_ns = MemoryService()
    [a] = await by_ns.add_memory("shared words here", collection="alpha")
    await by_ns.add_memory("shared words here", collection="beta")
    assert not await by_ns.delete_memory(a, "beta")  # another collection: not found there
    assert [h["id"] for h in await by_ns.retrieve_memories("shared words", "alpha")] == [a]
    await by_ns.close()
    by_type = MemoryService(collection_as="type")
    [n] = await by_type.add_memory("note in one collection", collection="Notes")
    await by_type.add_memory("task in another collection", collection="tasks")
    assert [h["id"] for h in await by_type.retrieve_memories("collection", "notes", top_k=5)] == [n]
    assert not await by_type.delete_memory(n, "tasks")
    await by_type.close()
    with pytest.raises(ValidationError, match="collection_as"):
        MemoryService(collection_as="tenant")  # type: ignore[arg-type]
