"""Admission control: heavy and light pools, per-key limits, 429/503 with Retry-After.

The pool and key tests drive the real middleware around a tiny ASGI app whose calls wait
on events the test sets: which call holds a slot is decided by the test, never by timing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from server_helpers import assert_error

from engramdb import RateLimitedError, Settings
from engramdb.server.admission import AdmissionMiddleware, KeyLimits, classify

NS = "/v1/namespaces/adm"


class Gate:
    """An ASGI app: each call reports it started, then waits for ``release``."""

    def __init__(self) -> None:
        self.started: asyncio.Queue[str] = asyncio.Queue()
        self.release = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.started.put(scope["path"])
        if scope["path"] != "/health":
            await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def _settings(**kw: Any) -> Settings:
    base = {"heavy_concurrency": 1, "heavy_queue": 1, "light_concurrency": 2, "light_queue": 0}
    return Settings(url="sqlite:///unused.db", **{**base, **kw})


@pytest.fixture
async def gated() -> AsyncIterator[tuple[Gate, httpx.AsyncClient]]:
    gate = Gate()
    app = AdmissionMiddleware(gate, _settings())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://adm.test") as c:
        yield gate, c


async def test_heavy_calls_queue_then_are_refused_while_light_calls_run(
    gated: tuple[Gate, httpx.AsyncClient],
) -> None:
    gate, c = gated
    running = asyncio.create_task(c.post("/v1/admin/export"))
    assert await gate.started.get() == "/v1/admin/export"
    queued = asyncio.create_task(c.post("/v1/admin/backup"))
    while not queued.done() and app_waiting(c) < 1:
        await asyncio.sleep(0)
    refused = await c.post("/v1/admin/reembed")
    body = assert_error(refused, 503, "overloaded")
    assert body["details"]["pool"] == "heavy" and refused.headers["retry-after"] == "1"
    # A light call is not behind the heavy ones.
    light = asyncio.create_task(c.get(f"{NS}/records/x"))
    assert await gate.started.get() == f"{NS}/records/x"
    # /health never waits, even with both pools busy.
    other_light = asyncio.create_task(c.get(f"{NS}/stats"))
    assert await gate.started.get() == f"{NS}/stats"
    assert_error(await c.get(f"{NS}/records/y"), 503, "overloaded")
    assert (await c.get("/health")).status_code == 200
    gate.release.set()
    for task in (running, queued, light, other_light):
        assert (await task).status_code == 200


def app_waiting(c: httpx.AsyncClient) -> int:
    transport = c._transport
    assert isinstance(transport, httpx.ASGITransport)
    app = transport.app
    assert isinstance(app, AdmissionMiddleware)
    return app.heavy.waiting


async def test_per_key_concurrency_is_429_and_other_keys_go_on() -> None:
    gate = Gate()
    app = AdmissionMiddleware(gate, _settings(key_concurrency=1, light_concurrency=8))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://adm.test") as c:
        alice = {"authorization": "Bearer alice"}
        first = asyncio.create_task(c.get(f"{NS}/records/a", headers=alice))
        await gate.started.get()
        refused = await c.get(f"{NS}/records/b", headers=alice)
        body = assert_error(refused, 429, "rate_limited")
        assert body["details"]["limit"] == "key_concurrency" and "retry-after" in refused.headers
        bob = asyncio.create_task(c.get(f"{NS}/records/c", headers={"authorization": "Bearer bob"}))
        await gate.started.get()
        gate.release.set()
        assert (await first).status_code == 200 and (await bob).status_code == 200
        assert (await c.get(f"{NS}/records/d", headers=alice)).status_code == 200


def test_the_token_bucket_refuses_past_its_burst_and_refills() -> None:
    now = [100.0]
    keys = KeyLimits(concurrency=100, rate=2.0, burst=3, clock=lambda: now[0])
    for _ in range(3):
        keys.enter("k")
        keys.leave("k")
    with pytest.raises(RateLimitedError) as err:
        keys.enter("k")
    assert err.value.details["limit"] == "key_rate_per_s"
    assert err.value.details["retry_after"] == pytest.approx(0.5)
    keys.enter("other")  # another key has its own bucket
    now[0] += 0.5
    keys.enter("k")


async def test_sequential_calls_with_the_defaults_never_see_429(
    client: httpx.AsyncClient,
) -> None:
    statuses = set()
    for i in range(300):
        resp = await client.post(f"{NS}/records", json={"text": f"sequential {i}"})
        statuses.add(resp.status_code)
        statuses.add((await client.get(f"{NS}/records", params={"limit": 1})).status_code)
    assert statuses == {200}


async def _receive_of(body: bytes) -> Any:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


@pytest.mark.parametrize(
    "method,path,body,length,heavy",
    [
        ("POST", "/v1/admin/export", b"{}", 2, True),
        ("POST", f"{NS}/forget", b"{}", 2, True),
        ("POST", f"{NS}/records/delete-all", b"{}", 2, True),
        ("POST", f"{NS}/search", b'{"query": "x", "offset": 5000}', 30, True),
        ("POST", f"{NS}/search", b'{"query": "x", "offset": 10}', 30, False),
        ("POST", f"{NS}/search", b'{"query": "\\"offset\\": 9999"}', 30, False),
        ("POST", f"{NS}/records", b"{}", 10_000_000, True),
        ("POST", f"{NS}/records", b"{}", 200, False),
        ("GET", f"{NS}/records/x", b"", 0, False),
    ],
)
async def test_classification(
    method: str, path: str, body: bytes, length: int, heavy: bool
) -> None:
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [(b"content-length", str(length).encode())],
    }
    receive = await _receive_of(body)
    is_heavy, replay = await classify(scope, receive)
    assert is_heavy is heavy
    first = await replay()
    assert first["type"] == "http.request" and first["body"] == body  # replayed unchanged
