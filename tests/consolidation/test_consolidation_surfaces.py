"""Consolidation over the surfaces: REST (the real app; a read-only key gets 403), the
service's scheduled job and the CLI. The client and ZeroMQ faces run the same scenario
against a real service in tests/client/test_same_scenarios.py."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner

from engramdb import AsyncMemory, HashEmbedder, Memory, Settings
from engramdb.cli import cli
from engramdb.server import create_app
from engramdb.server.schedule import consolidate_all, scheduled_consolidation

NURSE = "Alice lives in Lisbon and works as a nurse at the hospital"
NURSE_2 = "alice lives in lisbon, and works as a nurse at the hospital!!"
ADMIN = "test-admin-key-0123456789abcdef"


def _settings(tmp_path: Path, **extra: Any) -> Settings:
    return Settings(
        url=f"sqlite:///{tmp_path / 'svc.db'}",
        embedder="hash",
        hash_dim=64,
        admin_key=ADMIN,
        **extra,
    )


async def test_rest_consolidate_is_a_write_and_reports_the_plan(tmp_path: Path) -> None:
    mem = Memory(settings=_settings(tmp_path), embedder=HashEmbedder(64))
    try:
        app = create_app(mem)
        keys = app.state.keys
        writer = keys.create("ns1").key
        reader = keys.create("ns1", read_only=True).key
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            added = await c.post(
                "/v1/namespaces/ns1/records",
                json={"items": [{"text": NURSE}, {"text": NURSE_2}], "user_id": "u"},
                headers={"authorization": f"Bearer {writer}"},
            )
            assert added.status_code == 200, added.text
            a, b = (r["id"] for r in added.json()["results"])
            url = "/v1/namespaces/ns1/consolidate"
            denied = await c.post(
                url, json={"dry_run": True}, headers={"authorization": f"Bearer {reader}"}
            )
            assert denied.status_code == 403
            auth = {"authorization": f"Bearer {writer}"}
            dry = await c.post(url, json={"dry_run": True}, headers=auth)
            assert dry.status_code == 200, dry.text
            assert dry.json()["merges"][0]["survivor_id"] == b
            assert dry.json()["dry_run"] is True
            assert (await c.post(url, json={"bogus": 1}, headers=auth)).status_code == 422
            done = (await c.post(url, json={}, headers=auth)).json()
            assert done["merges"][0]["merged_ids"] == [a]
            listed = (await c.get("/v1/namespaces/ns1/archived", headers=auth)).json()
            assert [x["record"]["id"] for x in listed["archived"]] == [a]
            got = await c.get(f"/v1/namespaces/ns1/records/{a}", headers=auth)
            assert got.status_code == 200 and got.json()["text"] == NURSE
            back = await c.post(f"/v1/namespaces/ns1/records/{a}/unmerge", headers=auth)
            assert {r["id"] for r in back.json()["records"]} == {a, b}
            again = await c.post(f"/v1/namespaces/ns1/records/{a}/unmerge", headers=auth)
            assert again.status_code == 404
            summary = await c.post(
                "/v1/namespaces/ns1/summarize",
                json={"text": "One sentence here. Another sentence there.", "max_sentences": 1},
                headers={"authorization": f"Bearer {reader}"},
            )
            assert summary.status_code == 200 and summary.json()["summary"]
    finally:
        mem.close()


async def test_the_scheduled_job_consolidates_every_namespace(tmp_path: Path) -> None:
    mem = AsyncMemory(settings=_settings(tmp_path), embedder=HashEmbedder(64))
    try:
        for ns in ("a", "b"):
            await mem.with_namespace(ns).add([NURSE, NURSE_2], user_id="u")
        assert await consolidate_all(mem) == {"a": 1, "b": 1}
        assert await consolidate_all(mem) == {"a": 0, "b": 0}
        # The loop of the service runs passes on its interval until its block ends.
        await mem.with_namespace("c").add([NURSE, NURSE_2], user_id="u")
        async with scheduled_consolidation(mem, 0.05):
            for _ in range(600):  # a generous bound; one pass normally suffices
                if await mem.with_namespace("c").count() == 1:
                    break
                await asyncio.sleep(0.05)
        assert await mem.with_namespace("c").count() == 1
    finally:
        await mem.aclose()


def test_the_interval_is_off_by_default() -> None:
    assert Settings().consolidate_interval_s == 0


def test_cli_consolidate_dry_run_then_real(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    with Memory(url, embedder=HashEmbedder(384)) as m:
        a = m.add(NURSE, user_id="u")[0].id
        m.add(NURSE_2, user_id="u")
    env = {"ENGRAM_EMBEDDER": "hash"}
    run = CliRunner()
    dry = run.invoke(cli, ["--url", url, "consolidate", "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert "would merge 1 into 1" in dry.output
    out = run.invoke(cli, ["--url", url, "--json", "consolidate"], env=env)
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["merges"][0]["merged_ids"] == [a]
    listed = run.invoke(cli, ["--url", url, "archived"], env=env)
    assert listed.exit_code == 0 and a in listed.output and "merged into" in listed.output
    back = run.invoke(cli, ["--url", url, "unmerge", a], env=env)
    assert back.exit_code == 0 and a in back.output
    missing = run.invoke(cli, ["--url", url, "restore-archived", a], env=env)
    assert missing.exit_code == 3  # NotFoundError's exit code
    text = run.invoke(cli, ["--url", url, "summarize-text", "One. Two sentences here."], env=env)
    assert text.exit_code == 0 and text.output.strip()
