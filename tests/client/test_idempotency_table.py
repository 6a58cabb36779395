"""The service's Idempotency-Key table and middleware, in-process: bounds, expiry, a twin
that waits for the first request with its key, and a failed first request that lets the
retry run again. The app under the middleware is a small ASGI app of our own whose writes
block on an event, so "still running" is a state, not a race."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engramdb import HashEmbedder, Memory
from engramdb.ops.idempotency import IdempotencyService
from engramdb.server.idempotency import IdempotencyMiddleware, KeyTable, StoreTable, Table


@pytest.fixture(params=["process", "store"])
def table(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Table]:
    """The table in this process, and the one in a real SQLite store (what serve uses)."""
    if request.param == "process":
        yield KeyTable()
        return
    with Memory(f"sqlite:///{tmp_path / 'idem.db'}", embedder=HashEmbedder()) as mem:
        service = IdempotencyService.of(mem, ttl_s=3600, lease_s=600)
        assert service is not None
        yield StoreTable(service)


def test_the_table_is_bounded_and_expires() -> None:
    table = KeyTable(ttl_s=3600, max_entries=3, max_bytes=10)
    for key in "abc":
        assert table.claim(key) is None
        table.finish(key, 200, [], b"1234")  # 12 bytes in all: over max_bytes
    assert table.claim("a") is None  # evicted first (oldest), so it runs again
    entry = table.claim("c")
    assert entry is not None and entry.done and entry.body == b"1234"
    table.release("c")
    assert table.claim("c") is None
    stale = KeyTable(ttl_s=0)
    assert stale.claim("k") is None
    stale.finish("k", 200, [], b"x")
    assert stale.claim("k") is None  # expired: a new request


class Writes:
    """An ASGI app counting writes; each write waits for ``gate`` and answers ``status``."""

    def __init__(self) -> None:
        self.applied = 0
        self.gate = asyncio.Event()
        self.status = 201
        self.entered = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.entered += 1
        await self.gate.wait()
        self.applied += 1
        body = json.dumps({"n": self.applied}).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def test_a_twin_waits_for_the_first_and_gets_its_answer(table: Table) -> None:
    app = Writes()
    transport = httpx.ASGITransport(app=IdempotencyMiddleware(app, table))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        first = asyncio.create_task(http.post("/w", headers={"Idempotency-Key": "k"}))
        while app.entered == 0:  # the first holds the key before its twin is sent
            await asyncio.sleep(0.01)
        twin = asyncio.create_task(http.post("/w", headers={"Idempotency-Key": "k"}))
        for _ in range(20):
            await asyncio.sleep(0.01)  # the store's claim runs on a worker thread
        assert not first.done() and not twin.done() and app.applied == 0
        app.gate.set()
        one, two = await first, await twin
        assert app.applied == 1
        assert one.json() == two.json() == {"n": 1}
        assert two.headers["idempotent-replayed"] == "true"
        assert "idempotent-replayed" not in one.headers
        fresh = await http.post("/w", headers={"Idempotency-Key": "other"})
        unkeyed = await http.post("/w")
        assert (fresh.json(), unkeyed.json(), app.applied) == ({"n": 2}, {"n": 3}, 3)


async def test_a_failed_first_request_lets_the_retry_run(table: Table) -> None:
    app = Writes()
    app.gate.set()
    app.status = 503
    transport = httpx.ASGITransport(app=IdempotencyMiddleware(app, table))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        failed = await http.post("/w", headers={"Idempotency-Key": "k"})
        app.status = 201
        retried = await http.post("/w", headers={"Idempotency-Key": "k"})
    assert (failed.status_code, retried.status_code, app.applied) == (503, 201, 2)
    assert "idempotent-replayed" not in retried.headers
