"""The MCP server, driven by the SDK's own client against real server processes.

Over stdio: ``engramdb mcp --no-model --url sqlite:///…`` as a subprocess. Over HTTP: a
real ``engramdb serve`` process, its ``/mcp`` endpoint, beside REST on the same store.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult
from server_helpers import ADMIN_HEADERS, ADMIN_KEY, ServerProcess, free_port

from engramdb.server.mcp_server import TOOL_NAMES

SCRIPT = Path(sys.executable).with_name("engramdb")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    env["HF_HUB_OFFLINE"] = "1"
    return env


def stdio_params(db: Path, *extra: str) -> StdioServerParameters:
    """``engramdb mcp --no-model --url sqlite:///db`` as the SDK's stdio client starts it."""
    return StdioServerParameters(
        command=str(SCRIPT),
        args=["mcp", "--no-model", "--url", f"sqlite:///{db}", *extra],
        env=_env(),
    )


def ok(result: CallToolResult) -> dict[str, Any]:
    """The structured result of a successful call (the REST response body)."""
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict), result
    return result.structured_content


def error_text(result: CallToolResult) -> str:
    """The text of a tool error."""
    assert result.is_error, result
    texts = [c.text for c in result.content if getattr(c, "type", "") == "text"]
    return " ".join(texts)


async def exercise_every_tool(client: Client, namespace: str | None = None) -> None:
    """One pass over the tools of records and threads, with their failures, as an agent
    would call them (the entity tools: test_stdio_entity_tools)."""
    ns = {"namespace": namespace} if namespace else {}
    listed = await client.list_tools()
    tools = {t.name: t for t in listed.tools}
    assert sorted(tools) == sorted(TOOL_NAMES)
    for tool in tools.values():
        assert tool.description and len(tool.description) > 60, tool.name
    search_schema = tools["search_memory"].input_schema["properties"]
    assert {"query", "user_id", "thread_id", "top_k", "namespace"} <= set(search_schema)
    assert "ctx" not in search_schema

    added = ok(
        await client.call_tool(
            "add_memory",
            {"text": "Alice is vegetarian", "user_id": "alice", "tags": ["food"], **ns},
        )
    )
    assert added["outcome"] == "written"
    rid = added["id"]
    again = ok(
        await client.call_tool(
            "add_memory", {"text": "Alice is vegetarian", "user_id": "alice", **ns}
        )
    )
    assert again["outcome"] == "deduplicated" and again["id"] == rid

    hits = ok(
        await client.call_tool(
            "search_memory",
            {"query": "vegetarian", "user_id": "alice", "top_k": 3, "mode": "keyword", **ns},
        )
    )["hits"]
    assert [h["record"]["id"] for h in hits] == [rid]
    assert (
        ok(
            await client.call_tool("search_memory", {"query": "vegetarian", "user_id": "bob", **ns})
        )["hits"]
        == []
    )

    rec = ok(await client.call_tool("get_memory", {"id": rid, **ns}))
    assert rec["text"] == "Alice is vegetarian" and rec["version"] == 1
    updated = ok(
        await client.call_tool(
            "update_memory",
            {"id": rid, "text": "Alice is vegan", "expected_version": 1, **ns},
        )
    )
    assert updated["text"] == "Alice is vegan" and updated["version"] == 2
    stale = await client.call_tool(
        "update_memory", {"id": rid, "text": "Alice eats fish", "expected_version": 1, **ns}
    )
    assert "conflict" in error_text(stale)

    turns = [{"role": "user", "content": "book a table"}, {"role": "assistant", "content": "done"}]
    added_turns = ok(
        await client.call_tool(
            "add_messages", {"thread_id": "t1", "messages": turns, "user_id": "alice", **ns}
        )
    )
    assert len(added_turns["results"]) == 2
    thread = ok(await client.call_tool("get_thread", {"thread_id": "t1", **ns}))
    assert [e["payload"]["content"] for e in thread["events"]] == ["book a table", "done"]
    assert "book a table" in thread["text"]

    slots = ok(
        await client.call_tool("set_slots", {"thread_id": "t1", "values": {"step": 1}, **ns})
    )
    assert slots["values"] == {"step": 1}
    version = slots["version"]
    assert ok(await client.call_tool("get_slots", {"thread_id": "t1", **ns}))["values"] == {
        "step": 1
    }
    lost = await client.call_tool(
        "set_slots",
        {"thread_id": "t1", "values": {"step": 2}, "expected_version": version + 5, **ns},
    )
    assert "conflict" in error_text(lost)

    assert ok(await client.call_tool("delete_memory", {"id": rid, **ns})) == {"deleted": rid}
    assert "not_found" in error_text(await client.call_tool("get_memory", {"id": rid, **ns}))

    # Bad arguments are tool errors naming what was wrong, and the server keeps serving.
    assert "top_k" in error_text(
        await client.call_tool("search_memory", {"query": "x", "top_k": "many", **ns})
    )
    assert "text" in error_text(await client.call_tool("add_memory", {"user_id": "alice", **ns}))
    assert "validation_error" in error_text(
        await client.call_tool("add_memory", {"text": "x", "user_id": "bad\tuser", **ns})
    )
    assert "top_k" in error_text(
        await client.call_tool("search_memory", {"query": "x", "top_k": 0, **ns})
    )
    assert "messages" in error_text(
        await client.call_tool("add_messages", {"thread_id": "t1", "messages": [], **ns})
    )
    assert "validation_error" in error_text(
        await client.call_tool("get_memory", {"id": "x", "namespace": "no spaces allowed"})
    )
    unknown = await client.call_tool("no_such_tool", {})
    assert unknown.is_error
    assert ok(await client.call_tool("get_slots", {"thread_id": "t1", **ns}))["values"] == {
        "step": 1
    }


