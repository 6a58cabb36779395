"""The full access matrix: every REST route x every kind of caller, over the real app.

Routes are enumerated from ``app.routes`` (what the router serves, not a list kept by hand),
and every route must have a request in :data:`CALLS`: a route added later fails here until
its row says what it takes and what a namespace key may do with it.

Callers: no key, a wrong key, the other namespace's key, a read-only key of the namespace,
the namespace's own key, the admin key. Two namespaces hold data with their own secret
words; no answer to a namespace key (or to a caller with no valid key) may carry the other
namespace's name or secret word.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_helpers import ADMIN_KEY

from engramdb import HashEmbedder, Memory, Settings
from engramdb.server import create_app
from engramdb.server.admin_page import BEARER_NONCE, csrf_token

ALPHA, BRAVO = "alpha", "bravo"
SECRET = {ALPHA: "ALPHASECRET", BRAVO: "BRAVOSECRET"}
OTHER = {ALPHA: BRAVO, BRAVO: ALPHA}
WRONG_KEY = "ek_00000000000000ff_" + "A" * 43  # well-formed, in no store
OPEN = {"/health", "/ready", "/openapi.json", "/docs", "/admin/login"}
READ_POSTS = {
    "/v1/namespaces/{ns}/search",
    "/v1/namespaces/{ns}/records/count",
    "/v1/namespaces/{ns}/records/get-many",
    "/v1/namespaces/{ns}/summarize",
}
CALLERS = ("no key", "wrong key", "other namespace's key", "read-only key", "own key", "admin")


def served_routes(app: Any) -> list[tuple[str, str]]:
    """Every (method, path template) the app serves, from ``app.routes``.

    FastAPI 0.16x keeps included routers as wrappers whose effective routes carry the full
    path; older versions list the routes themselves. Both are walked.
    """
    out: set[tuple[str, str]] = set()

    def walk(routes: Any) -> None:
        for route in routes:
            contexts = getattr(route, "effective_route_contexts", None)
            if contexts is not None:
                for ctx in contexts():
                    out.update((m, ctx.path) for m in ctx.methods or ())
            elif getattr(route, "methods", None):
                out.update((m, route.path) for m in route.methods)
            elif hasattr(route, "routes"):
                walk(route.routes)
            else:  # a mount or anything without methods: named so the table must cover it
                out.add(("*", str(getattr(route, "path", route))))

    walk(app.routes)
    return sorted((m, p) for m, p in out if m != "HEAD")


@dataclass
class World:
    """Two namespaces with data, the files admin calls take, and the app's key service."""

    mem: Memory
    app: Any
    backup: bytes
    export: bytes

    def record(self, ns: str) -> str:
        """A fresh record of ``ns`` (a call that deletes or changes one gets its own)."""
        return self.mem.with_namespace(ns).add(f"{SECRET[ns]} note {uuid.uuid4().hex}")[0].id

    def key_id(self) -> str:
        """A fresh throwaway key to revoke."""
        return str(self.app.state.keys.create("throwaway").row.id)


Body = Callable[[World, str], dict[str, Any]]


def _json(body: dict[str, Any]) -> Body:
    return lambda w, ns: {"json": body}


def _none(w: World, ns: str) -> dict[str, Any]:
    return {}


def _form(**fields: str) -> Body:
    """A form of the admin page, with the CSRF token of an admin sending the Bearer header
    (a caller refused before the form is read never gets that far)."""
    return lambda w, ns: {"data": {**fields, "csrf": csrf_token(ADMIN_KEY, BEARER_NONCE)}}


