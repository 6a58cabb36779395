"""The access matrix of the other surfaces: every ZeroMQ op and every MCP tool x every caller.

The REST matrix (``test_auth_matrix.py``) covers routes; this one covers what reaches the
same store another way. Ops are enumerated from the endpoint's registry
(``engramdb.client.wire.FRAME_OPS``) and tools from what the MCP server lists itself
(``tools/list``), so an op or tool added later fails here until its row says what it takes
and whether it writes.

Callers, as for REST: no key, a wrong key, the other namespace's key, a read-only key of
the namespace, the namespace's own key, the admin key. Every call names namespace
``alpha``. Both namespaces hold data carrying their own secret word; no answer to a
namespace-bound or keyless caller may carry the other namespace's name or word.

ZeroMQ goes over a real socket (a ``ZmqEndpoint`` bound to a free loopback port); MCP goes
to the service's own ``/mcp`` (streamable HTTP, the SDK's server) inside the real app.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import zmq
from server_helpers import ADMIN_KEY

from engramdb import HashEmbedder, Memory, Settings
from engramdb.client import wire
from engramdb.server import create_app
from engramdb.zmq import ZmqEndpoint

ALPHA, BRAVO = "alpha", "bravo"
SECRET = {ALPHA: "ALPHASECRET", BRAVO: "BRAVOSECRET"}
WRONG_KEY = "ek_00000000000000ff_" + "A" * 43  # well-formed, in no store
CALLERS = ("no key", "wrong key", "other namespace's key", "read-only key", "own key", "admin")
OK, NOT_FOUND = "ok", "not_found"
DENIED, UNKNOWN = "permission_denied", "authentication_failed"


@dataclass
class World:
    """Two namespaces with data, the app over them, the callers' keys."""

    mem: Memory
    app: Any
    keys: dict[str, str | None]

    def record(self, ns: str = ALPHA) -> str:
        """A fresh record (a call that deletes or changes one gets its own)."""
        return self.mem.with_namespace(ns).add(f"{SECRET[ns]} note {uuid.uuid4().hex}")[0].id


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    settings = Settings(
        url=f"sqlite:///{tmp_path / 'surfaces.db'}",
        embedder="hash",
        hash_dim=64,
        admin_key=ADMIN_KEY,
        extract="off",
    )
    mem = Memory(settings=settings, embedder=HashEmbedder(64))
    for ns in (ALPHA, BRAVO):
        m = mem.with_namespace(ns)
        m.add(f"{SECRET[ns]} note one", user_id=f"{ns}-u", id=f"{ns}-r1")
        m.add_messages(f"{ns}-t", [{"role": "user", "content": f"{SECRET[ns]} hello"}])
        m.set_slots(f"{ns}-t", {"mood": SECRET[ns]})
    app = create_app(mem)
    keys = app.state.keys
    callers: dict[str, str | None] = {
        "no key": None,
        "wrong key": WRONG_KEY,
        "other namespace's key": keys.create(BRAVO).key,
        "read-only key": keys.create(ALPHA, read_only=True).key,
        "own key": keys.create(ALPHA).key,
        "admin": ADMIN_KEY,
    }
    yield World(mem, app, callers)
    mem.close()


def leaks(caller: str, body: bytes) -> list[str]:
    """What of another namespace ``body`` carries (a namespace-bound or keyless caller)."""
    if caller == "admin":
        return []
    mine = BRAVO if caller == "other namespace's key" else ALPHA
    if caller in ("no key", "wrong key"):
        mine = ""
    foreign = [ns for ns in (ALPHA, BRAVO) if ns != mine]
    return [w for ns in foreign for w in (ns, SECRET[ns]) if w.encode() in body]


def expected(caller: str, writes: bool | None, ok: str) -> str:
    """The outcome ``caller`` must get; ``writes`` None: a call open to any key (scoped to
    it) or, for ``health``, to everyone."""
    if writes is None and ok == "open":
        return OK
    if caller in ("no key", "wrong key"):
        return UNKNOWN
    if caller == "admin" or writes is None:
        return ok
    if caller == "other namespace's key":
        return DENIED
    if caller == "read-only key" and writes:
        return DENIED
    return ok


# ---------------------------------------------------------------------------- ZeroMQ