# ---------------------------------------------------------------------------- stdio


async def test_stdio_serves_every_tool(tmp_path: Path) -> None:
    async with Client(stdio_params(tmp_path / "stdio.db")) as client:
        await exercise_every_tool(client)
    # The same store, read by the CLI afterwards: the tools wrote through the library.
    out = subprocess.run(
        [
            str(SCRIPT),
            "--no-model",
            "--url",
            f"sqlite:///{tmp_path / 'stdio.db'}",
            "count",
            "--json",
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(out.stdout) == {"count": 2}  # two message records; the memory was deleted


async def test_stdio_entity_tools(tmp_path: Path) -> None:
    """Entities found in stored memories, read back and walked through their relations."""
    async with Client(stdio_params(tmp_path / "entities.db")) as client:
        ok(
            await client.call_tool(
                "add_memory", {"text": "John works for Microsoft in Seattle", "user_id": "u"}
            )
        )
        ok(await client.call_tool("add_memory", {"text": "John works for Acme", "namespace": "b"}))
        people = ok(await client.call_tool("search_entities", {"query": "john"}))["entities"]
        assert [(e["name"], e["type"], e["mention_count"]) for e in people] == [
            ("John", "PERSON", 1)
        ]
        john = people[0]["id"]
        orgs = ok(await client.call_tool("search_entities", {"type": "ORG", "user_id": "u"}))
        assert [e["name"] for e in orgs["entities"]] == ["Microsoft"]
        one = ok(await client.call_tool("get_entity", {"entity_id": john}))
        assert [m["sentence"] for m in one["mentions"]] == ["John works for Microsoft in Seattle"]
        graph = ok(await client.call_tool("get_entity_relations", {"entity_id": john}))
        names = {e["id"]: e["name"] for e in graph["entities"]}
        stated = {
            (names[r["source_id"]], r["type"], names[r["target_id"]]) for r in graph["relations"]
        }
        assert ("John", "works_for", "Microsoft") in stated
        narrowed = ok(
            await client.call_tool(
                "get_entity_relations", {"entity_id": john, "types": ["lives_in"], "depth": 2}
            )
        )
        assert all(r["type"] == "lives_in" for r in narrowed["relations"])
        # The other namespace has its own John; this one's id is unknown there.
        theirs = ok(await client.call_tool("search_entities", {"query": "john", "namespace": "b"}))
        assert [e["id"] for e in theirs["entities"]] != [john]
        assert "not_found" in error_text(
            await client.call_tool("get_entity", {"entity_id": john, "namespace": "b"})
        )
        assert "validation_error" in error_text(
            await client.call_tool("get_entity_relations", {"entity_id": john, "depth": 9})
        )


async def test_stdio_consolidate_memory(tmp_path: Path) -> None:
    """consolidate_memory plans (dry_run) and then merges near-duplicates of one user."""
    nurse = "Alice lives in Lisbon and works as a nurse at the hospital"
    nurse_2 = "alice lives in lisbon, and works as a nurse at the hospital!!"  # cosine 1.0
    async with Client(stdio_params(tmp_path / "consolidate.db")) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        schema = tools["consolidate_memory"].input_schema["properties"]
        assert {"user_id", "thread_id", "dry_run", "namespace"} <= set(schema)
        first = ok(await client.call_tool("add_memory", {"text": nurse, "user_id": "alice"}))
        second = ok(await client.call_tool("add_memory", {"text": nurse_2, "user_id": "alice"}))
        ok(await client.call_tool("add_memory", {"text": nurse, "user_id": "bob"}))

        plan = ok(await client.call_tool("consolidate_memory", {"dry_run": True}))
        assert plan["dry_run"] is True
        assert [(m["survivor_id"], m["merged_ids"]) for m in plan["merges"]] == [
            (second["id"], [first["id"]])
        ]
        assert ok(await client.call_tool("get_memory", {"id": first["id"]}))["id"] == first["id"]
        listed = ok(await client.call_tool("search_memory", {"query": "nurse", "mode": "keyword"}))
        assert len(listed["hits"]) == 3  # the dry run changed nothing

        other_user = ok(await client.call_tool("consolidate_memory", {"user_id": "bob"}))
        assert other_user["merges"] == []
        done = ok(await client.call_tool("consolidate_memory", {"user_id": "alice"}))
        assert done["dry_run"] is False and done["merges"] == plan["merges"]
        after = ok(await client.call_tool("search_memory", {"query": "nurse", "mode": "keyword"}))
        assert first["id"] not in {h["record"]["id"] for h in after["hits"]}
        assert len(after["hits"]) == 2
        assert "validation_error" in error_text(
            await client.call_tool("consolidate_memory", {"user_id": ""})
        )


async def test_stdio_namespace_argument_separates_tenants(tmp_path: Path) -> None:
    async with Client(stdio_params(tmp_path / "ns.db")) as client:
        ok(await client.call_tool("add_memory", {"text": "team a secret", "namespace": "team-a"}))
        found = ok(
            await client.call_tool(
                "search_memory", {"query": "secret", "mode": "keyword", "namespace": "team-b"}
            )
        )
        assert found["hits"] == []
        found = ok(
            await client.call_tool(
                "search_memory", {"query": "secret", "mode": "keyword", "namespace": "team-a"}
            )
        )
        assert [h["record"]["text"] for h in found["hits"]] == ["team a secret"]


def test_stdio_stdout_carries_only_the_protocol(tmp_path: Path) -> None:
    """Raw JSON-RPC over the pipes: every stdout line is a protocol message; logs go to
    stderr as JSON lines."""
    requests = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "raw", "version": "0"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {"name": "add_memory", "arguments": {"text": "raw pipe memory"}},
        },
        {
            "jsonrpc": "2.0",
            "id": 4,
            "method": "tools/call",
            "params": {"name": "get_memory", "arguments": {"id": "missing"}},
        },
    ]
    params = stdio_params(tmp_path / "raw.db", "--log-level", "INFO")
    err_path = tmp_path / "stderr.log"
    err_fh = open(err_path, "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [params.command, *params.args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=err_fh,
        env=params.env,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    messages = []
    try:
        for request in requests:  # one at a time: each answer before the next question
            proc.stdin.write(json.dumps(request) + "\n")
            proc.stdin.flush()
            while "id" in request:
                message = json.loads(lines.get(timeout=90))  # any stray output fails here
                messages.append(message)
                if message.get("id") == request["id"]:
                    break
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        err_fh.close()
    stderr = err_path.read_text()
    while not lines.empty():
        messages.append(json.loads(lines.get()))
    assert all(m.get("jsonrpc") == "2.0" for m in messages)
    by_id = {m["id"]: m for m in messages if "id" in m}
    assert set(by_id) == {1, 2, 3, 4}
    assert len(by_id[2]["result"]["tools"]) == len(TOOL_NAMES)
    assert by_id[3]["result"]["isError"] is False
    assert by_id[4]["result"]["isError"] is True
    # stderr: JSON log lines, one per tool call at INFO, each with a request id, no memory text.
    logged = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    calls = [r for r in logged if r.get("logger") == "engramdb.mcp"]
    assert [(r["tool"], r["status"]) for r in calls] == [
        ("add_memory", "ok"),
        ("get_memory", "not_found"),
    ]
    assert all(r["request_id"] for r in calls)
    assert "raw pipe memory" not in stderr


# ---------------------------------------------------------------------------- HTTP


class Serve(ServerProcess):
    """``engramdb --no-model --url … serve --port P`` (the real command)."""

    def __init__(self, db: Path, log: Path, *extra: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        argv = [str(SCRIPT), "--no-model", "--url", f"sqlite:///{db}", "serve"]
        argv += ["--port", str(self.port), *extra]
        super().__init__("serve", argv, self.clean_env(), log)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Serve]:
    server = Serve(tmp_path / "http.db", tmp_path / "serve.log")
    try:
        server.wait_ready(server.base)
        yield server
    finally:
        server.stop()


@asynccontextmanager
async def http_client(base: str, request_id: str | None = None) -> AsyncIterator[Client]:
    """The SDK client over streamable HTTP at ``base/mcp``, optionally sending a request id."""
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    if request_id:
        headers["X-Request-ID"] = request_id
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(f"{base}/mcp", http_client=http)) as client,
    ):
        yield client


