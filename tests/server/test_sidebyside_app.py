"""The REST app side by side with an older engramdb store (real SQLite files, in process).

What must hold: with an engramdb old store every write verb of the namespace reaches both
stores (records under the same ids, thread events and slots, deletions and erasures); reads
follow ``read_from_new`` (a record only the old store holds is found at 0% and not at 100%);
other namespaces are the service's alone; and a server not side by side answers the admin
route with a 409 that names the setting, and says so on the admin page. Beside Redis
conversation lists, the turns posted to a thread are appended to its list.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from redis_server import RedisServer
from server_helpers import ADMIN_HEADERS, ADMIN_KEY, assert_error

from engramdb import HashEmbedder, Memory, Settings, ValidationError
from engramdb.server import create_app

NS = "/v1/namespaces/default"


def _settings(tmp_path: Path, **extra: object) -> Settings:
    return Settings(
        url=f"sqlite:///{tmp_path / 'new.db'}",
        embedder="hash",
        hash_dim=64,
        admin_key=SecretStr(ADMIN_KEY),
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Memory, str]]:
    old_url = f"sqlite:///{tmp_path / 'old.db'}"
    settings = _settings(
        tmp_path,
        sidebyside_old=old_url,
        sidebyside_queue=str(tmp_path / "dual.queue"),
        sidebyside_sample=0.0,
    )
    mem = Memory(settings=settings, embedder=HashEmbedder(64))
    app = create_app(mem, settings)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://engram.test", headers=ADMIN_HEADERS, timeout=60
    ) as client:
        yield client, mem, old_url
    await asyncio.to_thread(app.state.sidebyside.close)
    await asyncio.to_thread(mem.close)


async def test_every_write_reaches_the_old_engramdb_store(
    pair: tuple[httpx.AsyncClient, Memory, str],
) -> None:
    c, mem, old_url = pair
    made = await c.post(f"{NS}/records", json={"text": "Alice moved to Lisbon", "tags": ["home"]})
    rid = made.json()["results"][0]["record"]["id"]
    gone = (await c.post(f"{NS}/records", json={"text": "to be deleted"})).json()
    gone_id = gone["results"][0]["record"]["id"]
    assert (await c.patch(f"{NS}/records/{rid}", json={"text": "Alice lives in Porto"})).is_success
    assert (await c.delete(f"{NS}/records/{gone_id}")).status_code == 204
    turns = {"messages": [{"role": "user", "content": "hello there"}], "user_id": "u1"}
    assert (await c.post(f"{NS}/threads/t1/messages", json=turns)).is_success
    assert (await c.post(f"{NS}/threads/t1/events", json={"action": "opened"})).is_success
    assert (await c.put(f"{NS}/threads/t1/slots", json={"values": {"mood": "calm"}})).is_success
    erased = await c.post(f"{NS}/forget", json={"user_id": "u1"})
    assert erased.is_success, erased.text
    await c.post("/v1/namespaces/other/records", json={"text": "not side by side"})
    status = (await c.get("/v1/admin/read-from-new")).json()
    assert status["dual_write"] == {"pending": 0, "secondary_failures": 0, "replayed": 0}

    await asyncio.to_thread(_check_old, mem, old_url, rid)


def _check_old(mem: Memory, old_url: str, rid: str) -> None:
    old = Memory(old_url, embedder=HashEmbedder(64))
    try:
        old_ns, new_ns = old.with_namespace("default"), mem.with_namespace("default")
        assert old_ns.get(rid).text == "Alice lives in Porto" and old_ns.get(rid).tags == ["home"]
        assert {r.id for r in old_ns.list().records} == {r.id for r in new_ns.list().records}
        assert old_ns.get_slots("t1").values == {"mood": "calm"}
        assert [e.action for e in old_ns.events("t1")][-1:] == ["opened"]
        assert old.namespaces().get("other") is None
    finally:
        old.close()


def _add_old(old_url: str, text: str) -> str:
    with Memory(old_url, embedder=HashEmbedder(64)) as old:
        return old.add(text)[0].id


async def test_reads_follow_the_share(pair: tuple[httpx.AsyncClient, Memory, str]) -> None:
    c, _, old_url = pair
    only_old = await asyncio.to_thread(_add_old, old_url, "kept only in the old store")
    assert (await c.get(f"{NS}/records/{only_old}")).status_code == 200  # 0%: the old store
    count = await c.post(f"{NS}/records/count", json={})
    assert count.json()["count"] == 1
    assert (await c.put("/v1/admin/read-from-new", json={"percent": 100})).status_code == 200
    assert_error(await c.get(f"{NS}/records/{only_old}"), 404)  # 100%: the new store
    assert (await c.post(f"{NS}/records/count", json={})).json()["count"] == 0


def test_the_old_store_must_be_another_store(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    settings = settings.model_copy(update={"sidebyside_old": settings.url})
    with (
        Memory(settings=settings, embedder=HashEmbedder(64)) as mem,
        pytest.raises(ValidationError, match="the service's own store"),
    ):
        create_app(mem, settings)


async def test_a_server_not_side_by_side_says_so(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    with Memory(settings=settings, embedder=HashEmbedder(64)) as mem:
        app = create_app(mem, settings)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://engram.test", headers=ADMIN_HEADERS
        ) as c:
            for resp in (
                await c.get("/v1/admin/read-from-new"),
                await c.put("/v1/admin/read-from-new", json={"percent": 5}),
            ):
                body = assert_error(resp, 409, "conflict")
                assert "ENGRAM_SIDEBYSIDE_OLD" in str(body["message"])
            assert "Not running side by side" in (await c.get("/admin")).text


@pytest.mark.redis
async def test_conversation_turns_reach_redis_lists(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    with redis_server.client() as r:
        r.flushall()
        r.rpush("chat:t1", json.dumps({"role": "user", "content": "I need a flight to Oslo"}))
    settings = _settings(
        tmp_path,
        sidebyside_old=f"{redis_server.url}?pattern=chat:*",
        sidebyside_queue=str(tmp_path / "dual.queue"),
        sidebyside_sample=0.0,
    )
    mem = Memory(settings=settings, embedder=HashEmbedder(64))
    app = create_app(mem, settings)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://engram.test", headers=ADMIN_HEADERS
        ) as c:
            status = (await c.get("/v1/admin/read-from-new")).json()
            assert status["namespace"] == "chat"
            turns = {
                "messages": [
                    {"role": "assistant", "content": "Booked Friday 9:40"},
                    {"role": "user", "content": "Window seat please"},
                ],
                "user_id": "u1",
            }
            made = await c.post("/v1/namespaces/chat/threads/t1/messages", json=turns)
            assert made.status_code == 200, made.text
            ids = [r["record"]["id"] for r in made.json()["results"]]
            # Reads at 0% come from Redis: the older turn and the new ones, by their ids.
            got = await c.get(f"/v1/namespaces/chat/records/{ids[1]}")
            assert got.json()["text"] == "Window seat please"
            count = await c.post("/v1/namespaces/chat/records/count", json={})
            assert count.json()["count"] == 3
        with redis_server.client() as r:
            stored = [json.loads(v) for v in r.lrange("chat:t1", 0, -1)]
        assert [(t["role"], t["content"]) for t in stored] == [
            ("user", "I need a flight to Oslo"),
            ("assistant", "Booked Friday 9:40"),
            ("user", "Window seat please"),
        ]
        assert [t.get("$engram_id") for t in stored[1:]] == ids
        assert stored[2]["user_id"] == "u1"
    finally:
        await asyncio.to_thread(app.state.sidebyside.close)
        await asyncio.to_thread(mem.close)
