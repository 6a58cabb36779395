"""Keys over REST: the 401 challenge, namespace isolation past the path, key routes, the
admin audit log, revocation across two apps on one store file, and running without keys."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from server_helpers import ADMIN_HEADERS, ADMIN_KEY, assert_error

from engramdb import HashEmbedder, Memory, Settings, ValidationError
from engramdb.cli import cli
from engramdb.server import create_app, run
from engramdb.server.auth import announce_admin_key, check_bind, is_loopback

A, B = "/v1/namespaces/alpha", "/v1/namespaces/bravo"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def open_app(db: Path | str, **settings: Any) -> tuple[Memory, Any]:
    url = db if isinstance(db, str) else f"sqlite:///{db}"
    s = Settings(url=url, embedder="hash", hash_dim=64, **settings)
    mem = Memory(settings=s, embedder=HashEmbedder(64))
    return mem, create_app(mem)


def client_of(app: Any, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://engram.test", headers=headers)


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    mem, app = open_app(tmp_path / "keys.db", admin_key=ADMIN_KEY)
    async with client_of(app, ADMIN_HEADERS) as c:
        yield c
    mem.close()


async def make_key(admin: httpx.AsyncClient, namespace: str, read_only: bool = False) -> str:
    resp = await admin.post("/v1/admin/keys", json={"namespace": namespace, "read_only": read_only})
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert set(body) == {"id", "key", "namespace", "read_only", "admin", "created_at"}
    assert (body["namespace"], body["read_only"]) == (namespace, read_only)
    key: str = body["key"]
    return key


async def test_missing_malformed_and_wrong_keys_get_401_with_a_challenge(
    admin: httpx.AsyncClient,
) -> None:
    for headers, invalid in (
        ({"Authorization": ""}, False),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, True),
        ({"Authorization": "Bearer"}, True),
        (bearer("ek_0123456789abcdef_" + "A" * 43), True),
        (bearer(ADMIN_KEY + "x"), True),
    ):
        resp = await admin.get(f"{A}/records", headers=headers)
        assert_error(resp, 401, "authentication_failed")
        challenge = resp.headers["www-authenticate"]
        assert challenge.startswith('Bearer realm="engramdb"')
        assert ('error="invalid_token"' in challenge) is invalid
        assert ADMIN_KEY not in resp.text
    for path in ("/health", "/openapi.json", "/docs"):
        assert (await admin.get(path, headers={"Authorization": ""})).status_code == 200
    spec = (await admin.get("/openapi.json")).json()
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert spec["security"] == [{"bearer": []}]
    assert spec["paths"]["/health"]["get"]["security"] == []


async def test_a_namespace_key_reaches_nothing_past_its_namespace(
    admin: httpx.AsyncClient,
) -> None:
    for ns in ("alpha", "bravo"):
        for i in range(3):
            r = await admin.post(
                f"/v1/namespaces/{ns}/records",
                json={"text": f"{ns} note {i}", "user_id": f"{ns}-user"},
            )
            assert r.status_code == 200
    key = bearer(await make_key(admin, "alpha"))
    # Look-alike namespaces in the path are other namespaces.
    for path in (f"{A}%0A/records", "/v1/namespaces/Alpha/records", f"{B}/records"):
        assert_error(await admin.get(path, headers=key), 403, "permission_denied")
    # A cursor made by another namespace's listing pages the key's own namespace only.
    page = (await admin.get(f"{B}/records", params={"limit": 1})).json()
    assert page["next_cursor"]
    mine = await admin.get(f"{A}/records", params={"cursor": page["next_cursor"]}, headers=key)
    assert mine.status_code == 200 and "bravo" not in mine.text
    # Filters naming the other namespace's user or ids find nothing of it.
    bravo_ids = [r["id"] for r in page["records"]]
    found = await admin.post(f"{A}/records/get-many", json={"ids": bravo_ids}, headers=key)
    assert found.json() == {"records": []}
    count = await admin.post(f"{A}/records/count", json={"user_id": "bravo-user"}, headers=key)
    assert count.json() == {"count": 0}
    hits = await admin.post(f"{A}/search", json={"query": "bravo note", "top_k": 10}, headers=key)
    assert hits.status_code == 200 and "bravo" not in hits.text
    assert (await admin.get("/v1/namespaces", headers=key)).json() == {"namespaces": {"alpha": 3}}
    stats = (await admin.get(f"{A}/stats", headers=key)).json()
    assert stats["namespace_stats"]["records"] == 3 and "records" not in stats["store"]


async def test_a_read_only_key_reads_everything_and_writes_nothing(
    admin: httpx.AsyncClient,
) -> None:
    rid = (await admin.post(f"{A}/records", json={"text": "read me"})).json()["results"][0]["id"]
    ro = bearer(await make_key(admin, "alpha", read_only=True))
    assert (await admin.get(f"{A}/records/{rid}", headers=ro)).status_code == 200
    assert (await admin.post(f"{A}/search", json={"query": "read"}, headers=ro)).status_code == 200
    assert (await admin.post(f"{A}/records/count", json={}, headers=ro)).json() == {"count": 1}
    got = await admin.post(f"{A}/records/get-many", json={"ids": [rid]}, headers=ro)
    assert [r["id"] for r in got.json()["records"]] == [rid]
    for method, path, body in (
        ("POST", f"{A}/records", {"text": "no"}),
        ("PATCH", f"{A}/records/{rid}", {"add_tags": ["x"]}),
        ("DELETE", f"{A}/records/{rid}", None),
        ("POST", f"{A}/records/delete-all", {"all": True}),
        ("POST", f"{A}/forget", {"namespace": True}),
        ("PUT", f"{A}/threads/t/slots", {"values": {"a": 1}}),
    ):
        resp = await admin.request(method, path, json=body, headers=ro)
        assert_error(resp, 403, "permission_denied")
        assert "read-only" in resp.json()["message"]
    assert (await admin.get(f"{A}/records/{rid}")).json()["tags"] == []


async def test_a_key_for_an_empty_namespace_works_and_admin_keys_can_be_made(
    admin: httpx.AsyncClient,
) -> None:
    key = bearer(await make_key(admin, "brand-new"))
    ns = "/v1/namespaces/brand-new"
    assert (await admin.get("/v1/namespaces", headers=key)).json() == {
        "namespaces": {"brand-new": 0}
    }
    assert (await admin.get(f"{ns}/records", headers=key)).json()["records"] == []
    assert (
        await admin.post(f"{ns}/records", json={"text": "first"}, headers=key)
    ).status_code == 200
    made = await admin.post("/v1/admin/keys", json={"admin": True})
    assert made.status_code == 201 and made.json()["admin"] and made.json()["namespace"] is None
    second_admin = bearer(made.json()["key"])
    assert (await admin.get("/v1/admin/keys", headers=second_admin)).status_code == 200
    listed = (await admin.get("/v1/admin/keys")).json()["keys"]
    assert {k["namespace"] for k in listed} == {"brand-new", None}
    assert all("key" not in k and "secret_hash" not in k for k in listed)
    for body in (
        {"namespace": "bad namespace"},
        {"namespace": "ns\n"},
        {},
        {"admin": True, "read_only": True},
        {"admin": True, "namespace": "x"},
        {"namespace": "x", "extra": 1},
        {"namespace": "x", "read_only": "maybe"},
    ):
        assert_error(await admin.post("/v1/admin/keys", json=body), 422)
    assert_error(await admin.delete("/v1/admin/keys/0123456789abcdef"), 404, "not_found")
    assert_error(await admin.delete("/v1/admin/keys/nope"), 404, "not_found")


async def test_destructive_calls_leave_admin_audit_entries(
    admin: httpx.AsyncClient, tmp_path: Path
) -> None:
    key_resp = await admin.post("/v1/admin/keys", json={"namespace": "alpha"})
    key_id, key = key_resp.json()["id"], bearer(key_resp.json()["key"])
    await admin.post(f"{A}/records", json={"text": "to forget", "user_id": "u1"})
    await admin.post(f"{A}/threads/t1/events", json={"action": "noted"})
    assert (await admin.post(f"{A}/forget", json={"user_id": "u1"}, headers=key)).status_code == 200
    resp = await admin.post(f"{A}/records/delete-all", json={"all": True})
    assert resp.status_code == 200
    assert_error(await admin.post("/v1/admin/restore", content=b"x", headers=key), 403)
    backup = await admin.post("/v1/admin/backup")
    restored = await admin.post(
        "/v1/admin/restore",
        content=backup.content,
        headers={"content-type": "application/octet-stream"},
    )
    assert restored.status_code == 200
    garbage = await admin.post(
        "/v1/admin/restore", content=b"not a backup", headers={"content-type": "x/y"}
    )
    assert garbage.status_code >= 400 and garbage.status_code not in (401, 403)
    assert (await admin.delete(f"/v1/admin/keys/{key_id}")).status_code == 200
    entries = (await admin.get("/v1/admin/audit")).json()["entries"]
    got = [(e["key_id"], e["action"], e["target"], e["result"]) for e in reversed(entries)]
    assert got == [
        ("env-admin", "create_key", None, "ok"),
        (key_id, "forget", "alpha", "ok"),
        ("env-admin", "delete_all", "alpha", "ok"),
        (key_id, "restore", None, "denied"),
        ("env-admin", "restore", None, "ok"),
        ("env-admin", "restore", None, "failed"),  # refused upload: 4xx today, never ok
        ("env-admin", "revoke_key", key_id, "ok"),
    ]
    assert entries[-1]["details"]["created_key_id"] == key_id
    assert all(e["at"] and isinstance(e["status"], int) for e in entries)
    # Kept apart from the namespace's own event log.
    events = (await admin.get(f"{A}/threads/t1/events")).json()["events"]
    assert [e["action"] for e in events] == ["noted"]
    page = (await admin.get("/v1/admin/audit", params={"limit": 2})).json()
    older = await admin.get("/v1/admin/audit", params={"before": page["next_before"]})
    assert [e["seq"] for e in page["entries"] + older.json()["entries"]] == [
        e["seq"] for e in entries
    ]


async def test_a_revocation_holds_at_once_in_another_app_on_the_same_store(
    store_url: str,
) -> None:
    """Two apps with their own connections to one store (SQLite file, PostgreSQL schema)."""
    mem1, app1 = open_app(store_url, admin_key=ADMIN_KEY)
    mem2, app2 = open_app(store_url, admin_key=ADMIN_KEY)
    try:
        async with client_of(app1, ADMIN_HEADERS) as one, client_of(app2) as two:
            made = (await one.post("/v1/admin/keys", json={"namespace": "alpha"})).json()
            key = bearer(made["key"])
            assert (await two.get(f"{A}/records", headers=key)).status_code == 200
            assert (await one.delete(f"/v1/admin/keys/{made['id']}")).status_code == 200
            resp = await two.get(f"{A}/records", headers=key)
            assert_error(resp, 401, "authentication_failed")
            assert "revoked" in resp.json()["message"]
    finally:
        mem1.close()
        mem2.close()


async def test_without_keys_every_caller_is_admin_and_audited_as_such(tmp_path: Path) -> None:
    mem, app = open_app(tmp_path / "open.db", auth="off")
    try:
        async with client_of(app) as c:
            assert (await c.post(f"{A}/records", json={"text": "open"})).status_code == 200
            assert (await c.post(f"{A}/forget", json={"namespace": True})).status_code == 200
            entries = (await c.get("/v1/admin/audit")).json()["entries"]
            assert [(e["key_id"], e["action"]) for e in entries] == [("auth-off", "forget")]
    finally:
        mem.close()


def test_serving_without_keys_is_refused_off_loopback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.1", "example.com", ""))
    off = Settings(url=f"sqlite:///{tmp_path / 'x.db'}", auth="off")
    for host in ("0.0.0.0", "::", "192.168.1.10"):
        with pytest.raises(ValidationError, match="loopback"):
            check_bind(off, host)
        with pytest.raises(ValidationError, match="loopback"):
            run(off, host, 0, 1)  # refused before anything binds
    check_bind(off, "127.0.0.1")
    assert "authentication is OFF" in capsys.readouterr().err
    check_bind(Settings(url=f"sqlite:///{tmp_path / 'x.db'}"), "0.0.0.0")  # keys on: fine


def test_the_cli_refuses_to_serve_without_keys_on_a_public_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENGRAM_AUTH", "off")
    result = CliRunner().invoke(
        cli,
        ["--no-model", "--url", f"sqlite:///{tmp_path / 'c.db'}", "serve", "--host", "0.0.0.0"],
    )
    assert result.exit_code == 2, result.output
    assert "loopback" in result.stderr


async def test_the_first_start_prints_an_admin_key_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mem, app = open_app(tmp_path / "first.db")
    try:
        made = announce_admin_key(mem.settings, app.state.keys, "http://127.0.0.1:8080")
        assert made is not None
        err = capsys.readouterr().err
        assert made.key in err and "curl -H" in err
        assert announce_admin_key(mem.settings, app.state.keys, "http://x") is None
        assert capsys.readouterr().err == ""
        async with client_of(app, bearer(made.key)) as c:
            assert (await c.get("/v1/admin/keys")).json()["keys"][0]["admin"] is True
        off = mem.settings.model_copy(update={"auth": "off"})
        assert announce_admin_key(off, app.state.keys, "http://x") is None
    finally:
        await asyncio.to_thread(mem.close)


async def test_a_store_that_fails_the_key_lookup_answers_503_not_500(tmp_path: Path) -> None:
    mem, app = open_app(tmp_path / "closed.db", admin_key=ADMIN_KEY)
    key = app.state.keys.create("alpha").key
    mem.close()  # a real failure: every store read now raises StoreError
    async with client_of(app, bearer(key)) as c:
        resp = await c.get(f"{A}/records")
    body = assert_error(resp, 503, "store_error")
    assert "WWW-Authenticate" not in resp.headers and key not in str(body)
