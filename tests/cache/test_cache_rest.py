"""The cache tier behind REST and AsyncMemory: the same engine, so the same cache."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from redis_server import RedisServer

from engramdb import AsyncMemory, HashEmbedder, Memory, Settings
from engramdb.server import create_app

pytestmark = pytest.mark.redis


def settings(db_url: str, cache_url: str) -> Settings:
    return Settings(url=db_url, embedder="hash", hash_dim=64, cache_url=cache_url)


async def test_rest_reads_go_through_the_cache(db_url: str, redis_server: RedisServer) -> None:
    mem = Memory(settings=settings(db_url, redis_server.url), embedder=HashEmbedder(64))
    writer = Memory(settings=settings(db_url, redis_server.url), embedder=HashEmbedder(64))
    try:
        app = create_app(mem, mem.settings.model_copy(update={"auth": "off"}))  # keys: elsewhere
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://engram.test") as c:
            await asyncio.to_thread(writer.add, "served over rest", id="r1")
            for _ in range(3):
                r = await c.get("/v1/namespaces/default/records/r1")
                assert r.status_code == 200 and r.json()["text"] == "served over rest"
            await asyncio.to_thread(writer.update, "r1", text="changed by another writer")
            r = await c.get("/v1/namespaces/default/records/r1")
            assert r.json()["text"] == "changed by another writer"
            stats = (await c.get("/v1/namespaces/default/stats")).json()
        assert stats["cache"]["enabled"] is True
        assert stats["cache"]["hits"] >= 2 and stats["cache"]["errors"] == 0
    finally:
        mem.close()
        writer.close()


async def test_async_memory_reads_through_the_cache(db_url: str, redis_server: RedisServer) -> None:
    amem = AsyncMemory(settings=settings(db_url, redis_server.url), embedder=HashEmbedder(64))
    try:
        await amem.add("async note", id="a1")
        for _ in range(3):
            assert (await amem.get("a1")).text == "async note"
        await amem.update("a1", text="async note, edited")
        assert (await amem.get("a1")).text == "async note, edited"
        assert (await amem.stats())["cache"]["hits"] >= 2
    finally:
        await amem.aclose()
