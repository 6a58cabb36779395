"""Status codes and error bodies: one status per error, one body shape, nothing leaked."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from server_helpers import ADMIN_HEADERS, MAX_TEXT, assert_error, with_admin_key

from engramdb import HashEmbedder, Memory
from engramdb.server import create_app

NS = "/v1/namespaces/errs"
SERVER_OWNED = {
    "version": 7,
    "created_at": "2020-01-01T00:00:00Z",
    "updated_at": "2020-01-01T00:00:00Z",
    "content_hash": "0" * 64,
    "embedding": [0.1, 0.2],
    "namespace": "other",
    "_internal": 1,
}


async def add_one(client: httpx.AsyncClient, text: str = "a fact worth keeping") -> str:
    resp = await client.post(f"{NS}/records", json={"text": text})
    assert resp.status_code == 200, resp.text
    rid: str = resp.json()["results"][0]["id"]
    return rid


async def test_not_found(client: httpx.AsyncClient) -> None:
    body = assert_error(await client.get(f"{NS}/records/no-such-id"), 404, "not_found")
    assert body["details"] == {"id": "no-such-id"}
    assert_error(await client.patch(f"{NS}/records/no-such-id", json={"text": "x"}), 404)
    assert_error(await client.get(f"{NS}/records/no-such-id/history"), 404, "not_found")
    assert_error(await client.get("/v1/no/such/route"), 404, "not_found")
    assert_error(await client.put("/health"), 405, "method_not_allowed")


async def test_stale_expected_version_is_409(client: httpx.AsyncClient) -> None:
    rid = await add_one(client)
    ok = await client.patch(f"{NS}/records/{rid}", json={"importance": 0.5, "expected_version": 1})
    assert ok.status_code == 200 and ok.json()["version"] == 2
    stale = await client.patch(
        f"{NS}/records/{rid}", json={"importance": 0.9, "expected_version": 1}
    )
    body = assert_error(stale, 409, "conflict")
    assert body["details"]["version"] == 2
    assert (await client.get(f"{NS}/records/{rid}")).json()["importance"] == 0.5
    reused = await client.post(f"{NS}/records", json={"text": "other text", "id": rid})
    assert_error(reused, 409, "conflict")


async def test_text_over_max_text_bytes_is_413(client: httpx.AsyncClient) -> None:
    body = assert_error(
        await client.post(f"{NS}/records", json={"text": "é" * MAX_TEXT}), 413, "limit_exceeded"
    )
    assert body["details"]["limit"] == "max_text_bytes"
    rid = await add_one(client)
    assert_error(
        await client.patch(f"{NS}/records/{rid}", json={"text": "x" * (MAX_TEXT + 1)}), 413
    )
    msg = {"messages": [{"role": "user", "content": "y" * (MAX_TEXT + 1)}]}
    assert_error(await client.post(f"{NS}/threads/t/messages", json=msg), 413)
    assert (await client.post(f"{NS}/records/count", json={})).json()["count"] == 1


async def test_unknown_fields_are_422(client: httpx.AsyncClient) -> None:
    body = assert_error(
        await client.post(f"{NS}/records", json={"text": "x", "colour": "red"}),
        422,
        "validation_error",
    )
    assert body["details"]["errors"][0]["loc"] == ["body", "colour"]
    assert_error(await client.post(f"{NS}/search", json={"query": "x", "k": 3}), 422)
    assert_error(await client.put(f"{NS}/threads/t/slots", json={"values": {}, "v": 1}), 422)
    assert_error(await client.post(f"{NS}/records/count", json={"where": {}}), 422)
    assert_error(await client.post("/v1/admin/doctor", json={"fix": True}), 422)
    msg = {"messages": [{"role": "user", "content": "hi", "tool_calls": []}]}
    assert_error(await client.post(f"{NS}/threads/t/messages", json=msg), 422)


@pytest.mark.parametrize("field", sorted(SERVER_OWNED))
async def test_server_owned_fields_are_not_writable(client: httpx.AsyncClient, field: str) -> None:
    value = SERVER_OWNED[field]
    assert_error(await client.post(f"{NS}/records", json={"text": "x", field: value}), 422)
    batch = {"items": [{"text": "y", field: value}]}
    assert_error(await client.post(f"{NS}/records", json=batch), 422)
    rid = await add_one(client)
    before = (await client.get(f"{NS}/records/{rid}")).json()
    assert_error(await client.patch(f"{NS}/records/{rid}", json={field: value}), 422)
    after = (await client.get(f"{NS}/records/{rid}")).json()
    assert after == before
    assert (await client.post(f"{NS}/records/count", json={})).json()["count"] == 1


async def test_bad_filters_are_422(client: httpx.AsyncClient) -> None:
    await add_one(client)
    bad_op = json.dumps({"user_id": {"$regex": ".*"}})
    body = assert_error(
        await client.get(f"{NS}/records", params={"filter": bad_op}), 422, "validation_error"
    )
    assert "$regex" in body["message"]
    for flt in (
        {"nope": 1},
        {"metadata.a'; DROP TABLE records; --": 1},
        {"$or": "x"},
        {"occurred_at": {"$gt": "2020-01-01T00:00:00"}},  # naive datetime
    ):
        assert_error(await client.post(f"{NS}/records/count", json={"filter": flt}), 422)
        search = {"query": "fact", "filter": flt}
        assert_error(await client.post(f"{NS}/search", json=search), 422)
    assert_error(await client.get(f"{NS}/records", params={"filter": "{not json"}), 422)
    assert_error(await client.get(f"{NS}/records", params={"filter": "[1, 2]"}), 422)
    deep = "[" * 5000 + "]" * 5000
    assert_error(await client.get(f"{NS}/records", params={"filter": deep}), 422)
    assert (await client.post(f"{NS}/records/count", json={})).json()["count"] == 1


async def test_malformed_bodies_and_bad_values(client: httpx.AsyncClient) -> None:
    headers = {"content-type": "application/json"}
    for raw in (
        b"{not json",
        b"",
        b"[1, 2",
        b'{"text": "x"',
        "\udcff".encode("utf-8", "surrogatepass"),
    ):
        resp = await client.post(f"{NS}/records", content=raw, headers=headers)
        assert_error(resp, 422, "validation_error")
    cases = [
        ("post", f"{NS}/records", {"text": 12}),
        ("post", f"{NS}/records", {}),
        ("post", f"{NS}/records", {"text": "a", "items": ["b"]}),
        ("post", f"{NS}/records", {"items": []}),
        ("post", f"{NS}/records", {"text": "   "}),
        ("post", f"{NS}/records", {"text": "a", "importance": 7}),
        ("post", f"{NS}/records", {"text": "a", "metadata": [1]}),
        ("post", f"{NS}/records", {"text": "a", "occurred_at": "yesterday"}),
        ("post", f"{NS}/records", {"text": "a", "type": "Not A Type"}),
        ("post", f"{NS}/search", {"query": "a", "top_k": 0}),
        ("post", f"{NS}/search", {"query": "a", "mode": "psychic"}),
        ("post", f"{NS}/search", {"query": "a", "cursor": "garbage"}),
        ("put", f"{NS}/threads/t/slots", {"values": {}}),
        ("patch", f"{NS}/records/some-id", {}),
        ("post", "/v1/admin/reembed", {"embedder": "gpt-9"}),
    ]
    for method, url, payload in cases:
        assert_error(await client.request(method, url, json=payload), 422)
    assert_error(await client.get(f"{NS}/records", params={"limit": "many"}), 422)
    assert_error(await client.get(f"{NS}/records", params={"limit": 0}), 422)
    assert_error(await client.get(f"{NS}/records", params={"cursor": "bm90IGEgY3Vyc29y"}), 422)
    assert_error(await client.get("/v1/namespaces/bad%20ns/records"), 422, "validation_error")
    huge = await client.post(f"{NS}/search", json={"query": "a", "top_k": 10**9})
    assert_error(huge, 413, "limit_exceeded")
    assert (await client.post(f"{NS}/records/count", json={})).json()["count"] == 0


SECRET = 'SELECT secret FROM records WHERE x = 1; File "/srv/app.py"'


class BrokenTokenizer(HashEmbedder):
    """A third-party embedder with a bug that raises an unexpected exception."""

    def count_tokens(self, text: str) -> int:
        raise RuntimeError(SECRET)


@pytest.fixture
async def broken_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    """A service whose engine has a bug: every add raises an unexpected RuntimeError."""
    mem = Memory(f"sqlite:///{tmp_path / 'broken.db'}", embedder=HashEmbedder(64))

    def buggy_add(*args: object, **kwargs: object) -> None:
        raise RuntimeError(SECRET)

    monkeypatch.setattr(mem._engine, "add", buggy_add)
    app = create_app(mem, with_admin_key(mem.settings))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://engram.test", headers=ADMIN_HEADERS
    ) as c:
        yield c
    mem.close()


async def test_unexpected_errors_are_500_without_internals(
    broken_client: httpx.AsyncClient,
) -> None:
    resp = await broken_client.post(f"{NS}/records", json={"text": "hello"})
    body = assert_error(resp, 500, "internal_error")
    assert body["details"] == {}
    assert "secret" not in resp.text and "RuntimeError" not in resp.text
    # The service keeps answering after the failure.
    assert (await broken_client.get(f"{NS}/records")).status_code == 200


async def test_embedder_bug_is_502_and_writes_nothing(tmp_path: Path) -> None:
    """A third-party embedder raising is the embedder's failure (502), not ours (500)."""
    mem = Memory(f"sqlite:///{tmp_path / 'tok.db'}", embedder=BrokenTokenizer(64))
    app = create_app(mem, with_admin_key(mem.settings))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://engram.test", headers=ADMIN_HEADERS
    ) as c:
        resp = await c.post(f"{NS}/records", json={"text": "hello"})
        assert_error(resp, 502, "embedding_error")
        assert "secret" not in resp.text  # third-party text stays in the server log
        assert (await c.post(f"{NS}/records/count", json={})).json()["count"] == 0
    mem.close()