async def test_http_serves_every_tool_beside_rest(served: Serve) -> None:
    async with http_client(served.base) as client:
        await exercise_every_tool(client, namespace="agents")
        ok(
            await client.call_tool(
                "add_memory", {"text": "shared with rest", "namespace": "agents"}
            )
        )
    # The same store as REST, in the namespace the call named.
    async with httpx.AsyncClient(base_url=served.base, timeout=30, headers=ADMIN_HEADERS) as rest:
        hits = await rest.post(
            "/v1/namespaces/agents/search", json={"query": "shared with rest", "mode": "keyword"}
        )
        assert [h["record"]["text"] for h in hits.json()["hits"]][:1] == ["shared with rest"]
        other = await rest.post(
            "/v1/namespaces/default/search", json={"query": "shared with rest", "mode": "keyword"}
        )
        assert other.json()["hits"] == []
        metrics = (await rest.get("/metrics")).text
    assert 'memory_operations_total{op="add",status="ok"}' in metrics
    assert 'memory_operations_total{op="get",status="not_found"}' in metrics


async def test_http_request_id_reaches_the_tool_logs(served: Serve) -> None:
    async with http_client(served.base, request_id="mcp-trace-42") as client:
        ok(await client.call_tool("add_memory", {"text": "a private thought about cats"}))
        assert (await client.call_tool("get_memory", {"id": "missing"})).is_error
    lines = [json.loads(x) for x in served.log.read_text().splitlines() if x.startswith("{")]
    tool_lines = [r for r in lines if r.get("logger") == "engramdb.mcp"]
    assert [(r["tool"], r["status"], r["request_id"]) for r in tool_lines] == [
        ("add_memory", "ok", "mcp-trace-42"),
        ("get_memory", "not_found", "mcp-trace-42"),
    ]
    access = [r for r in lines if r.get("logger") == "engramdb.access" and r["route"] == "/mcp"]
    assert access and all(r["request_id"] == "mcp-trace-42" for r in access)
    assert "a private thought about cats" not in served.log.read_text()