Args = Callable[[World], dict[str, Any]]


def _args(**fixed: Any) -> Args:
    return lambda w: dict(fixed)


def _record(**extra: Any) -> Args:
    return lambda w: {"id": w.record(), **extra}


# op -> (writes: True/False, None for a call any key may make; what own/admin get; args)
ZMQ_OPS: dict[str, tuple[bool | None, str, Args]] = {
    "add": (True, OK, _args(text="a new note")),
    "archived": (False, OK, _args()),
    "consolidate": (True, OK, _args(dry_run=True)),
    "add_messages": (
        True,
        OK,
        _args(thread_id="alpha-t", messages=[{"role": "user", "content": "hi"}]),
    ),
    "count": (False, OK, _args()),
    "delete": (True, OK, _record()),
    "delete_all": (True, OK, _args(user_id="nobody-here")),
    "entities": (False, OK, _args()),
    "entity": (False, NOT_FOUND, _args(id=1)),
    "entity_history": (False, NOT_FOUND, _args(id=1)),
    "events": (False, OK, _args(thread_id="alpha-t")),
    "forget": (True, OK, _args(user_id="nobody-here")),
    "get": (False, OK, _record()),
    "get_many": (False, OK, _args(ids=["alpha-r1", "bravo-r1"])),
    "get_slots": (False, OK, _args(thread_id="alpha-t")),
    "health": (None, "open", _args()),
    "history": (False, OK, _record()),
    "list": (False, OK, _args()),
    "log_event": (True, OK, _args(thread_id="alpha-t", action="noted")),
    "namespaces": (None, OK, _args()),
    "records_about": (False, NOT_FOUND, _args(entity_id=1)),
    "restore_archived": (True, NOT_FOUND, _args(record_id="never-archived")),
    "relations": (False, NOT_FOUND, _args(entity_id=1)),
    "search": (False, OK, _args(query="note", top_k=50)),
    "set_slots": (True, OK, _args(thread_id="alpha-t", values={"step": 2})),
    "snapshot": (False, OK, _args(thread_id="alpha-t")),
    "stats": (False, OK, _args()),
    "summarize_text": (False, OK, _args(text="One sentence here. Another one there.")),
    "unlink_entity": (True, NOT_FOUND, _args(id=1)),
    "unmerge": (True, NOT_FOUND, _args(record_id="never-merged")),
    "update": (True, OK, _record(add_tags=["changed"])),
}


def test_every_zmq_op_is_in_the_matrix() -> None:
    missing = sorted(wire.FRAME_OPS - set(ZMQ_OPS))
    assert not missing, f"ZeroMQ ops without a row in ZMQ_OPS (say what a key may do): {missing}"
    gone = sorted(set(ZMQ_OPS) - wire.FRAME_OPS)
    assert not gone, f"rows of ZMQ_OPS for ops the endpoint no longer serves: {gone}"


@pytest.fixture
def zmq_socket(world: World) -> Iterator[zmq.Socket[bytes]]:
    endpoint = ZmqEndpoint(world.app, "tcp://127.0.0.1:*")
    endpoint.start()
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 30_000)
    assert endpoint.bound_url is not None
    sock.connect(endpoint.bound_url)
    try:
        yield sock
    finally:
        sock.close(0)
        endpoint.stop()


@pytest.mark.parametrize("op", sorted(ZMQ_OPS))
def test_zmq_op_by_caller(world: World, zmq_socket: zmq.Socket[bytes], op: str) -> None:
    writes, ok, args = ZMQ_OPS[op]
    for caller in CALLERS:
        frame: dict[str, Any] = {"op": op, "namespace": ALPHA, "args": args(world)}
        if world.keys[caller] is not None:
            frame["api_key"] = world.keys[caller]
        zmq_socket.send(json.dumps(frame).encode())
        raw = zmq_socket.recv()
        reply = json.loads(raw)
        want = expected(caller, writes, ok)
        got = OK if reply["ok"] else reply["error"]
        assert got == want, f"{caller}: {op} -> {reply}"
        assert not leaks(caller, raw), f"{caller}: {op} leaked: {raw[:300]!r}"
        if op == "namespaces" and reply["ok"] and caller != "admin":
            own = BRAVO if caller == "other namespace's key" else ALPHA
            assert list(reply["result"]["namespaces"]) == [own]