OCTETS = {"content-type": "application/octet-stream"}
NOT_REFUSED = 0  # a call the key layer lets through, whatever the mount behind it answers
NDJSON = {"content-type": "application/x-ndjson"}
# (method, template) -> (status of a call that is allowed, the request's parts)
CALLS: dict[tuple[str, str], tuple[int, Body]] = {
    ("POST", "/v1/namespaces/{ns}/records"): (200, _json({"text": "a new note"})),
    ("GET", "/v1/namespaces/{ns}/records"): (200, _none),
    ("POST", "/v1/namespaces/{ns}/records/get-many"): (
        200,
        lambda w, ns: {"json": {"ids": [f"{ns}-r1", f"{OTHER[ns]}-r1"]}},
    ),
    ("POST", "/v1/namespaces/{ns}/records/count"): (200, _json({})),
    ("POST", "/v1/namespaces/{ns}/records/delete-all"): (200, _json({"all": True})),
    ("GET", "/v1/namespaces/{ns}/records/{record_id}"): (200, _none),
    ("PATCH", "/v1/namespaces/{ns}/records/{record_id}"): (200, _json({"add_tags": ["changed"]})),
    ("DELETE", "/v1/namespaces/{ns}/records/{record_id}"): (204, _none),
    ("GET", "/v1/namespaces/{ns}/records/{record_id}/history"): (200, _none),
    ("POST", "/v1/namespaces/{ns}/search"): (200, _json({"query": "note", "top_k": 50})),
    ("POST", "/v1/namespaces/{ns}/threads/{thread_id}/messages"): (
        200,
        _json({"messages": [{"role": "user", "content": "hi"}]}),
    ),
    ("POST", "/v1/namespaces/{ns}/threads/{thread_id}/events"): (201, _json({"action": "x"})),
    ("GET", "/v1/namespaces/{ns}/threads/{thread_id}/events"): (200, _none),
    ("GET", "/v1/namespaces/{ns}/threads/{thread_id}/snapshot"): (200, _none),
    ("GET", "/v1/namespaces/{ns}/threads/{thread_id}/slots"): (200, _none),
    ("PUT", "/v1/namespaces/{ns}/threads/{thread_id}/slots"): (200, _json({"values": {"a": 1}})),
    ("POST", "/v1/namespaces/{ns}/forget"): (200, lambda w, ns: {"json": {"user_id": f"{ns}-u"}}),
    ("GET", "/v1/namespaces/{ns}/stats"): (200, _none),
    ("GET", "/v1/namespaces"): (200, _none),
    ("GET", "/health"): (200, _none),
    ("GET", "/openapi.json"): (200, _none),
    ("GET", "/docs"): (200, _none),
    ("GET", "/ready"): (200, _none),
    ("GET", "/metrics"): (200, _none),  # keyed like an admin route unless metrics_public
    # MCP over HTTP: any key passes the key layer (NOT_REFUSED); each tool call then runs in
    # the key's own namespace (tests/server/test_mcp.py checks the tools' side).
    ("*", "/mcp"): (
        NOT_REFUSED,
        lambda w, ns: {
            "json": {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            "headers": {"accept": "application/json, text/event-stream"},
        },
    ),
    # Entities: none exist in this world (extraction is off), so an allowed read is a 404.
    ("GET", "/v1/namespaces/{ns}/entities"): (200, _none),
    ("GET", "/v1/namespaces/{ns}/entities/{entity_id}"): (404, _none),
    ("GET", "/v1/namespaces/{ns}/entities/{entity_id}/relationships"): (404, _none),
    ("GET", "/v1/namespaces/{ns}/entities/{entity_id}/records"): (404, _none),
    ("GET", "/v1/namespaces/{ns}/entities/{entity_id}/history"): (404, _none),
    ("POST", "/v1/namespaces/{ns}/entities/{entity_id}/unlink"): (404, _none),
    # Consolidation: a write (read-only keys 403); no record here was merged or archived.
    ("POST", "/v1/namespaces/{ns}/consolidate"): (200, _json({"dry_run": False})),
    ("POST", "/v1/namespaces/{ns}/records/{record_id}/unmerge"): (404, _none),
    ("POST", "/v1/namespaces/{ns}/records/{record_id}/restore-archived"): (404, _none),
    ("GET", "/v1/namespaces/{ns}/archived"): (200, _none),
    ("POST", "/v1/namespaces/{ns}/summarize"): (200, _json({"text": "One note. Another."})),
    ("POST", "/v1/admin/doctor"): (200, _json({"repair": False})),
    ("POST", "/v1/admin/backup"): (200, _none),
    ("POST", "/v1/admin/restore"): (200, lambda w, ns: {"content": w.backup, "headers": OCTETS}),
    ("POST", "/v1/admin/export"): (200, lambda w, ns: {"json": {"namespace": ns}}),
    ("POST", "/v1/admin/import"): (
        200,
        lambda w, ns: {"content": w.export, "headers": NDJSON, "params": {"namespace": ns}},
    ),
    ("POST", "/v1/admin/reembed"): (200, _json({"embedder": "hash"})),
    ("POST", "/v1/admin/keys"): (201, lambda w, ns: {"json": {"namespace": ns}}),
    ("GET", "/v1/admin/keys"): (200, _none),
    ("DELETE", "/v1/admin/keys/{key_id}"): (200, _none),
    ("GET", "/v1/admin/audit"): (200, _none),
    # Side by side: this world runs without an old store, so an admin gets the 409 that
    # says so (tests/server/test_sidebyside_serve.py runs a server side by side).
    ("GET", "/v1/admin/read-from-new"): (409, _none),
    ("PUT", "/v1/admin/read-from-new"): (409, _json({"percent": 10})),
    # The admin page: the login answers everyone alike (it reads the form, not the header).
    ("GET", "/admin/login"): (200, _none),
    ("POST", "/admin/login"): (
        303,
        lambda w, ns: {
            "headers": {"cookie": "engram_login=t0k"},
            "data": {"key": ADMIN_KEY, "csrf": "t0k"},
        },
    ),
    ("POST", "/admin/logout"): (303, _form()),
    ("GET", "/admin"): (200, _none),
    ("GET", "/admin/memories"): (200, lambda w, ns: {"params": {"ns": ns, "q": "note"}}),
    ("GET", "/admin/memory"): (200, lambda w, ns: {"params": {"ns": ns, "id": f"{ns}-r1"}}),
    ("GET", "/admin/keys"): (200, _none),
    ("POST", "/admin/keys"): (200, lambda w, ns: _form(namespace=ns)(w, ns)),
    ("POST", "/admin/keys/{key_id}/revoke"): (303, _form()),
    ("POST", "/admin/read-from-new"): (409, _form(percent="10")),
}


def expected(caller: str, method: str, template: str, ok: int) -> int:
    """The status ``caller`` must get (the rules of the issue, stated independently)."""
    if template in OPEN:
        return ok
    if caller in ("no key", "wrong key"):
        return 401
    if caller == "admin":
        return ok
    if template in ("/v1/namespaces", "/mcp"):
        return ok  # any key: the answer (or tool call) is scoped to the key's namespace
    if not template.startswith("/v1/namespaces/{ns}"):
        return 403  # admin routes, /redoc, anything else
    if caller == "other namespace's key":
        return 403
    is_read = method == "GET" or template in READ_POSTS
    if caller == "read-only key" and not is_read:
        return 403
    return ok


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    settings = Settings(
        url=f"sqlite:///{tmp_path / 'matrix.db'}",
        embedder="hash",
        hash_dim=64,
        admin_key=ADMIN_KEY,
    )
    mem = Memory(settings=settings, embedder=HashEmbedder(64))
    for ns in (ALPHA, BRAVO):
        m = mem.with_namespace(ns)
        m.add(f"{SECRET[ns]} note one", user_id=f"{ns}-u", id=f"{ns}-r1")
        m.add_messages(f"{ns}-t", [{"role": "user", "content": f"{SECRET[ns]} hello"}])
        m.set_slots(f"{ns}-t", {"mood": SECRET[ns]})
        m.log_event(f"{ns}-t", "noted", {"word": SECRET[ns]})
    mem.backup(tmp_path / "backup.db")
    mem.with_namespace(ALPHA).export(tmp_path / "alpha.jsonl")
    app = create_app(mem)
    yield World(
        mem, app, (tmp_path / "backup.db").read_bytes(), (tmp_path / "alpha.jsonl").read_bytes()
    )
    mem.close()


def keys_for(world: World) -> dict[str, str | None]:
    """The Authorization value of each caller of namespace ``alpha``'s routes."""
    keys = world.app.state.keys
    return {
        "no key": None,
        "wrong key": WRONG_KEY,
        "other namespace's key": keys.create(BRAVO).key,
        "read-only key": keys.create(ALPHA, read_only=True).key,
        "own key": keys.create(ALPHA).key,
        "admin": ADMIN_KEY,
    }


def leaks(caller: str, body: bytes) -> list[str]:
    """What of another namespace ``body`` carries (a namespace-bound or keyless caller)."""
    if caller == "admin":
        return []
    bound = {"other namespace's key": BRAVO, "read-only key": ALPHA, "own key": ALPHA}
    mine = bound.get(caller)
    foreign = [ns for ns in (ALPHA, BRAVO) if ns != mine]
    words = [w for ns in foreign for w in (ns, SECRET[ns])]
    return [w for w in words if w.encode() in body]


def test_every_served_route_is_in_the_matrix(world: World) -> None:
    served = served_routes(world.app)
    missing = [r for r in served if r not in CALLS]
    assert not missing, f"routes without a row in CALLS (say what a key may do): {missing}"
    gone = [r for r in CALLS if r not in served]
    assert not gone, f"rows of CALLS for routes the app no longer serves: {gone}"


@pytest.mark.parametrize("route", sorted(CALLS), ids=lambda r: f"{r[0]} {r[1]}")
async def test_route_by_caller(world: World, route: tuple[str, str]) -> None:
    method, template = route
    ok, body = CALLS[route]
    keys = keys_for(world)
    transport = httpx.ASGITransport(app=world.app, raise_app_exceptions=False)
    seen: dict[str, int] = {}
    async with httpx.AsyncClient(transport=transport, base_url="http://engram.test") as c:
        for caller in CALLERS:
            params = {"ns": ALPHA, "thread_id": f"{ALPHA}-t"}
            if "{record_id}" in template:
                params["record_id"] = await asyncio.to_thread(world.record, ALPHA)
            if "{key_id}" in template:
                params["key_id"] = world.key_id()
            if "{entity_id}" in template:
                params["entity_id"] = "1"
            path = template.format(**params)
            parts = body(world, ALPHA)
            headers = dict(parts.pop("headers", {}))
            if keys[caller] is not None:
                headers["Authorization"] = f"Bearer {keys[caller]}"
            verb = "POST" if method == "*" else method
            resp = await c.request(verb, path, headers=headers, **parts)
            seen[caller] = resp.status_code
            want = expected(caller, method, template, ok)
            if want == NOT_REFUSED:
                assert resp.status_code not in (401, 403), f"{caller}: {path} -> {resp.text[:300]}"
            else:
                assert resp.status_code == want, f"{caller}: {method} {path} -> {resp.text[:300]}"
            if want == 401:
                assert resp.headers["www-authenticate"].startswith("Bearer")
                assert resp.json()["error"] == "authentication_failed"
            if want == 403:
                assert resp.json()["error"] == "permission_denied"
            assert not leaks(caller, resp.content), f"{caller}: {method} {path} leaked"
            if template == "/v1/namespaces" and caller != "admin" and resp.status_code == 200:
                own = BRAVO if caller == "other namespace's key" else ALPHA
                assert list(resp.json()["namespaces"]) == [own]
    assert set(seen) == set(CALLERS)
