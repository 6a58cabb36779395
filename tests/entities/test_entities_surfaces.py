"""Entities over REST (the real ASGI app) and the CLI (the real command), SQLite file."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from engramdb import HashEmbedder, Memory, Settings
from engramdb.cli import cli
from engramdb.server import create_app

NS = "/v1/namespaces/team"


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app over a Memory with background extraction (the default)."""
    settings = Settings(url=f"sqlite:///{tmp_path / 's.db'}", extract="background")
    mem = Memory(settings=settings, embedder=HashEmbedder(64))
    transport = httpx.ASGITransport(
        app=create_app(mem, settings=mem.settings.model_copy(update={"auth": "off"})),
        raise_app_exceptions=False,
    )
    async with httpx.AsyncClient(transport=transport, base_url="http://engram.test") as c:
        yield c
    mem.close()


async def test_rest_entities_relationships_and_search(client: httpx.AsyncClient) -> None:
    add = await client.post(
        f"{NS}/records",
        json={"items": [{"text": "John works for Microsoft in Seattle"}], "user_id": "u1"},
    )
    assert add.status_code == 200, add.text
    listed = await client.get(f"{NS}/entities", params={"user_id": "u1"})
    assert listed.status_code == 200, listed.text
    by_name = {e["name"]: e for e in listed.json()["entities"]}
    assert {n: e["type"] for n, e in by_name.items()} == {
        "John": "PERSON",
        "Microsoft": "ORG",
        "Seattle": "GPE",
    }
    john = by_name["John"]["id"]
    one = await client.get(f"{NS}/entities/{john}")
    assert one.status_code == 200
    assert [m["sentence"] for m in one.json()["mentions"]] == [
        "John works for Microsoft in Seattle"
    ]
    rel = await client.get(f"{NS}/entities/{john}/relationships", params={"depth": 2})
    assert rel.status_code == 200
    (edge,) = rel.json()["relations"]
    assert (edge["source_id"], edge["type"], edge["target_id"]) == (
        john,
        "works_for",
        by_name["Microsoft"]["id"],
    )
    recs = await client.get(f"{NS}/entities/{john}/records")
    assert [r["text"] for r in recs.json()["records"]] == ["John works for Microsoft in Seattle"]
    hist = await client.get(f"{NS}/entities/{john}/history")
    assert hist.status_code == 200 and hist.json() == {"entries": []}
    hits = await client.post(f"{NS}/search", json={"query": "Microsoft", "include_entities": True})
    assert hits.status_code == 200, hits.text
    graph = hits.json()["hits"][0]["entities"]
    assert {e["name"] for e in graph["entities"]} == {"John", "Microsoft", "Seattle"}
    plain = await client.post(f"{NS}/search", json={"query": "Microsoft"})
    assert plain.json()["hits"][0]["entities"] is None


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/entities/1", {}, 404),  # nothing extracted in this namespace
        ("/entities/0", {}, 422),
        ("/entities/abc", {}, 422),
        ("/entities/99999999999999999999999", {}, 422),
        ("/entities/1/relationships", {"depth": "9"}, 422),
        ("/entities/1/relationships", {"types": "hates"}, 422),
        ("/entities/1/relationships", {"types": ","}, 422),
        ("/entities", {"limit": "0"}, 422),
        ("/entities", {"type": "person"}, 422),
        ("/entities/1/unlink", None, 404),
    ],
)
async def test_rest_bad_requests_name_the_problem(
    client: httpx.AsyncClient, path: str, params: dict[str, str] | None, status: int
) -> None:
    if params is None:
        r = await client.post(NS + path)
    else:
        r = await client.get(NS + path, params=params)
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "message", "details"}
    assert "Traceback" not in r.text and "SELECT" not in r.text


async def test_another_namespaces_entity_is_not_found(client: httpx.AsyncClient) -> None:
    await client.post(f"{NS}/records", json={"text": "John works for Microsoft."})
    john = (await client.get(f"{NS}/entities")).json()["entities"][0]["id"]
    assert (await client.get(f"/v1/namespaces/other/entities/{john}")).status_code == 404
    other = await client.get(f"/v1/namespaces/other/entities/{john}/relationships")
    assert other.status_code == 404
    assert (await client.get("/v1/namespaces/other/entities")).json() == {"entities": []}


def test_cli_entity_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGRAM_EXTRACT", "background")
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()

    def run(*args: str) -> object:
        result = runner.invoke(cli, ["--no-model", "--url", url, "--json", *args])
        assert result.exit_code == 0, (result.stdout, result.stderr)
        return json.loads(result.stdout)

    run("add", "Bob Smith is employed by Google.", "--user-id", "u1")
    run("add", "Bob likes tea.", "--user-id", "u1")
    found = run("entities", "--user-id", "u1", "--type", "PERSON")
    assert isinstance(found, list)
    (bob,) = found
    assert (bob["name"], bob["aliases"], bob["mention_count"]) == ("Bob Smith", ["Bob"], 2)
    graph = run("relations", str(bob["id"]), "--depth", "2")
    assert {r["type"] for r in graph["relations"]} == {"works_for", "likes"}  # type: ignore[index]
    assert len(run("records-about", str(bob["id"]))) == 2  # type: ignore[arg-type]
    (link,) = run("entity-history", str(bob["id"]))  # type: ignore[misc]
    alone = run("unlink-entity", str(link["entity_id"]))
    assert alone["name"] == "Bob"  # type: ignore[index]
    assert run("entity", str(bob["id"]))["aliases"] == []  # type: ignore[index]
    missing = runner.invoke(cli, ["--no-model", "--url", url, "entity", "424242"])
    assert missing.exit_code == 3