# ---------------------------------------------------------------------------- MCP


def _mcp(**fixed: Any) -> Args:
    return lambda w: {"namespace": ALPHA, **fixed}


def _mcp_record(**extra: Any) -> Args:
    return lambda w: {"namespace": ALPHA, "id": w.record(), **extra}


# tool -> (writes, what own/admin get, arguments)
MCP_TOOLS: dict[str, tuple[bool, str, Args]] = {
    "add_memory": (True, OK, _mcp(text="a new note")),
    "search_memory": (False, OK, _mcp(query="note", top_k=50)),
    "get_memory": (False, OK, _mcp_record()),
    "update_memory": (True, OK, _mcp_record(importance=0.5)),
    "delete_memory": (True, OK, _mcp_record()),
    "add_messages": (
        True,
        OK,
        _mcp(thread_id="alpha-t", messages=[{"role": "user", "content": "hi"}]),
    ),
    "get_thread": (False, OK, _mcp(thread_id="alpha-t")),
    "get_slots": (False, OK, _mcp(thread_id="alpha-t")),
    "set_slots": (True, OK, _mcp(thread_id="alpha-t", values={"step": 2})),
    "consolidate_memory": (True, OK, _mcp(dry_run=True)),
    "search_entities": (False, OK, _mcp()),
    "get_entity": (False, NOT_FOUND, _mcp(entity_id=1)),
    "get_entity_relations": (False, NOT_FOUND, _mcp(entity_id=1)),
}
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


@asynccontextmanager
async def mcp_http(world: World) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app's ``/mcp``, its lifespan (the MCP session manager) running; the
    Host is a loopback one with a port, as the SDK's DNS-rebinding check wants."""
    transport = httpx.ASGITransport(app=world.app, raise_app_exceptions=False)
    client = httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080")
    async with world.app.router.lifespan_context(world.app), client:
        yield client


async def _rpc(
    http: httpx.AsyncClient, key: str | None, method: str, params: dict[str, Any]
) -> httpx.Response:
    headers = dict(MCP_HEADERS)
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    return await http.post("/mcp", json=body, headers=headers)


async def test_every_mcp_tool_is_in_the_matrix(world: World) -> None:
    async with mcp_http(world) as http:
        resp = await _rpc(http, ADMIN_KEY, "tools/list", {})
    assert resp.status_code == 200, resp.text
    listed = {tool["name"] for tool in resp.json()["result"]["tools"]}
    missing = sorted(listed - set(MCP_TOOLS))
    assert not missing, f"MCP tools without a row in MCP_TOOLS (say what a key may do): {missing}"
    gone = sorted(set(MCP_TOOLS) - listed)
    assert not gone, f"rows of MCP_TOOLS for tools the server no longer lists: {gone}"


@pytest.mark.parametrize("tool", sorted(MCP_TOOLS))
async def test_mcp_tool_by_caller(world: World, tool: str) -> None:
    async with mcp_http(world) as http:
        for caller in CALLERS:
            await _check_tool(world, http, tool, caller)


async def _check_tool(world: World, http: httpx.AsyncClient, tool: str, caller: str) -> None:
    writes, ok, args = MCP_TOOLS[tool]
    arguments = await asyncio.to_thread(args, world)
    resp = await _rpc(
        http, world.keys[caller], "tools/call", {"name": tool, "arguments": arguments}
    )
    want = expected(caller, writes, ok)
    if want == UNKNOWN:  # the key layer refuses before MCP sees the call
        assert resp.status_code == 401, f"{caller}: {tool} -> {resp.text[:300]}"
        assert resp.json()["error"] == UNKNOWN
    else:
        assert resp.status_code == 200, f"{caller}: {tool} -> {resp.text[:300]}"
        result = resp.json()["result"]
        text = " ".join(c.get("text", "") for c in result.get("content", []))
        # the SDK prefixes "Error executing tool <name>: " to the tool's "<code>: <message>"
        got = text.removeprefix(f"Error executing tool {tool}: ").split(":", 1)[0]
        got = got if result.get("isError") else OK
        assert got == want, f"{caller}: {tool} -> {text[:300]}"
    assert not leaks(caller, resp.content), f"{caller}: {tool} leaked: {resp.text[:300]}"
