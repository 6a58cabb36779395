"""REST round trips over the real app and a real SQLite file: records, search, threads, admin."""

from __future__ import annotations

import inspect
import json
import sqlite3
from pathlib import Path

import httpx
from server_helpers import assert_error

from engramdb import Memory
from engramdb.server.keys_routes import KEY_ROUTES
from engramdb.server.routes import ROUTES_BY_VERB
from engramdb.server.sidebyside_routes import SIDEBYSIDE_ROUTES

NS = "/v1/namespaces/team-a"
RECORD_KEYS = {
    "id", "namespace", "text", "type", "user_id", "agent_id", "thread_id", "metadata", "tags",
    "source", "importance", "occurred_at", "created_at", "updated_at", "valid_from", "valid_to",
    "expires_at", "version", "content_hash", "event_id",
}  # fmt: skip


async def add_one(client: httpx.AsyncClient, text: str, ns: str = NS, **fields: object) -> str:
    resp = await client.post(f"{ns}/records", json={"text": text, **fields})
    assert resp.status_code == 200, resp.text
    rid: str = resp.json()["results"][0]["id"]
    return rid


async def test_add_get_list_count_round_trip(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        f"{NS}/records",
        json={
            "text": "Alice moved to Lisbon in 2021",
            "user_id": "alice",
            "tags": ["profile"],
            "metadata": {"project": {"stage": "beta"}, "n": 2**62},
            "importance": 0.75,
            "occurred_at": "2021-05-01T10:00:00Z",
        },
    )
    assert resp.status_code == 200, resp.text
    result = resp.json()["results"][0]
    assert result["outcome"] == "written" and not result["deduplicated"]
    rec = result["record"]
    assert set(rec) == RECORD_KEYS  # no internal columns (embedding, chunks, rowids)
    assert rec["namespace"] == "team-a" and rec["version"] == 1
    rid = rec["id"]

    got = (await client.get(f"{NS}/records/{rid}")).json()
    assert got == rec
    assert got["metadata"] == {"project": {"stage": "beta"}, "n": 2**62}
    assert got["occurred_at"].startswith("2021-05-01T10:00:00")

    # The same text in the same scope is stored once.
    again = await client.post(f"{NS}/records", json={"text": rec["text"], "user_id": "alice"})
    assert again.json()["results"][0]["outcome"] == "deduplicated"
    assert again.json()["results"][0]["id"] == rid

    batch = await client.post(
        f"{NS}/records",
        json={
            "items": ["Bob likes tea", {"text": "Carol likes coffee", "id": "carol-1"}],
            "user_id": "bob",
            "type": "preference",
        },
    )
    assert batch.status_code == 200, batch.text
    outs = batch.json()["results"]
    assert [r["index"] for r in outs] == [0, 1]
    assert outs[1]["id"] == "carol-1"
    assert {r["record"]["type"] for r in outs} == {"preference"}

    many = await client.post(f"{NS}/records/get-many", json={"ids": ["carol-1", "missing", rid]})
    assert [r["id"] for r in many.json()["records"]] == ["carol-1", rid]

    listed = await client.get(f"{NS}/records", params={"limit": 2})
    page = listed.json()
    assert len(page["records"]) == 2 and page["next_cursor"]
    rest = await client.get(f"{NS}/records", params={"limit": 2, "cursor": page["next_cursor"]})
    ids = [r["id"] for r in page["records"] + rest.json()["records"]]
    assert len(ids) == 3 == len(set(ids)) and rest.json()["next_cursor"] is None

    flt = {"type": "preference", "metadata.project.stage": {"$ne": "beta"}}
    prefs = await client.get(f"{NS}/records", params={"filter": json.dumps(flt)})
    assert {r["text"] for r in prefs.json()["records"]} == {"Bob likes tea", "Carol likes coffee"}
    by_tag = await client.get(f"{NS}/records", params={"tags": "profile", "user_id": "alice"})
    assert [r["id"] for r in by_tag.json()["records"]] == [rid]

    assert (await client.post(f"{NS}/records/count", json={})).json() == {"count": 3}
    counted = await client.post(
        f"{NS}/records/count", json={"filter": {"importance": {"$gte": 0.5}}}
    )
    assert counted.json() == {"count": 1}
    assert (await client.post(f"{NS}/records/count", json={"user_id": "bob"})).json()["count"] == 2