async def test_http_refuses_a_foreign_host_header(served: Serve) -> None:
    """Bound to loopback, /mcp answers only requests addressed to a local host name (the
    SDK's DNS-rebinding protection), whatever else REST does."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"Host": "evil.example:80", "Accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient(base_url=served.base, timeout=30, headers=ADMIN_HEADERS) as raw:
        refused = await raw.post("/mcp", json=body, headers=headers)
    assert refused.status_code in (400, 403, 421), refused.text


# ---------------------------------------------------------------------------- the key hook


async def test_the_namespace_resolver_decides_every_call(tmp_path: Path) -> None:
    """The hook the key layer fills: here it pins every call to one namespace and refuses
    another, as a namespace key will."""
    from engramdb import AsyncMemory, HashEmbedder, Memory, Settings
    from engramdb.errors import ValidationError
    from engramdb.server.mcp_server import build_mcp_server

    seen: list[tuple[object, str | None, str]] = []

    def pinned(request: object, requested: str | None, default: str) -> str:
        seen.append((request, requested, default))
        if requested not in (None, "pinned"):
            raise ValidationError(f"this key reaches only 'pinned', not {requested!r}")
        return "pinned"

    settings = Settings(url=f"sqlite:///{tmp_path / 'hook.db'}", embedder="hash", hash_dim=64)
    mem = Memory(settings=settings, embedder=HashEmbedder(64))
    try:
        amem = mem._view(AsyncMemory)
        server = build_mcp_server(amem, resolve=pinned)
        async with Client(server) as client:
            rid = ok(await client.call_tool("add_memory", {"text": "pinned note"}))["id"]
            refused = await client.call_tool("get_memory", {"id": rid, "namespace": "default"})
            assert "reaches only 'pinned'" in error_text(refused)
        assert (await amem.with_namespace("pinned").get(rid)).text == "pinned note"
        assert await amem.count() == 0  # nothing in the default namespace
        assert seen == [(None, None, "default"), (None, "default", "default")]  # no HTTP here
    finally:
        mem.close()