async def test_batch_abort_stores_nothing_and_skip_reports_rejected(
    client: httpx.AsyncClient,
) -> None:
    items = ["fine one", "x" * 5000, "fine two"]
    abort = await client.post(f"{NS}/records", json={"items": items})
    assert_error(abort, 413, "limit_exceeded")
    assert (await client.post(f"{NS}/records/count", json={})).json()["count"] == 0

    skip = await client.post(f"{NS}/records", json={"items": items, "on_error": "skip"})
    assert skip.status_code == 200, skip.text
    outcomes = [r["outcome"] for r in skip.json()["results"]]
    assert outcomes == ["written", "rejected", "written"]
    assert skip.json()["results"][1]["error"]
    assert (await client.post(f"{NS}/records/count", json={})).json()["count"] == 2


async def test_update_history_delete(client: httpx.AsyncClient) -> None:
    rid = await add_one(client, "the sky is green", tags=["a"])
    upd = await client.patch(
        f"{NS}/records/{rid}",
        json={"text": "the sky is blue", "add_tags": ["b"], "expected_version": 1},
    )
    assert upd.status_code == 200, upd.text
    assert upd.json()["version"] == 2 and upd.json()["tags"] == ["a", "b"]
    stale = await client.patch(
        f"{NS}/records/{rid}", json={"importance": 0.1, "expected_version": 1}
    )
    assert_error(stale, 409, "conflict")
    assert (await client.get(f"{NS}/records/{rid}")).json()["text"] == "the sky is blue"

    deleted = await client.delete(f"{NS}/records/{rid}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert_error(await client.get(f"{NS}/records/{rid}"), 404, "not_found")
    assert_error(await client.delete(f"{NS}/records/{rid}"), 404, "not_found")

    hist = (await client.get(f"{NS}/records/{rid}/history")).json()["entries"]
    assert [h["op"] for h in hist] == ["add", "update", "delete"]
    assert hist[1]["before"]["text"] == "the sky is green"
    assert hist[1]["after"]["text"] == "the sky is blue"


async def test_delete_all_needs_a_filter_or_all(client: httpx.AsyncClient) -> None:
    for i in range(3):
        await add_one(client, f"note {i}", user_id="u1" if i else "u2")
    assert_error(await client.post(f"{NS}/records/delete-all", json={}), 422)
    res = await client.post(f"{NS}/records/delete-all", json={"user_id": "u1"})
    assert res.json() == {"deleted": 2}
    res = await client.post(f"{NS}/records/delete-all", json={"all": True})
    assert res.json() == {"deleted": 1}


async def test_search(client: httpx.AsyncClient) -> None:
    await add_one(client, "Alice moved to Lisbon in 2021", user_id="alice")
    await add_one(client, "Bob plays the cello on weekends", user_id="bob")
    await add_one(client, "Lisbon has many hills", user_id="bob")

    resp = await client.post(f"{NS}/search", json={"query": "cello", "mode": "keyword"})
    assert resp.status_code == 200, resp.text
    hits = resp.json()["hits"]
    assert [h["record"]["text"] for h in hits] == ["Bob plays the cello on weekends"]
    assert hits[0]["parts"]["keyword_rank"] == 1 and hits[0]["chunk"]

    hybrid = await client.post(
        f"{NS}/search", json={"query": "Lisbon", "user_id": "alice", "top_k": 5}
    )
    texts = [h["record"]["text"] for h in hybrid.json()["hits"]]
    assert texts == ["Alice moved to Lisbon in 2021"]

    paged = await client.post(f"{NS}/search", json={"query": "Lisbon", "top_k": 1})
    assert len(paged.json()["hits"]) == 1 and paged.json()["next_cursor"]
    nxt = await client.post(
        f"{NS}/search", json={"query": "Lisbon", "top_k": 1, "cursor": paged.json()["next_cursor"]}
    )
    assert nxt.status_code == 200
    assert nxt.json()["hits"][0]["record"]["id"] != paged.json()["hits"][0]["record"]["id"]


async def test_threads_events_snapshot_slots(client: httpx.AsyncClient) -> None:
    t = f"{NS}/threads/chat-1"
    msgs = await client.post(
        f"{t}/messages",
        json={
            "messages": [
                {"role": "user", "content": "I am allergic to peanuts"},
                {"role": "assistant", "content": "Noted, no peanuts."},
            ],
            "user_id": "alice",
        },
    )
    assert msgs.status_code == 200, msgs.text
    assert [r["record"]["type"] for r in msgs.json()["results"]] == ["message", "message"]

    ev = await client.post(f"{t}/events", json={"action": "tool_call", "payload": {"tool": "x"}})
    assert ev.status_code == 201 and ev.json()["action"] == "tool_call"

    events = (await client.get(f"{t}/events")).json()["events"]
    assert [e["action"] for e in events] == ["message", "message", "tool_call"]
    assert events[0]["payload"]["content"] == "I am allergic to peanuts"
    limited = (await client.get(f"{t}/events", params={"limit": 1})).json()["events"]
    assert len(limited) == 1

    empty = (await client.get(f"{t}/slots")).json()
    assert empty["values"] == {} and empty["version"] == 0
    put = await client.put(f"{t}/slots", json={"values": {"step": 1, "goal": "book"}})
    assert put.status_code == 200 and put.json()["version"] == 1
    cas = await client.put(f"{t}/slots", json={"values": {"step": 2}, "expected_version": 1})
    assert cas.json()["values"] == {"step": 2, "goal": "book"}
    stale = await client.put(f"{t}/slots", json={"values": {"step": 3}, "expected_version": 1})
    assert_error(stale, 409, "conflict")
    removed = await client.put(f"{t}/slots", json={"values": {"goal": None}})
    assert removed.json()["values"] == {"step": 2}

    snap = (await client.get(f"{t}/snapshot")).json()
    assert snap["thread_id"] == "chat-1" and len(snap["events"]) == 3
    assert snap["slots"]["values"] == {"step": 2}
    assert "allergic to peanuts" in snap["text"]

    hits = await client.post(
        f"{NS}/search", json={"query": "peanuts", "thread_id": "chat-1", "mode": "keyword"}
    )
    assert len(hits.json()["hits"]) == 2


async def test_forget_namespaces_stats_health(client: httpx.AsyncClient) -> None:
    await add_one(client, "alice fact", user_id="alice")
    await add_one(client, "bob fact", user_id="bob")
    await add_one(client, "other tenant", ns="/v1/namespaces/team-b")

    forgot = await client.post(f"{NS}/forget", json={"user_id": "alice"})
    assert forgot.status_code == 200 and forgot.json()["erased"]["records"] == 1
    assert (await client.post(f"{NS}/records/count", json={})).json()["count"] == 1
    assert_error(await client.post(f"{NS}/forget", json={}), 422, "validation_error")
    bad = {"user_id": "bob", "compact": "later"}
    assert_error(await client.post(f"{NS}/forget", json=bad), 422, "validation_error")
    await add_one(client, "carol fact", user_id="carol")
    forgot = await client.post(f"{NS}/forget", json={"user_id": "carol", "compact": True})
    assert forgot.status_code == 200, forgot.text
    erased = forgot.json()["erased"]
    assert erased["records"] == 1 and isinstance(erased["bytes_freed"], int)  # it compacted

    spaces = (await client.get("/v1/namespaces")).json()["namespaces"]
    assert spaces == {"team-a": 1, "team-b": 1}

    stats = (await client.get(f"{NS}/stats")).json()
    assert stats["namespace"] == "team-a" and stats["namespace_stats"]["records"] == 1
    assert stats["store"]["records"] == 2 and "path" not in json.dumps(stats)

    health = await client.get("/ready")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert health.json()["components"]["store"]["status"] == "ok"


async def test_namespace_isolation_through_the_url(client: httpx.AsyncClient) -> None:
    a, b = "/v1/namespaces/foo", "/v1/namespaces/foobar"
    rid = await add_one(client, "secret of foo", ns=a, user_id="u", thread_id="t")
    await client.put(f"{a}/threads/t/slots", json={"values": {"k": "v"}})

    assert_error(await client.get(f"{b}/records/{rid}"), 404, "not_found")
    assert_error(await client.get(f"{b}/records/{rid}/history"), 404, "not_found")
    assert_error(await client.patch(f"{b}/records/{rid}", json={"text": "pwned"}), 404)
    assert_error(await client.delete(f"{b}/records/{rid}"), 404, "not_found")
    assert (await client.post(f"{b}/records/get-many", json={"ids": [rid]})).json() == {
        "records": []
    }
    assert (await client.get(f"{b}/records")).json()["records"] == []
    assert (await client.post(f"{b}/records/count", json={})).json()["count"] == 0
    hits = await client.post(f"{b}/search", json={"query": "secret of foo"})
    assert hits.json()["hits"] == []
    assert (await client.get(f"{b}/threads/t/slots")).json()["values"] == {}
    assert (await client.get(f"{b}/threads/t/events")).json()["events"] == []
    assert (await client.post(f"{b}/records/delete-all", json={"all": True})).json() == {
        "deleted": 0
    }
    # An id that exists elsewhere cannot be claimed with other text, nor reached.
    same_id = await client.post(f"{b}/records", json={"text": "mine", "id": rid})
    assert same_id.status_code == 200
    assert (await client.get(f"{a}/records/{rid}")).json()["text"] == "secret of foo"
    assert (await client.get(f"{a}/records/{rid}")).json()["version"] == 1
    assert (await client.get(f"{a}/threads/t/slots")).json()["values"] == {"k": "v"}


async def test_admin_export_import_backup_doctor_reembed(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    for i in range(3):
        await add_one(client, f"exported note {i}")
    exported = await client.post("/v1/admin/export", json={"namespace": "team-a"})
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(x) for x in exported.text.splitlines() if x.strip()]
    assert sum(1 for x in lines if x.get("kind") == "record") == 3

    imported = await client.post(
        "/v1/admin/import",
        params={"namespace": "copy"},
        content=exported.content,
        headers={"content-type": "application/x-ndjson"},
    )
    assert imported.status_code == 200, imported.text
    assert imported.json()["imported"]["written"] == 3
    copy_count = await client.post("/v1/namespaces/copy/records/count", json={})
    assert copy_count.json()["count"] == 3

    backup = await client.post("/v1/admin/backup")
    assert backup.status_code == 200 and backup.content.startswith(b"SQLite format 3\x00")
    path = tmp_path / "fetched-backup.db"
    path.write_bytes(backup.content)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM records").fetchone()[0] == 6
    conn.close()

    await add_one(client, "written after the backup")
    octet = {"content-type": "application/octet-stream"}
    restored = await client.post("/v1/admin/restore", content=backup.content, headers=octet)
    assert restored.status_code == 200, restored.text
    assert restored.json()["report"]["ok"] is True
    assert (await client.post(f"{NS}/records/count", json={})).json()["count"] == 3
    bad = await client.post("/v1/admin/restore", content=b"not a database", headers=octet)
    assert_error(bad, 422, "validation_error")
    assert "the uploaded file" in bad.json()["message"] or "/tmp" not in bad.text
    bad_import = await client.post(
        "/v1/admin/import", content=b"not jsonl\n", headers={"content-type": "application/x-ndjson"}
    )
    assert_error(bad_import, 422, "validation_error")
    assert "the uploaded file" in bad_import.json()["message"] and "/tmp" not in bad_import.text
    assert (await client.post(f"{NS}/records/count", json={})).json()["count"] == 3

    doctor = await client.post("/v1/admin/doctor", json={"repair": False})
    assert doctor.status_code == 200 and doctor.json()["report"]["ok"] is True

    re = await client.post("/v1/admin/reembed", json={"embedder": "hash"})
    assert re.status_code == 200, re.text
    assert re.json()["embedder"]["dim"] == 64
    hits = await client.post(f"{NS}/search", json={"query": "exported note 1"})
    assert hits.json()["hits"][0]["record"]["text"] == "exported note 1"


async def test_openapi_lists_a_route_for_every_library_verb(client: httpx.AsyncClient) -> None:
    verbs = {
        name
        for name, fn in vars(Memory).items()
        if inspect.isfunction(fn) and not name.startswith("_")
    } - {"open", "close", "with_namespace"}  # constructor and lifecycle: the server owns them
    assert set(ROUTES_BY_VERB) == verbs
    spec = (await client.get("/openapi.json")).json()
    actual = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    # the verbs, the keys' routes, the side-by-side admin route and liveness
    assert actual == set(ROUTES_BY_VERB.values()) | KEY_ROUTES | SIDEBYSIDE_ROUTES | {
        ("GET", "/health")
    }
    # Every request schema forbids unknown fields.
    for name, schema in spec["components"]["schemas"].items():
        if name.endswith("Request") or name in ("RecordIn", "MessageIn"):
            assert schema.get("additionalProperties") is False, name
    assert (await client.get("/docs")).status_code == 200
